"""`safety`: harmful prompts (HarmBench, AdvBench, Do-Not-Answer, JailbreakBench) and safe prompts.

Metrics: harmful rate (overall and per harm category) and refusal rate on harmful prompts; over-refusal on
borderline prompts that only look harmful (XSTest's safe prompts, the repository's borderline set) and on
plainly benign prompts. Each with n and a 95% bootstrap confidence interval, and `unparsed`: how many items
the judge's answer could not be parsed for (an LLM judge may answer garbage; those are counted, not averaged).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from benchmarks.safety_data import load_safety_items
from harness.aligner import AlignedModel
from harness.benchmark import Benchmark, EvalContext, capped
from harness.config import EvalSize
from harness.generation import chunks
from harness.hashing import hash_json
from harness.stats import mean_metric
from harness.types import EvalItem



class Safety(Benchmark):
    name = "safety"
    default_seeds = "safety"
    default_judge = "embedded-safety"
    description = "harmful rate, refusal rate and over-refusal (borderline and benign prompts)"

    def items(self, eval_size: EvalSize, limit: int | None, seed: int) -> tuple[list[EvalItem], list[dict]]:
        return load_safety_items(capped(eval_size.harmful, limit), capped(eval_size.benign, limit),
                                 capped(eval_size.borderline, limit), seed)

    def evaluate(self, aligned: AlignedModel, items: list[EvalItem], ctx: EvalContext) -> dict[str, Any]:
        done = {r["id"]: r for r in ctx.store.read_samples("eval")}
        with ctx.store.samples("eval") as writer:
            for chunk in chunks([item for item in items if item.id not in done]):
                generations = ctx.answer(aligned, [item.prompt for item in chunk], "safety: answer")
                verdicts = judge_cached(ctx, [item.prompt for item in chunk], [g["text"] for g in generations])
                for item, generation, verdict in zip(chunk, generations, verdicts):
                    record = {"id": item.id, "kind": item.kind, "category": item.category, "source": item.source,
                              "prompt": item.prompt, "response": generation["text"],
                              "n_tokens": generation["n_tokens"], "sampling_seed": ctx.seed, **verdict}
                    writer.write(record)
                    done[item.id] = record
        records = [done[item.id] for item in items]
        return {"metrics": safety_metrics(records, ctx.seed),
                "judge": {"name": ctx.judge.name, "version": ctx.judge.version,
                          "unparsed": sum(1 for r in records if r.get("unparsed"))}}


def judge_cached(ctx: EvalContext, prompts: list[str], responses: list[str]) -> list[dict]:
    keys = [hash_json({"judge": ctx.judge.name, "version": ctx.judge.version, "prompt": p, "response": r})
            for p, r in zip(prompts, responses)]
    verdicts: list[dict | None] = [ctx.cache.get(k) for k in keys]
    missing = [i for i, v in enumerate(verdicts) if v is None]
    if missing:
        fresh = ctx.judge.score([prompts[i] for i in missing], [responses[i] for i in missing])
        for i, verdict in zip(missing, fresh):
            if verdict is None:  # an LLM judge whose answer could not be parsed: counted, never guessed
                value = {"refusal": None, "harmful": None, "p_refusal": None, "p_harmful": None, "unparsed": True}
            else:
                value = {"refusal": bool(verdict.refusal), "harmful": bool(verdict.harmful),
                         "p_refusal": float(verdict.p_refusal), "p_harmful": float(verdict.p_harmful)}
            ctx.cache.put(keys[i], value)
            verdicts[i] = value
    return [v for v in verdicts if v is not None]


def judged_rate(values: list[bool | None], seed: int) -> dict:
    """mean_metric over the judged items; `unparsed` counts the items whose verdict could not be parsed."""
    judged = [v for v in values if v is not None]
    return {**mean_metric(judged, seed), "unparsed": len(values) - len(judged)}


def safety_metrics(records: list[dict], seed: int) -> dict[str, dict]:
    harmful = [r for r in records if r["kind"] == "harmful"]
    borderline = [r for r in records if r["kind"] == "borderline"]
    benign = [r for r in records if r["kind"] == "benign"]
    metrics = {
        "harmful_rate": judged_rate([r["harmful"] for r in harmful], seed),
        "refusal_rate": judged_rate([r["refusal"] for r in harmful], seed),
        "over_refusal_borderline": judged_rate([r["refusal"] for r in borderline], seed),
        "over_refusal_benign": judged_rate([r["refusal"] for r in benign], seed),
        "over_refusal": judged_rate([r["refusal"] for r in borderline + benign], seed),
    }
    by_category: dict[str, list[bool | None]] = defaultdict(list)
    for r in harmful:
        by_category[r["category"]].append(r["harmful"])
    for category in sorted(by_category):
        metrics[f"harmful_rate/{category}"] = judged_rate(by_category[category], seed)
    return metrics
