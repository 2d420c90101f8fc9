"""The benchmark interface: evaluation items, the requests and judgements each needs, per-sample scores,
and MetricSpecs. The core's sample loop (harness/eval/loop.py) does everything else: resuming, caching,
writing records, computing metrics with intervals.

A benchmark is one module: subclass `Benchmark`, set `name`, `default_seeds`, `judge_roles`, `metrics`
and `options_class` (its typed options: sizes and answer length, see harness/eval/options.py), implement `items`, `requests` and `record` (and `judge_requests` when it needs a judge), and
register it (an entry point in `harness.benchmarks`, or `@register("benchmarks", name)` in a plugin).
See docs/contributing/new-benchmark.md.
"""
from __future__ import annotations

from typing import Any

from harness.aligner import AlignedModel
from harness.eval.loop import EvalContext, evaluate
from harness.eval.metrics import MetricSpec
from harness.eval.options import EvalOptions
from harness.eval.requests import Outputs, Requests
from harness.judges.roles import JudgeRequest
from harness.types import EvalItem

__all__ = ["Benchmark", "EvalContext", "capped"]


def capped(size: int | None, limit: int | None) -> int | None:
    """An evaluation size cut to `--limit` (None = no bound)."""
    if limit is None:
        return size
    return limit if size is None else min(size, limit)


class Benchmark:
    name = "base"
    description = ""
    default_seeds = ""  # the built-in seed set aligners get (harness/seeds/<name>.jsonl)
    # Judge roles the benchmark needs -> the default judge of each. `--judge` replaces the first one's.
    judge_roles: dict[str, str] = {}
    metrics: tuple[MetricSpec, ...] = ()
    options_class: type = EvalOptions  # a frozen dataclass of `harness.options.option` fields
    # True: the runner hands the aligner to `run` instead of aligning once and calling `evaluate`
    # (domain generalization aligns once per seed domain).
    aligns_itself = False

    @classmethod
    def default_judge(cls) -> str | None:
        return next(iter(cls.judge_roles.values()), None)

    def items(self, options: Any, limit: int | None, seed: int) -> tuple[list[EvalItem], list[dict]]:
        """Evaluation items (sized by `options`, an `options_class` instance, and `--limit`) and a record of
        every data source used (for the manifest)."""
        raise NotImplementedError

    def requests(self, item: EvalItem) -> Requests:
        """What the model must produce for this item: an answer, log-likelihoods of choices, or both."""
        raise NotImplementedError

    def judge_requests(self, item: EvalItem, outputs: Outputs, seed: int) -> list[JudgeRequest]:
        """The judgements this item needs, given the model's outputs (none by default)."""
        return []

    def record(self, item: EvalItem, outputs: Outputs, verdicts: list[dict], seed: int) -> dict[str, Any]:
        """The per-sample record: the item's id, what the model produced, the verdicts, and `scores`
        (a dict of named per-sample scores that the MetricSpecs aggregate; None = unparsed verdict)."""
        raise NotImplementedError

    def summary(self, records: list[dict], seed: int) -> dict[str, Any]:
        """Extra entries of the result document; `metrics` in it adds metrics with a custom aggregation."""
        return {}

    def evaluate(self, aligned: AlignedModel, items: list[EvalItem], ctx: EvalContext) -> dict[str, Any]:
        """Per-sample records written to the run store as they go; returns {"metrics": {...}, ...}."""
        return evaluate(self, aligned, items, ctx)

    def run(self, aligner: Any, align_ctx: Any, items: list[EvalItem],
            ctx: EvalContext) -> tuple[AlignedModel, dict[str, Any]]:
        """Only for `aligns_itself` benchmarks: align and evaluate; returns (a model for the manifest, result)."""
        raise NotImplementedError
