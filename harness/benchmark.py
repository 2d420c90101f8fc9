"""The benchmark interface: evaluation items, a default seed set, and scoring of an aligned model."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.aligner import AlignedModel
from harness.config import EvalSize
from harness.generation import cached_generate
from harness.store import Cache, RunStore
from harness.types import EvalItem, Sampling


def capped(size: int | None, limit: int | None) -> int | None:
    """An evaluation size cut to `--limit` (None = no bound)."""
    if limit is None:
        return size
    return limit if size is None else min(size, limit)


@dataclass
class EvalContext:
    store: RunStore
    cache: Cache
    judge: Any
    eval_size: EvalSize
    seed: int
    batch_size: int = 32  # generation / scoring batch
    usage: dict[str, Any] = field(default_factory=dict)

    def answer(self, model: AlignedModel, questions: Sequence[str], desc: str) -> list[dict]:
        """The model's answers (text, n_tokens, finish, cached) through the cache, sampled with the run seed;
        their tokens (cached ones included) are added to usage["tokens_generated"]."""
        sampling = model.answer_sampling(Sampling(max_new_tokens=self.eval_size.max_new_tokens, seed=self.seed))
        generations, spent = cached_generate(model.backend, model.prompts(list(questions)), sampling, self.cache,
                                             model.adapter, batch_size=self.batch_size, desc=desc)
        self.usage["tokens_generated"] = self.usage.get("tokens_generated", 0) + spent
        return generations


class Benchmark:
    """Subclasses set `name`, `default_seeds` (a built-in seed set) and `default_judge`."""

    name = "base"
    default_seeds = ""
    default_judge = ""
    description = ""
    # True: the runner hands the aligner to `run` instead of aligning once and calling `evaluate`
    # (domain generalization aligns once per seed domain).
    aligns_itself = False

    def items(self, eval_size: EvalSize, limit: int | None, seed: int) -> tuple[list[EvalItem], list[dict]]:
        """Evaluation items and a record of every data source used (for the manifest)."""
        raise NotImplementedError

    def evaluate(self, aligned: AlignedModel, items: list[EvalItem], ctx: EvalContext) -> dict[str, Any]:
        """Per-sample records written to the run store as they go; returns {"metrics": {...}, ...}."""
        raise NotImplementedError

    def run(self, aligner: Any, align_ctx: Any, items: list[EvalItem],
            ctx: EvalContext) -> tuple[AlignedModel, dict[str, Any]]:
        """Only for `aligns_itself` benchmarks: align and evaluate; returns (a model for the manifest, result)."""
        raise NotImplementedError
