"""`icl-only`: at inference, the k seeds nearest to each question are placed before it as examples."""
from __future__ import annotations

from dataclasses import dataclass

from harness.aligner import AlignContext, AlignedModel, Aligner
from harness.options import option
from harness.pickers import SeedRetriever


@dataclass(frozen=True)
class IclOptions:
    k: int = option(3, "in-context examples per question: the k seeds nearest to it", minimum=1)


class IclOnly(Aligner):
    name = "icl-only"
    description = "retrieve k nearest seeds per question as in-context examples; no training"
    options_class = IclOptions

    def align(self, ctx: AlignContext) -> AlignedModel:
        k = ctx.options.k
        return AlignedModel(ctx.backend, example_picker=SeedRetriever(ctx.seeds, k),
                            description={"aligner": self.name, "k": k})
