"""Pairwise judgements with a seeded position swap, shared by every benchmark that compares two outputs.

Which output the judge sees first is a seeded coin flip per item, undone before scoring, so a judge's
position bias cannot favour either side. A record's `score` is P(the model's output is better).
"""
from __future__ import annotations

from typing import Any

from harness.hashing import hash_json
from harness.judges.roles import JudgeRequest


def is_swapped(seed: int, item: str) -> bool:
    """The seeded coin flip: True = the model's output is shown first. Stable across resumes."""
    return int(hash_json([seed, item])[:8], 16) % 2 == 1


def pairwise_request(instruction: str, reference: str, output: str, swapped: bool) -> JudgeRequest:
    """The pair as the judge sees it: the model's output first when `swapped`."""
    first, second = (output, reference) if swapped else (reference, output)
    return JudgeRequest("pairwise", (instruction, first, second))


def unswapped(verdict: dict[str, Any], swapped: bool) -> dict[str, Any]:
    """The verdict fields of a record, with `score` = P(model's output better) (None when unparsed)."""
    second_better = verdict.get("second_better")
    score = None if second_better is None else (1.0 - second_better if swapped else second_better)
    return {"second_better": second_better, "score": score, "judge_raw": verdict.get("judge_raw", "")}


def discrete(score: float | None) -> float | None:
    """A pairwise score in [0, 1] as win (1), draw (0.5) or loss (0)."""
    if score is None:
        return None
    return 1.0 if score > 0.5 else 0.0 if score < 0.5 else 0.5
