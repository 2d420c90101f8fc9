"""The inference contract every backend implements, and the results it returns.

A backend generates text and scores continuations for one base model. A LoRA adapter is passed with each
call (None = the base model): no caller sets adapter state on a backend first. `fingerprint(adapter)`
identifies everything that changes outputs (weights, adapter, dtype, device kind, engine and its version);
caches key on it, so results computed under one setting are never served for another.
Training is not part of this contract: see `harness.train`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

from harness.models.embedded import ModelSpec
from harness.models.prompt_format import PromptFormat
from harness.types import Sampling

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Generation:
    text: str  # the continuation only, cut before the first stop string
    n_tokens: int  # tokens generated (up to the stop string or EOS, inclusive)
    finish: str  # "stop" (stop string or EOS) or "length"


def cut_at_stops(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """`text` cut before the first of `stops` it contains, and whether it was cut (shared by the backends)."""
    cuts = [text.find(s) for s in stops if s and s in text]
    return (text[:min(cuts)], True) if cuts else (text, False)


@runtime_checkable
class Backend(Protocol):
    spec: ModelSpec
    prompt_format: PromptFormat

    def generate(self, prompts: list[str], sampling: Sampling, adapter: Path | None = None, *,
                 batch_size: int = 8, progress: Progress | None = None) -> list[Generation]:
        """One generation per prompt, in input order."""
        ...

    def loglikelihood(self, pairs: list[tuple[str, str]], adapter: Path | None = None, *,
                      batch_size: int = 8) -> list[float]:
        """Sum of the log-probabilities of each continuation given its context, per (context, continuation)."""
        ...

    def fingerprint(self, adapter: Path | None = None) -> str:
        """A stable id of everything that determines this backend's outputs with `adapter`."""
        ...
