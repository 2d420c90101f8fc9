"""The training-token budget that caps all training stages of one run together."""
from __future__ import annotations

from dataclasses import dataclass

from harness.errors import HarnessError


@dataclass
class TrainingBudget:
    """Training tokens spent so far in a run against an aligner's `max_train_tokens` option (`--budget`) (None = no cap).

    Aligners pass `remaining` to every training call and `spend` what it used, so the cap holds across
    iterations and stages together; `record()` is what the run's metrics show.
    """

    cap: int | None
    spent: int = 0
    stopped: bool = False

    def __post_init__(self) -> None:
        if self.cap is not None and self.cap <= 0:
            raise HarnessError(f"the training-token budget must be a positive number of tokens, got {self.cap}")

    @property
    def remaining(self) -> int | None:
        return None if self.cap is None else max(0, self.cap - self.spent)

    @property
    def exhausted(self) -> bool:
        return self.stopped or (self.cap is not None and self.spent >= self.cap)

    def spend(self, tokens: int, stopped_at_budget: bool = False) -> None:
        self.spent += tokens
        self.stopped = self.stopped or stopped_at_budget

    def skip(self) -> None:
        """A training stage was left out because the budget was used up."""
        self.stopped = True

    def record(self) -> dict:
        return {"max_train_tokens": self.cap, "tokens_trained": self.spent, "stopped_at_budget": self.stopped}
