"""The aligner interface: `align(ctx) -> AlignedModel`."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from harness.hashing import hash_dir, hash_json
from harness.models.backend import Backend
from harness.store import Cache, RunStore
from harness.options import NoOptions
from harness.types import Example, Sampling


@dataclass
class AlignedModel:
    """Base weights, plus an optional LoRA adapter, plus an optional in-context example picker.

    Iterative aligners also list their `checkpoints`: (iteration, adapter), iteration 0 = None = the
    unaligned model, the last one = `adapter`; benchmarks that draw curves over iterations evaluate each.
    """

    backend: Backend
    adapter: Path | None = None
    example_picker: Callable[[list[str]], list[list[Example]]] | None = None
    description: dict[str, Any] = field(default_factory=dict)
    checkpoints: list[tuple[int, Path | None]] = field(default_factory=list)

    def shots(self, questions: list[str]) -> list[list[Example]]:
        """The in-context examples placed before each question (none without an example picker)."""
        return self.example_picker(questions) if self.example_picker else [[] for _ in questions]

    def prompts(self, questions: list[str]) -> list[str]:
        answer_prompt = self.backend.prompt_format.answer_prompt
        return [answer_prompt(q, s) for q, s in zip(questions, self.shots(questions))]

    def answer_sampling(self, sampling: Sampling) -> Sampling:
        return replace(sampling, stop=tuple(sampling.stop) + tuple(self.backend.prompt_format.answer_stops))


@dataclass
class AlignContext:
    """What an aligner gets. Aligners never load data or judges themselves. `options` is an instance of the
    aligner's `options_class`, already parsed and checked."""

    backend: Backend
    seeds: list[Example]
    options: Any
    seed: int
    store: RunStore
    cache: Cache
    eval_prompts: list[str]
    eval_vectors: np.ndarray

    def artifacts(self, *parts: str) -> Path:
        path = self.store.root.joinpath("artifacts", *parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


class Aligner:
    """Subclasses set `name` and implement `align`; `options_class` is the dataclass of the options they take
    (`--option KEY=VALUE`, presets), each field made with `harness.options.option`."""

    name = "base"
    description = ""
    options_class: type = NoOptions

    def align(self, ctx: AlignContext) -> AlignedModel:
        raise NotImplementedError


def adapter_hash(path: Path | None) -> str | None:
    return hash_dir(path) if path else None


def seeds_hash(seeds: Sequence[Example]) -> str:
    return hash_json([s.to_dict() for s in seeds])
