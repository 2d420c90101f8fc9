"""In-context example pickers that an aligned model can carry, and how an artifact saves and restores them.

A picker is saved as its `state()` (a small JSON mapping with a `kind`); restoring it needs the artifact's seeds.
"""
from __future__ import annotations

from typing import Any, Callable

from harness.embedding import VectorIndex, embed
from harness.errors import HarnessError
from harness.types import Example


class SeedRetriever:
    """Picks the k seeds nearest to each question, the most similar placed last (next to the question)."""

    kind = "nearest-seeds"

    def __init__(self, seeds: list[Example], k: int):
        self.seeds, self.k = seeds, k
        self.index = VectorIndex(embed([s.question for s in seeds]))

    def __call__(self, questions: list[str]) -> list[list[Example]]:
        _, neighbours = self.index.search(embed(questions), self.k)
        return [[self.seeds[i] for i in reversed(row)] for row in neighbours]

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "k": self.k}


PICKERS: dict[str, Callable[[dict[str, Any], list[Example]], Callable]] = {
    SeedRetriever.kind: lambda state, seeds: SeedRetriever(seeds, int(state["k"])),
}


def picker_state(picker: Callable | None) -> dict[str, Any] | None:
    """What an artifact stores of a picker (None: no picker); a picker that cannot be saved raises."""
    if picker is None:
        return None
    state = getattr(picker, "state", None)
    if not callable(state):
        raise HarnessError(f"the in-context example picker {type(picker).__name__} has no state() to save in an "
                           "artifact; use `harness run`, which aligns and evaluates in one process")
    return state()


def restore_picker(state: dict[str, Any] | None, seeds: list[Example]) -> Callable | None:
    if state is None:
        return None
    if not isinstance(state, dict) or state.get("kind") not in PICKERS:
        raise HarnessError(f"unknown in-context example picker {state!r} in the artifact; known: {', '.join(PICKERS)}")
    return PICKERS[state["kind"]](state, seeds)
