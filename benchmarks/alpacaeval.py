"""`alpacaeval` / `alpacaeval-ae1`: instruction following, judged pairwise against a reference model.

The aligned model answers AlpacaEval instructions (a seeded subset of the 805, sized by
`EvalSize.questions`); a pairwise judge compares each answer with the reference output: gpt4_1106_preview
for `alpacaeval` (AlpacaEval 2), text-davinci-003 for `alpacaeval-ae1` (AlpacaEval 1). Which output the
judge sees first is a seeded coin flip per item, undone before scoring, so a judge's position bias
cannot favour either side.

Metrics (rates in [0, 1]): `win_rate` (mean P(model better), 95% CI = +-1.96 standard errors, as
AlpacaEval reports it), `discrete_win_rate` (wins + draws / 2), `lc_win_rate` (length-controlled; see
harness/winrate.py; CI by bootstrap), and `win_rate/<subset>` per AlpacaEval source subset. Verdicts the
judge could not parse are counted in `unparsed` and left out of the means, never guessed.
"""
from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import numpy as np

from benchmarks.alpacaeval_data import AlpacaEvalRow, load_eval_set, load_instruction_difficulty
from harness.aligner import AlignedModel
from harness.benchmark import Benchmark, EvalContext, capped
from harness.config import EvalSize
from harness.datasources import Resolver
from harness.generation import chunks
from harness.hashing import hash_json
from harness.stats import mean_metric
from harness.types import EvalItem
from harness.winrate import length_controlled_win_rate, normal_ci, win_rate



def item_id(row: AlpacaEvalRow) -> str:
    return f"alpacaeval:{row.index}"


def is_swapped(seed: int, item: str) -> bool:
    """The seeded coin flip: True = the model's output is shown first. Stable across resumes."""
    return int(hash_json([seed, item])[:8], 16) % 2 == 1


class AlpacaEval(Benchmark):
    name = "alpacaeval"
    reference = "ae2"
    default_seeds = "alpacaeval"
    default_judge = "embedded-pairwise"
    description = "AlpacaEval 2: win rate and length-controlled win rate vs gpt4_1106_preview (pairwise judge)"

    def __init__(self) -> None:
        self._rows: dict[str, AlpacaEvalRow] = {}
        self._difficulty: np.ndarray | None = None
        self._resolver = Resolver()

    def _load(self) -> None:
        if not self._rows:
            rows = load_eval_set(self.reference, self._resolver)
            self._rows = {item_id(r): r for r in rows}
            self._difficulty = load_instruction_difficulty(self.reference, rows, self._resolver)

    def items(self, eval_size: EvalSize, limit: int | None, seed: int) -> tuple[list[EvalItem], list[dict]]:
        self._load()
        rows = list(self._rows.values())
        n = capped(eval_size.questions, limit)
        if n is not None and n < len(rows):
            rows = [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), n))]
        items = [EvalItem(id=item_id(r), prompt=r.instruction, category=r.dataset, kind="instruction",
                          source=f"alpacaeval-{self.reference}") for r in rows]
        return items, self._resolver.manifest()

    def evaluate(self, aligned: AlignedModel, items: list[EvalItem], ctx: EvalContext) -> dict[str, Any]:
        self._load()
        done = {r["id"]: r for r in ctx.store.read_samples("eval")}
        with ctx.store.samples("eval") as writer:
            for chunk in chunks([item for item in items if item.id not in done]):
                generations = ctx.answer(aligned, [item.prompt for item in chunk], f"{self.name}: answer")
                rows = [self._rows[item.id] for item in chunk]
                outputs = [g["text"] for g in generations]
                swapped = [is_swapped(ctx.seed, item.id) for item in chunk]
                verdicts = judge_cached(ctx, [r.instruction for r in rows], [r.reference for r in rows], outputs,
                                        swapped)
                for item, row, generation, swap, verdict in zip(chunk, rows, generations, swapped, verdicts):
                    record = {"id": item.id, "category": item.category, "instruction": row.instruction,
                              "output": generation["text"], "reference": row.reference,
                              "reference_generator": row.reference_generator, "n_tokens": generation["n_tokens"],
                              "sampling_seed": ctx.seed, "swapped": swap, **verdict}
                    writer.write(record)
                    done[item.id] = record
        records = [done[item.id] for item in items]
        unparsed = sum(1 for r in records if r["score"] is None)
        return {"metrics": alpacaeval_metrics(records, self._difficulty_of(records), ctx.seed),
                "judge": {"name": ctx.judge.name, "version": ctx.judge.version, "unparsed": unparsed},
                "reference": {"name": self.reference, "generator": records[0]["reference_generator"] if records else None},
                "lengths": length_summary(records)}

    def _difficulty_of(self, records: list[dict]) -> list[float] | None:
        if self._difficulty is None:
            return None
        return [float(self._difficulty[self._rows[r["id"]].index]) for r in records]


class AlpacaEval1(AlpacaEval):
    name = "alpacaeval-ae1"
    reference = "ae1"
    description = "AlpacaEval 1: win rate and length-controlled win rate vs text-davinci-003 (pairwise judge)"


def judge_cached(ctx: EvalContext, instructions: list[str], references: list[str], outputs: list[str],
                 swapped: list[bool]) -> list[dict]:
    """Per item: the judge's verdict on the pair as shown, and `score` = P(model's output better)."""
    firsts = [o if s else r for r, o, s in zip(references, outputs, swapped)]
    seconds = [r if s else o for r, o, s in zip(references, outputs, swapped)]
    keys = [hash_json({"judge": ctx.judge.name, "version": ctx.judge.version, "instruction": i, "first": f,
                       "second": s}) for i, f, s in zip(instructions, firsts, seconds)]
    verdicts: list[dict | None] = [ctx.cache.get(k) for k in keys]
    missing = [i for i, v in enumerate(verdicts) if v is None]
    if missing:
        fresh = ctx.judge.prefer([instructions[i] for i in missing], [firsts[i] for i in missing],
                                 [seconds[i] for i in missing])
        for i, preference in zip(missing, fresh):
            value = {"second_better": preference.second_better, "judge_raw": preference.raw}
            ctx.cache.put(keys[i], value)
            verdicts[i] = value
    results = []
    for verdict, swap in zip(verdicts, swapped):
        second_better = verdict["second_better"] if verdict else None
        score = None if second_better is None else (1.0 - second_better if swap else second_better)
        results.append({"second_better": second_better, "score": score,
                        "judge_raw": verdict.get("judge_raw", "") if verdict else ""})
    return results


def win_rate_metric(scores: list[float], unparsed: int) -> dict:
    if not scores:
        return {"value": None, "ci95": [None, None], "n": 0, "unparsed": unparsed}
    result = win_rate(scores)
    error = None if np.isnan(result.standard_error) else result.standard_error  # one item: undefined
    return {"value": result.win_rate, "ci95": normal_ci(result.win_rate, result.standard_error),
            "n": result.n_total, "standard_error": error, "n_wins": result.n_wins,
            "n_losses": result.n_losses, "n_draws": result.n_draws, "unparsed": unparsed}


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


def alpacaeval_metrics(records: list[dict], difficulty: list[float] | None, seed: int) -> dict[str, dict]:
    scores = [r["score"] for r in records if r["score"] is not None]
    unparsed = len(records) - len(scores)
    discrete = [1.0 if s > 0.5 else 0.0 if s < 0.5 else 0.5 for s in scores]
    metrics = {
        "win_rate": win_rate_metric(scores, unparsed),
        "lc_win_rate": lc_metric(records, difficulty, seed, unparsed),
        "discrete_win_rate": {**mean_metric(discrete, seed), "unparsed": unparsed},
    }
    by_subset: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_subset[record["category"]].append(record)
    for subset in sorted(by_subset):
        group = by_subset[subset]
        judged = [r["score"] for r in group if r["score"] is not None]
        metrics[f"win_rate/{subset}"] = win_rate_metric(judged, len(group) - len(judged))
    return metrics


def length_summary(records: list[dict]) -> dict[str, float | None]:
    """Mean output lengths in characters: a long-winded model wins more often with most judges."""
    if not records:
        return {"output_chars": None, "reference_chars": None}
    return {"output_chars": float(np.mean([len(r["output"]) for r in records])),
            "reference_chars": float(np.mean([len(r["reference"]) for r in records]))}
