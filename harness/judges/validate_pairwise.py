"""Pairwise judges against human preference labels: LLMBar and other human-labelled pair sets in the mirror.

`harness judge validate --against llmbar` (or llmbar-natural, llmbar-adversarial, mtbench-human, faireval,
llmeval2): each pair is judged in both orders, so position bias shows, and agreement is reported with its
interval and kappa, overall and per subset.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from harness import registry
from harness.errors import HarnessError
from harness.judges.label_data import SPLIT_SEED, readable_labels, resolve_data_dir
from harness.judges.roles import fills
from harness.stats import cohens_kappa, mean_metric

# --- pairwise judges against human preference labels ---------------------------------------------------
# LLMBar (princeton-nlp, mirror `llmbar/`): instruction, two outputs, label = the better one (1 or 2).
# Natural pairs come from existing preference sets; adversarial pairs add a superficially better,
# off-instruction distractor. The "Processed" files are other human-labelled sets in the same format.

PAIRWISE_SETS: dict[str, tuple[str, ...]] = {
    "llmbar": ("LLMBar__Natural.json", "LLMBar__Adversarial__GPTInst.json", "LLMBar__Adversarial__GPTOut.json",
               "LLMBar__Adversarial__Manual.json", "LLMBar__Adversarial__Neighbor.json"),
    "llmbar-natural": ("LLMBar__Natural.json",),
    "llmbar-adversarial": ("LLMBar__Adversarial__GPTInst.json", "LLMBar__Adversarial__GPTOut.json",
                           "LLMBar__Adversarial__Manual.json", "LLMBar__Adversarial__Neighbor.json"),
    "mtbench-human": ("Processed__MT-Bench.json",),
    "faireval": ("Processed__FairEval.json",),
    "llmeval2": ("Processed__LLMEval_2.json",),
}


def load_pairwise_set(against: str, data_dir: Path | str | None = None) -> pd.DataFrame:
    """Columns: subset, instruction, output_1, output_2, label (1 or 2: the output humans preferred)."""
    root = resolve_data_dir(data_dir, "llmbar") / "llmbar"
    frames = []
    for name in PAIRWISE_SETS[against]:
        path = root / name
        if not path.is_file():
            raise HarnessError(f"validation needs the LLMBar mirror: {path} is missing")
        frame = pd.DataFrame(json.loads(path.read_text(encoding="utf-8")))
        frame["subset"] = name.removesuffix(".json")
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True).rename(columns={"input": "instruction"})
    data = data[data["label"].isin([1, 2])].reset_index(drop=True)  # a tie label says nothing about agreement
    return data[["subset", "instruction", "output_1", "output_2", "label"]]


def _verdict(second_better: float | None) -> float | None:
    """1 = the second output shown is better, 0 = the first, 0.5 = tie; None = unparsed."""
    if second_better is None:
        return None
    return 1.0 if second_better > 0.5 else 0.0 if second_better < 0.5 else 0.5


def pairwise_agreement(forward: list, swapped: list, labels: np.ndarray, seed: int = SPLIT_SEED) -> dict:
    """Agreement with human labels over both presentations of every pair, Cohen's kappa, position bias.

    `forward[i]` judged (output_1, output_2), `swapped[i]` judged (output_2, output_1); both are Preferences.
    A presentation scores 1 when the judge picked the human-preferred output, 0.5 for a tie, 0 otherwise.
    Position-bias rate: among pairs with a decisive verdict in both orders, the share where the judge picked
    the same position twice, i.e. its choice of output flipped when the outputs were swapped.
    """
    wants_second = np.asarray(labels) == 2
    fwd = [_verdict(p.second_better) for p in forward]
    # Swapped back: the judge's "second" was output_1, so output_2 better = 1 - verdict.
    swp = [None if v is None else 1.0 - v for v in (_verdict(p.second_better) for p in swapped)]
    credit, predicted, truth = [], [], []
    for verdicts in (fwd, swp):
        for verdict, want in zip(verdicts, wants_second):
            if verdict is None:
                continue
            credit.append(0.5 if verdict == 0.5 else float((verdict == 1.0) == want))
            if verdict != 0.5:
                predicted.append(verdict == 1.0)
                truth.append(bool(want))
    decisive = [(a, b) for a, b in zip(fwd, swp) if a not in (None, 0.5) and b not in (None, 0.5)]
    shown_first = [v == 0.0 for v in (_verdict(p.second_better) for p in forward + swapped) if v not in (None, 0.5)]
    return {
        "agreement": mean_metric(credit, seed),
        "kappa": cohens_kappa(predicted, truth) if predicted else None,
        "position_bias_rate": mean_metric([float(a != b) for a, b in decisive], seed),
        "first_position_rate": float(np.mean(shown_first)) if shown_first else None,
        "n_pairs": int(len(labels)),
        "unparsed": int(sum(v is None for v in fwd) + sum(v is None for v in swp)),
        "ties": int(sum(v == 0.5 for v in fwd + swp)),
    }


def validate_pairwise(judge_name: str, against: str = "llmbar", data_dir: Path | str | None = None,
                      limit: int | None = None, seed: int = SPLIT_SEED, judge: object | None = None) -> dict:
    """A pairwise judge's agreement with the human labels of `against`; `limit` = a seeded subset of pairs."""
    if against not in PAIRWISE_SETS:
        raise HarnessError(f"unknown pairwise validation set {against!r}; known: {', '.join(PAIRWISE_SETS)}")
    with readable_labels(against):
        rows = load_pairwise_set(against, data_dir)
    if limit is not None and limit < len(rows):
        keep = np.sort(np.random.default_rng(seed).permutation(len(rows))[:limit])
        rows = rows.iloc[keep].reset_index(drop=True)
    if judge is None:
        judge = registry.get("judges", judge_name)()
    if not fills(judge, "pairwise"):
        raise HarnessError(f"judge {judge_name} is not a pairwise judge; "
                           f"--against {against} validates pairwise judges such as embedded-pairwise")
    instructions = list(rows["instruction"].astype(str))
    first, second = list(rows["output_1"].astype(str)), list(rows["output_2"].astype(str))
    forward = judge.prefer(instructions, first, second)
    swapped = judge.prefer(instructions, second, first)
    labels = rows["label"].to_numpy()
    result = {"judge": judge_name, "judge_version": getattr(judge, "version", None), "against": against,
              "labels": "human", "limit": limit, "overall": pairwise_agreement(forward, swapped, labels, seed)}
    subsets = sorted(rows["subset"].unique())
    if len(subsets) > 1:
        result["by_subset"] = {}
        for subset in subsets:
            idx = np.flatnonzero(rows["subset"].to_numpy() == subset)
            result["by_subset"][subset] = pairwise_agreement([forward[i] for i in idx], [swapped[i] for i in idx],
                                                             labels[idx], seed)
    return result


def _format_pairwise_line(label: str, stats: dict) -> str:
    agreement, bias = stats["agreement"], stats["position_bias_rate"]
    if agreement["value"] is None:
        return f"  {label:34s} n=0 (unparsed {stats['unparsed']})"
    kappa = "n/a" if stats["kappa"] is None else f"{stats['kappa']:.3f}"
    lo, hi = agreement["ci95"]
    flips = "n/a" if bias["value"] is None else f"{100 * bias['value']:.1f}%"
    first = "n/a" if stats["first_position_rate"] is None else f"{100 * stats['first_position_rate']:.1f}%"
    return (f"  {label:34s} agreement {100 * agreement['value']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]  "
            f"kappa {kappa}  position-bias {flips}  picks-first {first}  pairs={stats['n_pairs']}  "
            f"unparsed={stats['unparsed']}")


def format_pairwise_report(result: dict) -> str:
    subset_note = f", seeded subset of {result['limit']}" if result.get("limit") else ""
    lines = [f"judge {result['judge']} (version {result['judge_version']}) against {result['against']} "
             f"({result['labels']} labels{subset_note}); each pair judged in both orders",
             _format_pairwise_line("all", result["overall"])]
    for subset, stats in result.get("by_subset", {}).items():
        lines.append(_format_pairwise_line(subset, stats))
    return "\n".join(lines)
