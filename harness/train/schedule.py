"""The budgeted batch schedule shared by every trainer: shuffled batches under a step and token cap."""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch


class BudgetedBatches:
    """Shuffled batches of row indices: `epochs` passes, at most `max_steps` batches, cut where one more
    row would cross `max_tokens` trained tokens (then `stopped_at_budget` is set and no batch follows)."""

    def __init__(self, token_counts: Sequence[int], batch_size: int, epochs: int, seed: int,
                 max_steps: int | None = None, max_tokens: int | None = None) -> None:
        self.token_counts = list(token_counts)
        self.batch_size = batch_size
        self.steps = epochs * math.ceil(len(self.token_counts) / batch_size)
        if max_steps is not None:
            self.steps = min(self.steps, max_steps)
        self.seed = seed
        self.max_tokens = max_tokens
        self.tokens = 0
        self.stopped_at_budget = False

    def _fitting(self, batch: list[int]) -> list[int]:
        if self.max_tokens is None:
            return batch
        used = self.tokens
        for count, index in enumerate(batch):
            used += self.token_counts[index]
            if used > self.max_tokens:
                self.stopped_at_budget = True
                return batch[:count]
        return batch

    def __iter__(self) -> Iterator[list[int]]:
        shuffle = torch.Generator().manual_seed(self.seed)
        taken = 0
        while taken < self.steps:
            order = torch.randperm(len(self.token_counts), generator=shuffle).tolist()
            for start in range(0, len(order), self.batch_size):
                if taken >= self.steps:
                    return
                batch = self._fitting(order[start:start + self.batch_size])
                if not batch:
                    return
                self.tokens += sum(self.token_counts[i] for i in batch)
                taken += 1
                yield batch
                if self.stopped_at_budget:
                    return
