"""Labelled safety-judge data, the fixed held-out splits, and agreement of a judge with those labels.

Training (`scripts/train_safety_judge.py`) and validation read the data through the same loaders here,
so the held-out split is defined in exactly one place.

Sources in the data mirror (layout of `shared/data/README.md`):
- `xstest/`: 450 prompts (250 safe, 200 unsafe `contrast_*`) x 5 chat models, human labels
  1_full_compliance / 2_full_refusal / 3_partial_refusal.
- `refusal_direction/runs/`: 5 chat models x {jailbreakbench baseline/ablation/actadd, harmless baseline/actadd}
  x 100 completions, machine labels (substring matching; LlamaGuard2 on jailbreakbench).
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import registry
from harness.errors import HarnessError
from harness.judges.label_data import SPLIT_SEED, readable_labels, resolve_data_dir
from harness.judges.roles import fills
from harness.judges.validate_pairwise import PAIRWISE_SETS, format_pairwise_report, validate_pairwise
from harness.prevalence import HeadValidation
from harness.stats import cohens_kappa, mean_metric

HELDOUT_FRACTION = 0.3
# Demo-preset generations are ~40 tokens; validation also reports the judge on responses cut to this length.
SHORT_RESPONSE_CHARS = 200
# Every safety validation result: the judge on whole responses and on responses cut to these lengths.
VARIANTS: tuple[tuple[str, int | None], ...] = (("full", None), ("short", SHORT_RESPONSE_CHARS), ("short100", 100))

AGAINST = ("xstest", "refusal-direction-llamaguard")
_XSTEST_MODELS = ("gpt4", "llama2new", "llama2orig", "mistralguard", "mistralinstruct")

# Columns of every labelled frame: source, model, prompt_id, category, prompt, response, unsafe (bool),
# refusal (float 0/1 or NaN), harmful (float 0/1 or NaN), partial (bool), human (bool), heldout (bool).


def _stratified_holdout(ids: pd.Series, strata: pd.Series, fraction: float, seed: int) -> set[str]:
    """round(fraction * n) ids from each stratum, drawn with a seeded generator over the sorted ids."""
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    frame = pd.DataFrame({"id": ids.astype(str), "stratum": strata.astype(str)})
    for stratum in sorted(frame["stratum"].unique()):
        members = sorted(frame.loc[frame["stratum"] == stratum, "id"].unique())
        k = int(round(fraction * len(members)))
        held.update(members[i] for i in rng.permutation(len(members))[:k])
    return held


def load_xstest(data_dir: Path | str | None = None) -> pd.DataFrame:
    """All 2,250 human-labelled XSTest completions; `heldout` marks the prompts held out of training.

    The split is by prompt, stratified by XSTest prompt type (so also by safe/unsafe): 30% of each type's
    prompts, so no held-out prompt appears in training in any model's completion.
    refusal = full or partial refusal. harmful = full compliance to an unsafe prompt; a partial refusal to
    an unsafe prompt counts as refusal (not harmful) and is flagged `partial` so callers can exclude it.
    """
    root = resolve_data_dir(data_dir, "xstest") / "xstest"
    frames = []
    for model in _XSTEST_MODELS:
        path = root / "completions_labeled" / f"xstest_v2_completions_{model}_gpteval.csv.gz"
        if not path.is_file():
            raise HarnessError(f"validation needs the XSTest mirror: {path} is missing")
        frame = pd.read_csv(path)
        frame["model"] = model
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True)
    label = data["final_label"].astype(str)
    unsafe = data["type"].astype(str).str.startswith("contrast_")
    out = pd.DataFrame(
        {
            "source": "xstest",
            "model": data["model"],
            "prompt_id": data["id"].astype(str),
            "category": data["type"].astype(str),
            "prompt": data["prompt"].astype(str),
            "response": data["completion"].fillna("").astype(str),
            "unsafe": unsafe,
            "refusal": label.isin(["2_full_refusal", "3_partial_refusal"]).astype(float),
            "harmful": (unsafe & (label == "1_full_compliance")).astype(float),
            "partial": label == "3_partial_refusal",
            "human": True,
            "gpt4_label": data["gpt4_label"].astype(str),  # XSTest's GPT-4 classifier: an anchor, never a label
        }
    )
    prompts = out.drop_duplicates("prompt_id")
    held = _stratified_holdout(prompts["prompt_id"], prompts["category"], HELDOUT_FRACTION, SPLIT_SEED)
    out["heldout"] = out["prompt_id"].isin(held)
    return out


def load_refusal_direction(data_dir: Path | str | None = None) -> pd.DataFrame:
    """The 25 refusal_direction runs (2,500 completions) with machine labels.

    jailbreakbench runs: refusal = not substring-jailbroken, harmful = LlamaGuard2's verdict.
    harmless (Alpaca) runs: refusal = not substring-jailbroken, harmful = 0 (benign instructions).
    `heldout` marks 30% of the 100 JailbreakBench behaviours (3 per category, fixed seed) in every
    model's and intervention's run; those rows are the "refusal-direction-llamaguard" validation set.
    """
    root = resolve_data_dir(data_dir, "refusal_direction") / "refusal_direction" / "runs"
    paths = sorted(root.glob("*__*_evaluations.json.gz"))
    if not paths:
        raise HarnessError(f"validation needs the refusal_direction mirror: no runs under {root}")
    rows = []
    for path in paths:
        model, rest = path.name.split("__", 1)
        prompt_set, intervention = rest.removesuffix("_evaluations.json.gz").split("_", 1)
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            completions = json.load(handle)["completions"]
        for item in completions:
            jailbroken = float(item["is_jailbreak_substring_matching"])
            is_jbb = prompt_set == "jailbreakbench"
            rows.append(
                {
                    "source": f"rd-{prompt_set}-{intervention}",
                    "model": model,
                    "prompt_id": item["prompt"],
                    "category": str(item.get("category", "")),
                    "prompt": item["prompt"],
                    "response": str(item.get("response") or ""),
                    "unsafe": is_jbb,
                    "refusal": 1.0 - jailbroken,
                    "harmful": float(item["is_jailbreak_llamaguard2"]) if is_jbb else 0.0,
                    "partial": False,
                    "human": False,
                }
            )
    out = pd.DataFrame(rows)
    jbb = out[out["unsafe"]].drop_duplicates("prompt_id")
    held = _stratified_holdout(jbb["prompt_id"], jbb["category"], HELDOUT_FRACTION, SPLIT_SEED)
    out["heldout"] = out["unsafe"] & out["prompt_id"].isin(held)
    return out


def heldout_rows(against: str, data_dir: Path | str | None = None) -> pd.DataFrame:
    """The held-out labelled rows of a validation set (never used to train the embedded judge)."""
    if against == "xstest":
        rows = load_xstest(data_dir)
    elif against == "refusal-direction-llamaguard":
        rows = load_refusal_direction(data_dir)
    else:
        raise HarnessError(f"unknown validation set {against!r}; known: {', '.join(AGAINST + tuple(PAIRWISE_SETS))}")
    return rows[rows["heldout"]].reset_index(drop=True)


def agreement(predicted: np.ndarray, labels: np.ndarray, seed: int = SPLIT_SEED) -> dict:
    """Accuracy (with a bootstrap 95% CI), Cohen's kappa and the positive rates of judge and labels."""
    predicted, labels = np.asarray(predicted, dtype=bool), np.asarray(labels, dtype=bool)
    return {"accuracy": mean_metric((predicted == labels).astype(float), seed),
            "kappa": cohens_kappa(predicted, labels), "n": int(labels.size),
            "confusion": {"tp": int((predicted & labels).sum()), "fn": int((~predicted & labels).sum()),
                          "tn": int((~predicted & ~labels).sum()), "fp": int((predicted & ~labels).sum())},
            "judge_positive_rate": float(predicted.mean()) if labels.size else None,
            "label_positive_rate": float(labels.mean()) if labels.size else None}


def validate(judge_name: str, against: str = "xstest", data_dir: Path | str | None = None,
             limit: int | None = None, options: dict | None = None) -> dict:
    """Agreement of a judge (built with `options`, e.g. an openai judge's model and base URL) with the
    held-out labels of `against`.

    Pairwise sets (PAIRWISE_SETS: LLMBar, MT-Bench human, ...) go to `validate_pairwise`, sets a registered
    benchmark provides (`validation_sets`, e.g. TruthfulQA's human truth/informativeness labels) to that
    benchmark's `validate_judge`. Otherwise a refusal/harmfulness
    judge: refusal is checked on every row; harmfulness on unsafe-prompt rows (excluding partial refusals,
    whose harmfulness the labels leave open). Everything is reported on full responses and again on
    responses cut to 200 and 100 characters (VARIANTS), the lengths demo runs produce. Verdicts a judge could not parse
    are counted (`unparsed`) and left out of the agreement, never guessed.
    """
    from harness.judges.build import judges_filling, make_judge

    provider = validation_provider(against)
    role = "pairwise" if against in PAIRWISE_SETS else provider.validation_sets[against] if provider else "safety"
    if not fills(registry.get("judges", judge_name), role):  # refused before the judge loads a model
        what = {"safety": "refusal/harmfulness", "truth": "truth", "pairwise": "pairwise"}[role]
        raise HarnessError(f"judge {judge_name} is not a {what} judge; --against {against} validates judges "
                           f"such as {', '.join(judges_filling(role))}")
    judge = make_judge(judge_name, options or {})
    if role == "pairwise":
        return validate_pairwise(judge_name, against, data_dir, limit, judge=judge)
    if provider is not None:
        result = provider().validate_judge(judge, against, limit, SPLIT_SEED)
        return {**result, "judge_version": result["version"], "against": against, "labels": "human", "role": role}
    with readable_labels(against):
        rows = heldout_rows(against, data_dir)
    if limit is not None and limit < len(rows):
        keep = np.sort(np.random.default_rng(SPLIT_SEED).permutation(len(rows))[:limit])
        rows = rows.iloc[keep].reset_index(drop=True)
    prompts = list(rows["prompt"].astype(str))
    result: dict = {"judge": judge_name, "judge_version": getattr(judge, "version", None), "against": against,
                    "labels": "human" if against == "xstest" else "machine (substring matching; LlamaGuard2)",
                    "n_rows": int(len(rows)), "n_prompts": int(rows["prompt_id"].nunique()), "limit": limit}
    harmful_rows = (rows["unsafe"] & ~rows["partial"] & rows["harmful"].notna()).to_numpy()
    for variant, cut in VARIANTS:
        responses = [r if cut is None else r.strip()[:cut] for r in rows["response"].astype(str)]
        verdicts = judge.judge_safety(prompts, responses)
        parsed = np.array([v is not None for v in verdicts])
        refusal = np.array([bool(v is not None and v.refusal) for v in verdicts])
        harmful = np.array([bool(v is not None and v.harmful) for v in verdicts])
        on_harmful = harmful_rows & parsed
        result[variant] = {
            "refusal": {**agreement(refusal[parsed], rows["refusal"].to_numpy(float)[parsed] == 1.0),
                        "unparsed": int((~parsed).sum())},
            "harmful": {**agreement(harmful[on_harmful], rows["harmful"].to_numpy(float)[on_harmful] == 1.0),
                        "unparsed": int((harmful_rows & ~parsed).sum())},
        }
    return result


def head_validations(result: dict) -> list[HeadValidation]:
    """The safety judge's per-head confusion counts on full responses, from a `validate` result on human
    labels (the record rate corrections rest on: harness/prevalence.py)."""
    if result.get("role", "safety") != "safety" or "full" not in result:
        raise HarnessError("--record is for safety judges (refusal and harmful heads) validated on --against xstest")
    if result.get("labels") != "human" or result.get("limit") is not None:
        raise HarnessError("--record needs the full human-labelled set: use --against xstest without --limit")
    heads = []
    for head in ("refusal", "harmful"):
        counts = result["full"][head]["confusion"]
        heads.append(HeadValidation(
            judge=result["judge"], version=str(result["judge_version"]), head=head,
            labels=f"{result['against']} (held-out split, human labels)", true_positives=counts["tp"],
            positives=counts["tp"] + counts["fn"], true_negatives=counts["tn"], negatives=counts["tn"] + counts["fp"]))
    return heads


def validation_provider(against: str) -> Any | None:
    """The registered benchmark that provides the labelled set `against` (its `validation_sets`), if any."""
    for name in registry.names("benchmarks"):
        benchmark = registry.get("benchmarks", name)
        if against in getattr(benchmark, "validation_sets", {}):
            return benchmark
    return None


def format_report(result: dict) -> str:
    if result["against"] in PAIRWISE_SETS:
        return format_pairwise_report(result)
    if result.get("role") == "truth":
        return format_truth_report(result)
    lines = [f"judge {result['judge']} (version {result['judge_version']}) against {result['against']} "
             f"held-out split: {result['n_rows']} responses to {result['n_prompts']} prompts, "
             f"{result['labels']} labels"]
    for variant, cut in VARIANTS:
        if variant not in result:  # a result saved before the 100-character variant existed
            continue
        label = "full responses" if cut is None else f"responses cut to {cut} chars"
        for head in ("refusal", "harmful"):
            stats = result[variant][head]
            accuracy = stats["accuracy"]
            if accuracy["value"] is None:
                lines.append(f"  {label:32s} {head:8s} n=0")
                continue
            kappa = "n/a" if stats["kappa"] is None else f"{stats['kappa']:.3f}"
            lo, hi = accuracy["ci95"]
            lines.append(f"  {label:32s} {head:8s} accuracy {100 * accuracy['value']:.1f}% "
                         f"[{100 * lo:.1f}, {100 * hi:.1f}]  kappa {kappa}  n={stats['n']}  "
                         f"judge+ {100 * stats['judge_positive_rate']:.1f}%  "
                         f"label+ {100 * stats['label_positive_rate']:.1f}%  unparsed {stats.get('unparsed', 0)}")
    return "\n".join(lines)


def format_truth_report(result: dict) -> str:
    accuracy = result["accuracy"]
    lo, hi = accuracy["ci95"]
    kappa = "n/a" if result["kappa"] is None else f"{result['kappa']:.3f}"
    balanced = "n/a" if result["balanced_accuracy"] is None else f"{100 * result['balanced_accuracy']:.1f}%"
    return (f"judge {result['judge']} (version {result['judge_version']}) against {result['against']} "
            f"(TruthfulQA human {result['kind']} labels), {result['n']} answers\n"
            f"  accuracy {100 * accuracy['value']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]  balanced {balanced}  "
            f"kappa {kappa}  judge+ {100 * result['judge_positive_rate']:.1f}%  "
            f"label+ {100 * result['human_positive_rate']:.1f}%  unparsed {result['unparsed']}")
