"""`icl-only`: at inference, the k seeds nearest to each question are placed before it as examples."""
from __future__ import annotations

from harness.aligner import AlignContext, AlignedModel, Aligner
from harness.embedding import VectorIndex, embed
from harness.types import Example


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
    options = ("k",)

    def align(self, ctx: AlignContext) -> AlignedModel:
        k = int(ctx.options.get("k", ctx.budget.icl_k))
        return AlignedModel(ctx.backend, example_picker=SeedRetriever(ctx.seeds, k),
                            description={"aligner": self.name, "k": k})
