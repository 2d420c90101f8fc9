"""The aligner interface: `align(ctx) -> AlignedModel`."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from harness.errors import HarnessError
from harness.hashing import hash_dir, hash_json
from harness.store import Cache, RunStore
from harness.types import Budget, Example, Sampling


def answer_prompt(backend: Any, question: str, examples: Sequence[Example] = ()) -> str:
    """The prompt that asks `backend` to answer `question`, optionally after example exchanges."""
    if backend.spec.prompt_format == "chat":
        messages: list[dict[str, str]] = []
        for example in examples:
            messages += [{"role": "user", "content": example.question},
                         {"role": "assistant", "content": example.answer}]
        messages.append({"role": "user", "content": question})
        return backend.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    shots = "".join(f"{p}{c}" for p, c in (backend.format_training_pair(e.question, e.answer) for e in examples))
    return shots + backend.format_prompt(question)


@dataclass
class AlignedModel:
    """Base weights, plus an optional LoRA adapter, plus an optional in-context example picker.

    Iterative aligners also list their `checkpoints`: (iteration, adapter), iteration 0 = None = the
    unaligned model, the last one = `adapter`; benchmarks that draw curves over iterations evaluate each.
    """

    backend: Any
    adapter: Path | None = None
    example_picker: Callable[[list[str]], list[list[Example]]] | None = None
    description: dict[str, Any] = field(default_factory=dict)
    checkpoints: list[tuple[int, Path | None]] = field(default_factory=list)

    def activate(self) -> None:
        self.backend.set_adapter(self.adapter)

    def prompts(self, questions: list[str]) -> list[str]:
        shots = self.example_picker(questions) if self.example_picker else [[] for _ in questions]
        return [answer_prompt(self.backend, q, s) for q, s in zip(questions, shots)]

    def answer_sampling(self, sampling: Sampling) -> Sampling:
        return replace(sampling, stop=tuple(sampling.stop) + tuple(self.backend.answer_stops))


@dataclass
class AlignContext:
    """What an aligner gets. Aligners never load data or judges themselves."""

    backend: Any
    seeds: list[Example]
    budget: Budget
    seed: int
    store: RunStore
    cache: Cache
    eval_prompts: list[str]
    eval_vectors: np.ndarray
    options: dict[str, Any] = field(default_factory=dict)

    def artifacts(self, *parts: str) -> Path:
        path = self.store.root.joinpath("artifacts", *parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


class Aligner:
    """Subclasses set `name` and implement `align`; `options` names the `--option` keys they read."""

    name = "base"
    description = ""
    options: tuple[str, ...] = ()

    def align(self, ctx: AlignContext) -> AlignedModel:
        raise NotImplementedError


def check_options(aligner: Aligner, given: dict[str, Any]) -> None:
    unknown = sorted(set(given) - set(aligner.options))
    if unknown:
        known = f"known: {', '.join(aligner.options)}" if aligner.options else "it takes none"
        raise HarnessError(f"aligner {aligner.name} does not take option(s) {', '.join(unknown)}; {known}")


def adapter_hash(path: Path | None) -> str | None:
    return hash_dir(path) if path else None


def seeds_hash(seeds: Sequence[Example]) -> str:
    return hash_json([s.to_dict() for s in seeds])
