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

metrics.json records the judge of each role under "judges". Sizes: MMLU takes the mirror's seeded
20-per-subject subset, further sampled to the `questions` option (stratified by subject) in tiny/demo, and
the full test set in paper; XSTest prompts `borderline`; benign prompts `benign`.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace
from typing import Any, Sequence

from benchmarks.mmlu_data import LETTERS, SUBJECT_GROUPS, MmluQuestion, load_mmlu
from benchmarks.prompt_sets import (BENIGN_EVAL_PATH, HARMLESS_CANDIDATES, XSTEST_CANDIDATES, allocate, fill,
                                    load_benign_eval, repository_record)
from harness.aligner import AlignedModel
from harness.benchmark import Benchmark, capped
from harness.datasources import Resolver
from harness.errors import HarnessError
from harness.eval.loop import cached_loglikelihoods
from harness.eval.metrics import MetricSpec
from harness.eval.options import UtilityOptions
from harness.eval.pairwise import is_swapped, pairwise_request, unswapped
from harness.eval.requests import Choices, Outputs, Requests
from harness.judges.roles import JudgeRequest
from harness.store import Cache
from harness.types import EvalItem, Example

# With no size given (paper), helpfulness uses the repository's benign prompts plus Alpaca ones up to this.
MAX_HELPFULNESS_PROMPTS = 500
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
    """Per question, the log-likelihoods of " A" .. " D" after its context, through the cache (what the sample
    loop computes, callable alone)."""
    shots = aligned.shots([q.question for q in questions])
    contexts = [mmlu_context(q, s) for q, s in zip(questions, shots)]
    return cached_loglikelihoods(aligned, contexts, [CONTINUATIONS] * len(questions), ["mmlu"] * len(questions),
                                 cache, batch_size)


# --- the benchmark -------------------------------------------------------------------------------


def utility_metrics() -> tuple[MetricSpec, ...]:
    return (
        MetricSpec("mmlu_accuracy", "correct", "MMLU", where={"kind": ("mmlu",)}, group_by="domain",
                   groups=tuple(SUBJECT_GROUPS)),
        MetricSpec("helpfulness_win_rate", "score", "win rate vs unaligned", aggregation="win_rate",
                   where={"kind": ("helpfulness",)}, judge_role="pairwise"),
        MetricSpec("over_refusal_xstest", "refusal", "over-refusal (XSTest)", higher_is_better=False,
                   where={"kind": ("over_refusal",)}, judge_role="safety"),
    )


class Utility(Benchmark):
    name = "utility"
    options_class = UtilityOptions
    default_seeds = "safety"
    # --judge replaces the pairwise judge; XSTest over-refusal is always judged by embedded-safety.
    judge_roles = {"pairwise": "embedded-pairwise", "safety": "embedded-safety"}
    description = "cost of alignment: MMLU accuracy, helpfulness win rate vs the unaligned model, XSTest over-refusal"
    metrics = utility_metrics()

    def __init__(self) -> None:
        self._questions: dict[str, MmluQuestion] = {}

    def items(self, options: UtilityOptions, limit: int | None, seed: int) -> tuple[list[EvalItem], list[dict]]:
        resolver = Resolver()
        n_questions = capped(options.questions, limit)
        questions = load_mmlu("full" if options.questions is None else "subset", resolver)
        questions = stratified_sample(questions, n_questions, seed)
        self._questions = {q.id: q for q in questions}
        mmlu = [EvalItem(id=q.id, prompt=q.question, category=q.subject, kind="mmlu", source="mmlu")
                for q in questions]

        rng = random.Random(seed)
        xstest = resolver.load("xstest", XSTEST_CANDIDATES)
        n_xstest = capped(options.borderline, limit)
        if n_xstest is not None and n_xstest < len(xstest):
            keep = set(rng.sample(range(len(xstest)), n_xstest))
            xstest = [item for i, item in enumerate(xstest) if i in keep]
        over_refusal = [replace(item, kind="over_refusal") for item in xstest]

        own = [item for item in load_benign_eval() if item.kind == "benign"]
        alpaca = resolver.try_load("refusal_direction_harmless", HARMLESS_CANDIDATES) or []
        n_benign = capped(options.benign, limit)
        n_benign = MAX_HELPFULNESS_PROMPTS if n_benign is None else n_benign
        helpfulness = [replace(item, kind="helpfulness") for item in fill(own, alpaca, n_benign, rng)]
        return mmlu + over_refusal + helpfulness, [repository_record(BENIGN_EVAL_PATH)] + resolver.manifest()

    def question(self, item: EvalItem) -> MmluQuestion:
        if item.id not in self._questions:
            raise HarnessError(f"utility: unknown MMLU item {item.id}; call items() first")
        return self._questions[item.id]

    def requests(self, item: EvalItem) -> Requests:
        if item.kind == "mmlu":
            question = self.question(item)
            return Requests(choices=Choices(lambda shots: mmlu_context(question, shots), CONTINUATIONS, "mmlu"))
        return Requests(answer=item.prompt, answer_unaligned=item.kind == "helpfulness")

    def judge_requests(self, item: EvalItem, outputs: Outputs, seed: int) -> list[JudgeRequest]:
        if item.kind == "over_refusal":
            return [JudgeRequest("safety", (item.prompt, outputs.answer["text"]))]
        if item.kind == "helpfulness" and not identical(outputs):
            return [pairwise_request(item.prompt, outputs.unaligned["text"], outputs.answer["text"],
                                     is_swapped(seed, item.id))]
        return []

    def record(self, item: EvalItem, outputs: Outputs, verdicts: list[dict], seed: int) -> dict[str, Any]:
        if item.kind == "mmlu":
            question = self.question(item)
            lls = outputs.loglikelihoods
            prediction = predicted_letter(lls)
            correct = prediction == question.answer
            return {"id": question.id, "kind": "mmlu", "category": question.subject, "domain": question.group,
                    "loglikelihoods": lls, "prediction": LETTERS[prediction], "answer": LETTERS[question.answer],
                    "correct": correct, "scores": {"correct": correct}}
        answer = outputs.answer
        if item.kind == "over_refusal":
            verdict = verdicts[0]
            return {"id": item.id, "kind": "over_refusal", "category": item.category, "source": item.source,
                    "prompt": item.prompt, "response": answer["text"], "n_tokens": answer["n_tokens"],
                    "sampling_seed": seed, "refusal": verdict["refusal"], "p_refusal": verdict["p_refusal"],
                    "scores": {"refusal": verdict["refusal"]}}
        swap = is_swapped(seed, item.id)
        verdict = (unswapped(verdicts[0], swap) if verdicts else
                   {"second_better": None, "score": 0.5, "judge_raw": "identical answers: a tie"})
        return {"id": item.id, "kind": "helpfulness", "category": item.category, "source": item.source,
                "instruction": item.prompt, "output": answer["text"], "baseline_output": outputs.unaligned["text"],
                "n_tokens": answer["n_tokens"], "sampling_seed": seed, "swapped": swap, **verdict,
                "scores": {"score": verdict["score"]}}


def identical(outputs: Outputs) -> bool:
    """Two identical answers are a tie without asking the judge."""
    return outputs.answer["text"].strip() == outputs.unaligned["text"].strip()
