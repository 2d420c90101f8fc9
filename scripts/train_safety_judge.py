"""Train the embedded-safety judge's two logistic-regression heads and write the weights file.

    python scripts/train_safety_judge.py [--data-dir DIR] [--out harness/judges/weights/embedded_safety.npz]

Deterministic: fixed splits (harness.judges.validate), full-batch Newton iterations in float64 with L2, no
random initialisation, and a zip written with fixed timestamps, so the same inputs give the same file.
The held-out XSTest prompts and JailbreakBench behaviours are never used here.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from harness.embedding import EMBEDDER_NAME  # noqa: E402
from harness.errors import HarnessError  # noqa: E402
from harness.judges import safety  # noqa: E402
from harness.judges.validate import (  # noqa: E402
    HELDOUT_FRACTION,
    SHORT_RESPONSE_CHARS,
    SPLIT_SEED,
    resolve_data_dir,
)
from harness.judges.training_rows import MACHINE_LABEL_WEIGHT, training_rows  # noqa: E402

# Every training response is also used cut to SHORT_RESPONSE_CHARS (the demo preset generates ~40 tokens);
# these copies count at this weight.
SHORT_COPY_WEIGHT = 0.5
# L2 strength per unit of total sample weight, on standardised features; chosen by prompt-grouped 5-fold
# cross-validation on the training split only (see CARD.md).
L2_REFUSAL = 0.02
L2_HARMFUL = 0.02


@dataclass(frozen=True)
class TrainingSet:
    prompts: list[str]
    responses: list[str]
    refusal: np.ndarray  # 0/1, NaN where the row has no label for this head
    harmful: np.ndarray
    weight: np.ndarray
    counts: dict


def build_training_set(rows: pd.DataFrame) -> TrainingSet:
    full = [str(r) for r in rows["response"]]
    short = [r.strip()[:SHORT_RESPONSE_CHARS] for r in full]
    keep_short = [s != safety.clip_response(f) and bool(s) for s, f in zip(short, full)]
    idx = np.flatnonzero(keep_short)
    prompts = list(rows["prompt"].astype(str)) + [str(rows["prompt"].iloc[i]) for i in idx]
    responses = full + [short[i] for i in idx]
    weight = np.concatenate([rows["weight"].to_numpy(float), rows["weight"].to_numpy(float)[idx] * SHORT_COPY_WEIGHT])
    refusal = np.concatenate([rows["refusal"].to_numpy(float), rows["refusal"].to_numpy(float)[idx]])
    harmful = np.concatenate([rows["harmful"].to_numpy(float), rows["harmful"].to_numpy(float)[idx]])
    counts = {
        "xstest_human": int((rows["source"] == "xstest").sum()),
        "xstest_prompts": int(rows.loc[rows["source"] == "xstest", "prompt_id"].nunique()),
        "refusal_direction_jailbreakbench": int(rows["source"].str.startswith("rd-jailbreakbench").sum()),
        "refusal_direction_harmless": int(rows["source"].str.startswith("rd-harmless").sum()),
        "short_copies": int(len(idx)),
        "harmful_head_rows_unlabelled": int(np.isnan(rows["harmful"].to_numpy(float)).sum()),
    }
    return TrainingSet(prompts, responses, refusal, harmful, weight, counts)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))


def _objective(X: np.ndarray, y: np.ndarray, w: np.ndarray, beta: np.ndarray, penalty: np.ndarray) -> float:
    z = X @ beta
    # weighted log-loss, written stably: log(1 + e^z) - y z
    loss = np.logaddexp(0.0, z) - y * z
    return float(w @ loss + 0.5 * penalty @ (beta * beta))


def fit_logistic(X: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float,
                 max_iter: int = 100, tol: float = 1e-10) -> tuple[np.ndarray, float]:
    """L2-regularised weighted logistic regression by damped Newton steps. X must be standardised;
    the intercept is not penalised. The penalty scales with the total sample weight."""
    n, d = X.shape
    Xb = np.hstack([X, np.ones((n, 1))])
    penalty = np.full(d + 1, l2 * float(w.sum()))
    penalty[-1] = 0.0
    beta = np.zeros(d + 1)
    current = _objective(Xb, y, w, beta, penalty)
    for _ in range(max_iter):
        p = _sigmoid(Xb @ beta)
        grad = Xb.T @ (w * (p - y)) + penalty * beta
        hess = (Xb.T * (w * p * (1.0 - p))) @ Xb + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-6:
            candidate = beta - scale * step
            value = _objective(Xb, y, w, candidate, penalty)
            if value <= current:
                break
            scale *= 0.5
        beta, previous, current = candidate, current, value
        if previous - current <= tol * max(1.0, abs(current)):
            break
    return beta[:-1], float(beta[-1])


def standardiser(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-8] = 1.0
    return mean, scale


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz that np.load reads, written with fixed member order and timestamps so it is byte-stable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())
    tmp.replace(path)


def featurise(prompts: list[str], responses: list[str]) -> np.ndarray:
    prompt_vecs, response_vecs = safety.embed_pairs(prompts, responses)
    return safety.build_features(prompt_vecs, response_vecs, [safety.clip_response(r) for r in responses])


def train(data_dir: Path | None, out: Path) -> dict:
    started = time.time()
    rows = training_rows(data_dir)
    data = build_training_set(rows)
    live = np.array([bool(r.strip()) for r in data.responses])
    X = featurise([p for p, k in zip(data.prompts, live) if k], [r for r, k in zip(data.responses, live) if k])
    mean, scale = standardiser(X)
    Xs = (X - mean) / scale
    arrays: dict[str, np.ndarray] = {"feature_mean": mean, "feature_scale": scale}
    head_rows = {}
    for head, labels, l2 in (("refusal", data.refusal, L2_REFUSAL), ("harmful", data.harmful, L2_HARMFUL)):
        y = labels[live]
        mask = ~np.isnan(y)
        weights, bias = fit_logistic(Xs[mask], y[mask], data.weight[live][mask], l2)
        arrays[f"{head}_w"] = weights
        arrays[f"{head}_b"] = np.array(bias)
        head_rows[head] = {"rows": int(mask.sum()), "positives": int(y[mask].sum())}
    meta = {
        "feature_set": safety.FEATURE_SET,
        "embedder": EMBEDDER_NAME,
        "split": {"seed": SPLIT_SEED, "heldout_fraction": HELDOUT_FRACTION},
        "machine_label_weight": MACHINE_LABEL_WEIGHT,
        "short_copy_chars": SHORT_RESPONSE_CHARS,
        "short_copy_weight": SHORT_COPY_WEIGHT,
        "l2": {"refusal": L2_REFUSAL, "harmful": L2_HARMFUL},
        "counts": data.counts,
        "heads": head_rows,
    }
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    write_npz(out, arrays)
    meta["seconds"] = round(time.time() - started, 1)
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="data mirror (default: $HARNESS_DATA_DIR, else ../shared/data from the repo root)")
    parser.add_argument("--out", type=Path, default=safety.WEIGHTS_PATH)
    args = parser.parse_args(argv)
    try:
        resolve_data_dir(args.data_dir, "xstest")
        meta = train(args.data_dir, args.out)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(meta, indent=2, sort_keys=True))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
