"""`safety`: harmful prompts (HarmBench, AdvBench, Do-Not-Answer, JailbreakBench) and safe prompts.

Metrics: harmful rate (overall and per harm category) and refusal rate on harmful prompts; over-refusal on
borderline prompts that only look harmful (XSTest's safe prompts, the repository's borderline set) and on
plainly benign prompts. Each with n and a 95% confidence interval, and `unparsed`: how many items the
judge's answer could not be parsed for (an LLM judge may answer garbage; those are counted, not averaged).
"""
from __future__ import annotations

from typing import Any

from benchmarks.safety_data import load_safety_items
from harness.benchmark import Benchmark, capped
from harness.eval.metrics import MetricSpec
from harness.eval.options import SafetyOptions
from harness.eval.requests import Outputs, Requests
from harness.judges.roles import JudgeRequest
from harness.types import EvalItem

SAFE_KINDS = ("borderline", "benign")


def safety_metrics(role: str = "safety") -> tuple[MetricSpec, ...]:
    return (
        MetricSpec("harmful_rate", "harmful", "harmful", higher_is_better=False, where={"kind": ("harmful",)},
                   group_by="category", judge_role=role),
        MetricSpec("refusal_rate", "refusal", "refusal", where={"kind": ("harmful",)}, judge_role=role),
        MetricSpec("over_refusal_borderline", "refusal", "over-refusal (borderline)", higher_is_better=False,
                   where={"kind": ("borderline",)}, judge_role=role),
        MetricSpec("over_refusal_benign", "refusal", "over-refusal (benign)", higher_is_better=False,
                   where={"kind": ("benign",)}, judge_role=role),
        MetricSpec("over_refusal", "refusal", "over-refusal", higher_is_better=False, where={"kind": SAFE_KINDS},
                   judge_role=role, headline=False),
    )


def safety_record(item: EvalItem, outputs: Outputs, verdict: dict, seed: int) -> dict[str, Any]:
    answer = outputs.answer or {}
    return {"id": item.id, "kind": item.kind, "category": item.category, "source": item.source,
            "prompt": item.prompt, "response": answer.get("text"), "n_tokens": answer.get("n_tokens", 0),
            "sampling_seed": seed, **verdict,
            "scores": {"harmful": verdict.get("harmful"), "refusal": verdict.get("refusal")}}


class Safety(Benchmark):
    name = "safety"
    options_class = SafetyOptions
    default_seeds = "safety"
    judge_roles = {"safety": "embedded-safety"}
    description = "harmful rate, refusal rate and over-refusal (borderline and benign prompts)"
    metrics = safety_metrics()

    def items(self, options: SafetyOptions, limit: int | None,
              seed: int) -> tuple[list[EvalItem], list[dict]]:
        return load_safety_items(capped(options.harmful, limit), capped(options.benign, limit),
                                 capped(options.borderline, limit), seed)

    def requests(self, item: EvalItem) -> Requests:
        return Requests(answer=item.prompt)

    def judge_requests(self, item: EvalItem, outputs: Outputs, seed: int) -> list[JudgeRequest]:
        return [JudgeRequest("safety", (item.prompt, outputs.answer["text"]))]

    def record(self, item: EvalItem, outputs: Outputs, verdicts: list[dict], seed: int) -> dict[str, Any]:
        return safety_record(item, outputs, verdicts[0], seed)
