"""What a benchmark asks of the model for one sample, and what comes back."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from harness.types import Example


@dataclass(frozen=True)
class Choices:
    """Log-likelihood scoring: each continuation after a context. `context` builds the context from the
    aligned model's in-context examples for this sample (none for most aligners), so an aligner's examples
    reach scored contexts too. `kind` namespaces the cache (e.g. "mmlu")."""

    context: Callable[[Sequence[Example]], str]
    continuations: tuple[str, ...]
    kind: str


@dataclass(frozen=True)
class Requests:
    """answer: a question the model under test answers with its own answer prompt (generation).
    answer_unaligned: the same question also answered by the base model (no adapter, no examples).
    choices: log-likelihoods of continuations."""

    answer: str | None = None
    answer_unaligned: bool = False
    choices: Choices | None = None


@dataclass(frozen=True)
class Outputs:
    """The results of a sample's requests. Answers are dicts: text, n_tokens, finish, cached."""

    answer: dict[str, Any] | None = None
    unaligned: dict[str, Any] | None = None
    loglikelihoods: list[float] | None = None  # one per continuation, in the Choices' order
