"""The options every training aligner shares (LoRA fine-tuning) and those of generation by the model."""
from __future__ import annotations

from dataclasses import dataclass

from harness.options import option


@dataclass(frozen=True)
class TrainOptions:
    epochs: int = option(2, "passes over the training pairs", minimum=1)
    learning_rate: float = option(3e-4, "AdamW learning rate", above=0)
    lora_rank: int = option(8, "LoRA rank (alpha = 2 x rank, all linear layers)", minimum=1)
    batch_size: int = option(8, "training batch (pairs per optimizer step)", minimum=1)
    max_seq_len: int = option(192, "training sequence cap in tokens", minimum=8)
    max_train_tokens: int | None = option(None, "cap on completion tokens trained on, over every training stage "
                                          "(--budget N sets it; none = no cap)", minimum=1)


@dataclass(frozen=True)
class GenerationOptions:
    temperature: float = option(0.9, "sampling temperature of the aligner's own generation (top-p 0.95)", minimum=0)
    gen_max_new_tokens: int = option(96, "new tokens per generated sample", minimum=1)
    gen_batch_size: int = option(32, "prompts per generation batch", minimum=1)
