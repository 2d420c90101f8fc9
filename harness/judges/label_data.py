"""Where the human-labelled validation data lives (the data mirror) and reading it safely: shared by the
safety-judge validation (validate.py), the pairwise one (validate_pairwise.py) and the judge's training script."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from harness.errors import HarnessError

SPLIT_SEED = 0
REPO_ROOT = Path(__file__).resolve().parents[2]


def resolve_data_dir(data_dir: Path | str | None = None, need: str = "xstest") -> Path:
    """The data mirror: the argument, else $HARNESS_DATA_DIR, else ../shared/data next to the repository."""
    candidates: list[Path] = []
    if data_dir is not None:
        candidates.append(Path(data_dir))
    elif os.environ.get("HARNESS_DATA_DIR"):
        candidates.append(Path(os.environ["HARNESS_DATA_DIR"]))
    else:
        candidates.append(REPO_ROOT.parent / "shared" / "data")
    for candidate in candidates:
        if (candidate / need).is_dir():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise HarnessError(
        f"validation needs the {_pretty(need)} mirror: set HARNESS_DATA_DIR to a directory containing {need}/ "
        f"(layout of shared/data/README.md); tried {tried}"
    )


def _pretty(need: str) -> str:
    return {"xstest": "XSTest", "refusal_direction": "refusal_direction"}.get(need, need)


@contextmanager
def readable_labels(against: str) -> Iterator[None]:
    """A label file that is there but cannot be read (truncated, not gzip, not CSV/JSON) is one HarnessError."""
    try:
        yield
    except HarnessError:
        raise
    except (OSError, EOFError, ValueError, KeyError, UnicodeDecodeError) as exc:
        raise HarnessError(f"the {against} labels in the data mirror cannot be read ({type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:160]}); restore the mirror's files") from None
