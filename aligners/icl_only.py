"""`icl-only`: at inference, the k seeds nearest to each question are placed before it as examples."""
from __future__ import annotations

from dataclasses import dataclass

from harness.aligner import AlignContext, AlignedModel, Aligner
from harness.embedding import VectorIndex, embed
from harness.options import option
from harness.types import Example


@dataclass(frozen=True)
class IclOptions:
    k: int = option(3, "in-context examples per question: the k seeds nearest to it", minimum=1)


class SeedRetriever:
    """Picks the k seeds nearest to each question, the most similar placed last (next to the question)."""

    def __init__(self, seeds: list[Example], k: int):
        self.seeds, self.k = seeds, k
        self.index = VectorIndex(embed([s.question for s in seeds]))

    def __call__(self, questions: list[str]) -> list[list[Example]]:
        _, neighbours = self.index.search(embed(questions), self.k)
        return [[self.seeds[i] for i in reversed(row)] for row in neighbours]


class IclOnly(Aligner):
    name = "icl-only"
    description = "retrieve k nearest seeds per question as in-context examples; no training"
    options_class = IclOptions

    def align(self, ctx: AlignContext) -> AlignedModel:
        k = ctx.options.k
        return AlignedModel(ctx.backend, example_picker=SeedRetriever(ctx.seeds, k),
                            description={"aligner": self.name, "k": k})
