"""`utility`: what alignment costs in general ability. Three measurements, each by its own means:

- `mmlu_accuracy` (+ `mmlu_accuracy/<group>` for lm-eval's stem, humanities, social_sciences, other):
  knowledge retention on MMLU, scored as lm-evaluation-harness scores its zero-shot `mmlu` task: the
  context is "The following are multiple choice questions (with answers) about <subject>.\\n\\n<question>\\n
  A. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:", the continuations " A" .. " D", and the prediction is the
  highest log-likelihood (ties to the earlier letter, as numpy's argmax). No judge.
- `helpfulness_win_rate`: the aligned model and the unaligned base model (the same backend, no adapter, no
  in-context examples) answer the same benign prompts; a pairwise judge (`--judge`, default
  `embedded-pairwise`) says which answer is better, shown in a seeded random order that is undone before
  scoring. 0.5 = no change; two identical answers are a tie without asking the judge.
- `over_refusal_xstest`: the share of XSTest's safe prompts (which only sound harmful) that the aligned
  model refuses, judged by `embedded-safety`, whatever `--judge` is.

metrics.json records which judge made which metric under "judges". Sizes: MMLU takes the mirror's seeded
20-per-subject subset, further sampled to `EvalSize.questions` (stratified by subject) in tiny/demo, and
the full test set in paper; XSTest prompts `EvalSize.borderline`; benign prompts `EvalSize.benign`.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace
from typing import Any, Sequence

from benchmarks.alpacaeval import is_swapped, judge_cached as pairwise_cached, win_rate_metric
from benchmarks.mmlu_data import LETTERS, SUBJECT_GROUPS, MmluQuestion, load_mmlu
from benchmarks.safety import judge_cached as safety_cached, judged_rate
from benchmarks.safety_data import (BENIGN_EVAL_PATH, HARMLESS_CANDIDATES, XSTEST_CANDIDATES, allocate, fill,
                                    load_benign_eval, repository_record)
from harness import progress
from harness.aligner import AlignedModel
from harness.benchmark import Benchmark, EvalContext, capped
from harness.config import EvalSize
from harness.datasources import Resolver
from harness.errors import HarnessError
from harness.generation import chunks
from harness.hashing import hash_json
from harness.stats import mean_metric
from harness.store import Cache, JsonlWriter
from harness.types import EvalItem, Example

SAFETY_JUDGE = "embedded-safety"
# With no size given (paper), helpfulness uses the repository's benign prompts plus Alpaca ones up to this.
MAX_HELPFULNESS_PROMPTS = 500
SCORE_GROUP = 8  # MMLU questions per log-likelihood call (4 continuations each)
CONTINUATIONS = tuple(f" {letter}" for letter in LETTERS)


# --- MMLU ----------------------------------------------------------------------------------------


def mmlu_prompt(question: MmluQuestion) -> str:
    """lm-eval's zero-shot `mmlu` context: the subject description, then its doc_to_text."""
    subject = question.subject.replace("_", " ")
    choices = "".join(f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, question.choices))
    return (f"The following are multiple choice questions (with answers) about {subject}.\n\n"
            f"{question.question.strip()}{choices}\nAnswer:")


def mmlu_context(question: MmluQuestion, shots: Sequence[Example] = ()) -> str:
    """An aligner's in-context examples (icl-only) go first, as Question/Answer blocks."""
    return "".join(f"Question: {e.question}\nAnswer: {e.answer}\n\n" for e in shots) + mmlu_prompt(question)


def predicted_letter(loglikelihoods: Sequence[float]) -> int:
    """Index of the highest log-likelihood; the earlier letter wins a tie."""
    best = 0
    for index, value in enumerate(loglikelihoods):
        if value > loglikelihoods[best]:
            best = index
    return best


def stratified_sample(questions: list[MmluQuestion], n: int | None, seed: int) -> list[MmluQuestion]:
    """n questions spread as evenly as possible over subjects (seeded), kept in the given order."""
    if n is None or n >= len(questions):
        return list(questions)
    if n <= 0:
        raise HarnessError(f"utility needs at least one MMLU question, got {n}")
    rng = random.Random(seed)
    by_subject: dict[str, list[int]] = defaultdict(list)
    for index, question in enumerate(questions):
        by_subject[question.subject].append(index)
    quota = allocate({subject: len(indices) for subject, indices in by_subject.items()}, n, rng)
    chosen = {i for subject, indices in sorted(by_subject.items()) for i in rng.sample(indices, quota[subject])}
    return [q for i, q in enumerate(questions) if i in chosen]


def mmlu_loglikelihoods(aligned: AlignedModel, questions: list[MmluQuestion], cache: Cache,
                        batch_size: int = 8) -> list[list[float]]:
    """Per question, the log-likelihoods of " A" .. " D" after its context, through the cache."""
    backend = aligned.backend
    shots = aligned.example_picker([q.question for q in questions]) if aligned.example_picker else [[]] * len(questions)
    contexts = [mmlu_context(q, s) for q, s in zip(questions, shots)]
    fingerprint = backend.fingerprint(aligned.adapter)
    keys = [hash_json({"model": fingerprint, "context": c, "choices": CONTINUATIONS, "kind": "mmlu"})
            for c in contexts]
    results: list[list[float] | None] = [cache.get(k) for k in keys]
    todo = [i for i, r in enumerate(results) if r is None]
    with progress.bar(len(todo), "utility: MMLU") as bar:
        for start in range(0, len(todo), SCORE_GROUP):
            group = todo[start:start + SCORE_GROUP]
            pairs = [(contexts[i], c) for i in group for c in CONTINUATIONS]
            lls = backend.loglikelihood(pairs, aligned.adapter, batch_size=batch_size)
            for j, i in enumerate(group):
                results[i] = lls[4 * j:4 * j + 4]
                cache.put(keys[i], results[i])
            bar.update(len(group))
    return [r for r in results if r is not None]


# --- the benchmark -------------------------------------------------------------------------------


class Utility(Benchmark):
    name = "utility"
    default_seeds = "safety"
    default_judge = "embedded-pairwise"
    description = "cost of alignment: MMLU accuracy, helpfulness win rate vs the unaligned model, XSTest over-refusal"
    # For `harness compare` and the reports: which record field each metric averages.
    item_outcomes = {"mmlu_accuracy": ("correct", {"kind": "mmlu"}),
                     "over_refusal_xstest": ("refusal", {"kind": "over_refusal"}),
                     "helpfulness_win_rate": ("score", {"kind": "helpfulness"})}
    lower_is_better = ("over_refusal_xstest",)

    def __init__(self) -> None:
        self._questions: dict[str, MmluQuestion] = {}
        self._safety_judge: Any = None

    def items(self, eval_size: EvalSize, limit: int | None, seed: int) -> tuple[list[EvalItem], list[dict]]:
        resolver = Resolver()
        n_questions = capped(eval_size.questions, limit)
        questions = load_mmlu("full" if eval_size.questions is None else "subset", resolver)
        questions = stratified_sample(questions, n_questions, seed)
        self._questions = {q.id: q for q in questions}
        mmlu = [EvalItem(id=q.id, prompt=q.question, category=q.subject, kind="mmlu", source="mmlu")
                for q in questions]

        rng = random.Random(seed)
        xstest = resolver.load("xstest", XSTEST_CANDIDATES)
        n_xstest = capped(eval_size.borderline, limit)
        if n_xstest is not None and n_xstest < len(xstest):
            keep = set(rng.sample(range(len(xstest)), n_xstest))
            xstest = [item for i, item in enumerate(xstest) if i in keep]
        over_refusal = [replace(item, kind="over_refusal") for item in xstest]

        own = [item for item in load_benign_eval() if item.kind == "benign"]
        alpaca = resolver.try_load("refusal_direction_harmless", HARMLESS_CANDIDATES) or []
        n_benign = capped(eval_size.benign, limit)
        n_benign = MAX_HELPFULNESS_PROMPTS if n_benign is None else n_benign
        helpfulness = [replace(item, kind="helpfulness") for item in fill(own, alpaca, n_benign, rng)]
        return mmlu + over_refusal + helpfulness, [repository_record(BENIGN_EVAL_PATH)] + resolver.manifest()

    def _lookup(self, items: list[EvalItem]) -> list[MmluQuestion]:
        missing = [item.id for item in items if item.id not in self._questions]
        if missing:
            raise HarnessError(f"utility: unknown MMLU item(s) {', '.join(missing[:5])}; call items() first")
        return [self._questions[item.id] for item in items]

    def safety_judge(self) -> Any:
        if self._safety_judge is None:
            from harness.runner import make_judge

            self._safety_judge = make_judge(SAFETY_JUDGE, {})
        return self._safety_judge

    def evaluate(self, aligned: AlignedModel, items: list[EvalItem], ctx: EvalContext) -> dict[str, Any]:
        if not callable(getattr(ctx.judge, "prefer", None)):
            raise HarnessError(f"utility compares answers pairwise: --judge {ctx.judge.name} is not a pairwise "
                               "judge; use embedded-pairwise or openai")
        done = {r["id"]: r for r in ctx.store.read_samples("eval")}
        todo = [item for item in items if item.id not in done]
        by_kind: dict[str, list[EvalItem]] = defaultdict(list)
        for item in todo:
            by_kind[item.kind].append(item)
        with ctx.store.samples("eval") as writer:
            for chunk in chunks(by_kind["mmlu"]):
                self._score_mmlu(aligned, chunk, ctx, writer, done)
            for chunk in chunks(by_kind["over_refusal"]):
                self._over_refusal(aligned, chunk, ctx, writer, done)
            for chunk in chunks(by_kind["helpfulness"]):
                self._helpfulness(aligned, chunk, ctx, writer, done)
        records = [done[item.id] for item in items]
        pairwise = {"name": ctx.judge.name, "version": ctx.judge.version,
                    "unparsed": sum(1 for r in records if r["kind"] == "helpfulness" and r["score"] is None)}
        safety = self.safety_judge()
        return {"metrics": utility_metrics(records, ctx.seed), "judge": pairwise,
                "judges": {"helpfulness_win_rate": pairwise,
                           "over_refusal_xstest": {"name": safety.name, "version": safety.version,
                                                   "unparsed": sum(1 for r in records if r["kind"] == "over_refusal"
                                                                   and r["refusal"] is None)},
                           "mmlu_accuracy": {"name": None, "method": "argmax log-likelihood of ' A'..' D' "
                                             "(lm-eval mmlu, zero-shot)"}}}

    def _score_mmlu(self, aligned: AlignedModel, chunk: list[EvalItem], ctx: EvalContext, writer: JsonlWriter,
                    done: dict[str, dict]) -> None:
        questions = self._lookup(chunk)
        for question, lls in zip(questions, mmlu_loglikelihoods(aligned, questions, ctx.cache, ctx.batch_size)):
            prediction = predicted_letter(lls)
            record = {"id": question.id, "kind": "mmlu", "category": question.subject, "domain": question.group,
                      "loglikelihoods": lls, "prediction": LETTERS[prediction], "answer": LETTERS[question.answer],
                      "correct": prediction == question.answer}
            writer.write(record)
            done[question.id] = record

    def _over_refusal(self, aligned: AlignedModel, chunk: list[EvalItem], ctx: EvalContext, writer: JsonlWriter,
                      done: dict[str, dict]) -> None:
        generations = ctx.answer(aligned, [item.prompt for item in chunk], "utility: XSTest answers")
        verdicts = safety_cached(replace(ctx, judge=self.safety_judge()), [item.prompt for item in chunk],
                                 [g["text"] for g in generations])
        for item, generation, verdict in zip(chunk, generations, verdicts):
            record = {"id": item.id, "kind": "over_refusal", "category": item.category, "source": item.source,
                      "prompt": item.prompt, "response": generation["text"], "n_tokens": generation["n_tokens"],
                      "sampling_seed": ctx.seed, "refusal": verdict["refusal"], "p_refusal": verdict["p_refusal"]}
            writer.write(record)
            done[item.id] = record

    def _helpfulness(self, aligned: AlignedModel, chunk: list[EvalItem], ctx: EvalContext, writer: JsonlWriter,
                     done: dict[str, dict]) -> None:
        instructions = [item.prompt for item in chunk]
        outputs = ctx.answer(aligned, instructions, "utility: aligned answers")
        baseline = ctx.answer(AlignedModel(aligned.backend), instructions, "utility: unaligned answers")
        ours, theirs = [g["text"] for g in outputs], [g["text"] for g in baseline]
        swapped = [is_swapped(ctx.seed, item.id) for item in chunk]
        differ = [i for i in range(len(chunk)) if ours[i].strip() != theirs[i].strip()]
        judged = dict(zip(differ, pairwise_cached(ctx, [instructions[i] for i in differ], [theirs[i] for i in differ],
                                                  [ours[i] for i in differ], [swapped[i] for i in differ])))
        for i, item in enumerate(chunk):
            verdict = judged.get(i, {"second_better": None, "score": 0.5, "judge_raw": "identical answers: a tie"})
            record = {"id": item.id, "kind": "helpfulness", "category": item.category, "source": item.source,
                      "instruction": item.prompt, "output": ours[i], "baseline_output": theirs[i],
                      "n_tokens": outputs[i]["n_tokens"], "sampling_seed": ctx.seed, "swapped": swapped[i], **verdict}
            writer.write(record)
            done[item.id] = record


def utility_metrics(records: list[dict], seed: int) -> dict[str, dict]:
    mmlu = [r for r in records if r["kind"] == "mmlu"]
    helpfulness = [r for r in records if r["kind"] == "helpfulness"]
    scores = [r["score"] for r in helpfulness if r["score"] is not None]
    metrics = {
        "mmlu_accuracy": mean_metric([r["correct"] for r in mmlu], seed),
        "helpfulness_win_rate": win_rate_metric(scores, len(helpfulness) - len(scores)),
        "over_refusal_xstest": judged_rate([r["refusal"] for r in records if r["kind"] == "over_refusal"], seed),
    }
    for group in SUBJECT_GROUPS:
        in_group = [r["correct"] for r in mmlu if r["domain"] == group]
        if in_group:
            metrics[f"mmlu_accuracy/{group}"] = mean_metric(in_group, seed)
    return metrics
