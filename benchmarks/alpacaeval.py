"""`alpacaeval` / `alpacaeval-ae1`: instruction following, judged pairwise against a reference model.

The aligned model answers AlpacaEval instructions (a seeded subset of the 805, sized by
the `questions` option); a pairwise judge compares each answer with the reference output: gpt4_1106_preview
for `alpacaeval` (AlpacaEval 2), text-davinci-003 for `alpacaeval-ae1` (AlpacaEval 1). Which output the
judge sees first is a seeded coin flip per item, undone before scoring (harness/eval/pairwise.py), so a
judge's position bias cannot favour either side.

Metrics (rates in [0, 1]): `win_rate` (mean P(model better), 95% CI = +-1.96 standard errors, as
AlpacaEval reports it), `discrete_win_rate` (wins + draws / 2), `lc_win_rate` (length-controlled; see
harness/winrate.py; CI by bootstrap), and `win_rate/<subset>` per AlpacaEval source subset. Verdicts the
judge could not parse are counted in `unparsed` and left out of the means, never guessed.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np

from benchmarks.alpacaeval_data import AlpacaEvalRow, load_eval_set, load_instruction_difficulty
from harness.benchmark import Benchmark, capped
from harness.datasources import Resolver
from harness.eval.metrics import MetricSpec
from harness.eval.options import QuestionOptions
from harness.eval.requests import Outputs, Requests
from harness.eval.pairwise import discrete, is_swapped, pairwise_request, unswapped
from harness.judges.roles import JudgeRequest
from harness.types import EvalItem
from harness.winrate import length_controlled_win_rate



def item_id(row: AlpacaEvalRow) -> str:
    return f"alpacaeval:{row.index}"


def alpacaeval_metrics() -> tuple[MetricSpec, ...]:
    return (
        MetricSpec("win_rate", "score", "win rate", aggregation="win_rate", group_by="category",
                   judge_role="pairwise"),
        MetricSpec("lc_win_rate", "score", "LC win rate", aggregation="custom", judge_role="pairwise"),
        MetricSpec("discrete_win_rate", "discrete", "discrete win rate", judge_role="pairwise"),
    )


class AlpacaEval(Benchmark):
    name = "alpacaeval"
    options_class = QuestionOptions
    reference = "ae2"
    default_seeds = "alpacaeval"
    judge_roles = {"pairwise": "embedded-pairwise"}
    description = "AlpacaEval 2: win rate and length-controlled win rate vs gpt4_1106_preview (pairwise judge)"
    metrics = alpacaeval_metrics()

    def __init__(self) -> None:
        self._rows: dict[str, AlpacaEvalRow] = {}
        self._difficulty: np.ndarray | None = None
        self._resolver = Resolver()

    def _load(self) -> None:
        if not self._rows:
            rows = load_eval_set(self.reference, self._resolver)
            self._rows = {item_id(r): r for r in rows}
            self._difficulty = load_instruction_difficulty(self.reference, rows, self._resolver)

    def items(self, options: QuestionOptions, limit: int | None, seed: int) -> tuple[list[EvalItem], list[dict]]:
        self._load()
        rows = list(self._rows.values())
        n = capped(options.questions, limit)
        if n is not None and n < len(rows):
            rows = [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), n))]
        items = [EvalItem(id=item_id(r), prompt=r.instruction, category=r.dataset, kind="instruction",
                          source=f"alpacaeval-{self.reference}") for r in rows]
        return items, self._resolver.manifest()

    def requests(self, item: EvalItem) -> Requests:
        return Requests(answer=item.prompt)

    def judge_requests(self, item: EvalItem, outputs: Outputs, seed: int) -> list[JudgeRequest]:
        self._load()
        row = self._rows[item.id]
        return [pairwise_request(row.instruction, row.reference, outputs.answer["text"], is_swapped(seed, item.id))]

    def record(self, item: EvalItem, outputs: Outputs, verdicts: list[dict], seed: int) -> dict[str, Any]:
        row = self._rows[item.id]
        swap = is_swapped(seed, item.id)
        verdict = unswapped(verdicts[0], swap)
        return {"id": item.id, "category": item.category, "instruction": row.instruction,
                "output": outputs.answer["text"], "reference": row.reference,
                "reference_generator": row.reference_generator, "n_tokens": outputs.answer["n_tokens"],
                "sampling_seed": seed, "swapped": swap, **verdict,
                "scores": {"score": verdict["score"], "discrete": discrete(verdict["score"])}}

    def summary(self, records: list[dict], seed: int) -> dict[str, Any]:
        self._load()
        unparsed = sum(1 for r in records if r["score"] is None)
        return {"metrics": {"lc_win_rate": lc_metric(records, self._difficulty_of(records), seed, unparsed)},
                "reference": {"name": self.reference,
                              "generator": records[0]["reference_generator"] if records else None},
                "lengths": length_summary(records)}

    def _difficulty_of(self, records: list[dict]) -> list[float] | None:
        if self._difficulty is None:
            return None
        return [float(self._difficulty[self._rows[r["id"]].index]) for r in records]


class AlpacaEval1(AlpacaEval):
    name = "alpacaeval-ae1"
    reference = "ae1"
    description = "AlpacaEval 1: win rate and length-controlled win rate vs text-davinci-003 (pairwise judge)"


def lc_metric(records: list[dict], difficulty: list[float] | None, seed: int, unparsed: int) -> dict:
    judged = [(r, d) for r, d in zip(records, difficulty or [None] * len(records)) if r["score"] is not None]
    if difficulty is None or not judged:
        reason = ("no instruction difficulty: needs the data mirror's alpacaeval/ annotations or the hub"
                  if difficulty is None else "no judged items")
        return {"value": None, "ci95": [None, None], "n": 0, "unparsed": unparsed, "unavailable": reason}
    result = length_controlled_win_rate(
        [r["score"] for r, _ in judged], [len(r["output"]) for r, _ in judged],
        [len(r["reference"]) for r, _ in judged], [d for _, d in judged], seed=seed)
    error = None if np.isnan(result.standard_error) else result.standard_error
    return {"value": result.win_rate, "ci95": result.ci95, "n": len(judged), "standard_error": error,
            "glm_weights": result.weights, "unparsed": unparsed}


def length_summary(records: list[dict]) -> dict[str, float | None]:
    """Mean output lengths in characters: a long-winded model wins more often with most judges."""
    if not records:
        return {"output_chars": None, "reference_chars": None}
    return {"output_chars": float(np.mean([len(r["output"]) for r in records])),
            "reference_chars": float(np.mean([len(r["reference"]) for r in records]))}
