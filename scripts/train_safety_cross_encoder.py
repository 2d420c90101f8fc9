"""Train the embedded-safety-ce judge (a MiniLM cross-encoder, LoRA on its top layers) and validate it.

    python scripts/train_safety_cross_encoder.py [--data-dir DIR] [--out FILE] [--quiet]

The judge does this itself on first use (harness/judges/cross_encoder_build.py); this script runs the same
build ahead of time, into the results cache by default, or into FILE for `--judge-option weights_path=FILE`.
Either way the held-out validation runs after training and its record is kept in the cache, tied to the
file's hash. Prints the training metadata and the held-out agreement.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from harness import progress  # noqa: E402
from harness.errors import HarnessError  # noqa: E402
from harness.hashing import hash_file  # noqa: E402
from harness.judges import cross_encoder_build  # noqa: E402
from harness.judges.cross_encoder import read_weights  # noqa: E402
from harness.prevalence import built_validation_path  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="data mirror (default: $HARNESS_DATA_DIR, else ../shared/data from the repo root)")
    parser.add_argument("--out", type=Path, default=None, help="weights file (default: the results cache)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    progress.set_quiet(args.quiet)
    try:
        path = cross_encoder_build.build(args.data_dir, args.out)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _, meta = read_weights(path)
    record = json.loads(built_validation_path("embedded-safety-ce", hash_file(path)[:12]).read_text())
    print(json.dumps({"weights": meta, "held_out": record}, indent=2, sort_keys=True))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
