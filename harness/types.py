"""Data types shared across the core, aligners and benchmarks."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Example:
    """A question/answer pair with a domain label (a seed or a generated sample)."""

    question: str
    answer: str
    domain: str = "general"
    source: str = "seed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EvalItem:
    """One evaluation prompt. `kind` says what a good response is (e.g. 'harmful' or 'benign')."""

    id: str
    prompt: str
    category: str
    kind: str
    source: str


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()


@dataclass
class Usage:
    """Work spent in one stage, for the manifest."""

    wall_s: float = 0.0
    tokens_generated: int = 0
    tokens_trained: int = 0
    optimizer_steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
