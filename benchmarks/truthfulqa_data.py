"""TruthfulQA questions (the classic 817-question version that lm-evaluation-harness and HF `truthful_qa` use).

Two datasets, each resolved through `harness.datasources` (mirror first, then Hugging Face):
- `truthfulqa-generation`: question, category, type, best/correct/incorrect reference answers
  (mirror `truthfulqa/TruthfulQA_v1_817.csv`, or HF `truthfulqa/truthful_qa`, config `generation`);
- `truthfulqa-mc`: the MC1/MC2 target sets (mirror `truthfulqa/mc_task_v1_817.json`, or HF config
  `multiple_choice`).
They are joined on the question text. No PyPI wheel ships TruthfulQA, so without a mirror or the hub
loading fails with one line that says which sources were tried.

Reference answers are split on ";" and end with a period, as the TruthfulQA authors (and the HF copy)
format them. MC target order is kept as stored: the lm-eval task scores choices in that order.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from harness.datasources import Candidate, HFSource, MirrorSource, Resolver, read_csv_bytes, read_jsonl_bytes, read_text
from harness.errors import HarnessError

HF_REPO = "truthfulqa/truthful_qa"
# The parquet revision of the HF dataset (both configs live in the same repository commit).
HF_REVISION = "741b8276f2d1982aa3d5b832d3ee81ed3b896490"
GENERATION_FILE = "truthfulqa/TruthfulQA_v1_817.csv"
MC_FILE = "truthfulqa/mc_task_v1_817.json"

# TruthfulQA's 38 categories in eight groups, used as seed domains and for per-group metrics.
CATEGORY_GROUPS: dict[str, tuple[str, ...]] = {
    "misconceptions": ("Misconceptions", "Misconceptions: Topical"),
    "health": ("Health", "Nutrition", "Psychology"),
    "science": ("Science", "Weather", "Statistics"),
    "law_economics": ("Law", "Economics", "Finance", "Politics", "Education", "Advertising"),
    "society": ("Sociology", "Stereotypes", "Subjective", "Religion", "Misinformation"),
    "history_language": ("History", "Language", "Misquotations", "Mandela Effect", "Proverbs"),
    "myths_paranormal": ("Paranormal", "Superstitions", "Myths and Fairytales", "Fiction", "Conspiracies"),
    "confusion_logic": ("Confusion: People", "Confusion: Places", "Confusion: Other", "Distraction",
                        "Logical Falsehood", "Indexical Error: Other", "Indexical Error: Time",
                        "Indexical Error: Location", "Indexical Error: Identity"),
}
GROUP_OF: dict[str, str] = {category: group for group, categories in CATEGORY_GROUPS.items()
                            for category in categories}


@dataclass(frozen=True)
class TruthfulQAQuestion:
    id: str  # "tqa-NNN": position in the 817-question CSV
    question: str
    category: str  # TruthfulQA's own category
    group: str  # one of CATEGORY_GROUPS
    type: str  # Adversarial / Non-Adversarial
    best_answer: str
    correct_answers: tuple[str, ...]
    incorrect_answers: tuple[str, ...]
    mc1_choices: tuple[str, ...]
    mc1_labels: tuple[int, ...]
    mc2_choices: tuple[str, ...]
    mc2_labels: tuple[int, ...]


@dataclass(frozen=True)
class Reference:
    """One question's generation-side fields, before the MC targets are joined in."""

    question: str
    category: str
    type: str
    best_answer: str
    correct_answers: tuple[str, ...]
    incorrect_answers: tuple[str, ...]


@dataclass(frozen=True)
class McTargets:
    question: str
    mc1_choices: tuple[str, ...]
    mc1_labels: tuple[int, ...]
    mc2_choices: tuple[str, ...]
    mc2_labels: tuple[int, ...]


def question_key(text: str) -> str:
    # One CSV question carries a trailing space that the MC file does not.
    return " ".join(text.split())


def format_answer(answer: str) -> str:
    answer = answer.strip()
    return answer if not answer or answer.endswith(".") else answer + "."


def split_answers(text: str) -> tuple[str, ...]:
    return tuple(a for a in (format_answer(part) for part in text.split(";")) if a)


def _only(files: dict[str, bytes]) -> bytes:
    return next(iter(files.values()))


def references_from_csv(files: dict[str, bytes]) -> list[Reference]:
    return [Reference(question=row["Question"].strip(), category=row["Category"], type=row["Type"],
                      best_answer=format_answer(row["Best Answer"]),
                      correct_answers=split_answers(row["Correct Answers"]),
                      incorrect_answers=split_answers(row["Incorrect Answers"]))
            for row in read_csv_bytes(_only(files))]


def references_from_hf(files: dict[str, bytes]) -> list[Reference]:
    return [Reference(question=row["question"].strip(), category=row["category"], type=row["type"],
                      best_answer=format_answer(row["best_answer"]),
                      correct_answers=tuple(format_answer(a) for a in row["correct_answers"] if a.strip()),
                      incorrect_answers=tuple(format_answer(a) for a in row["incorrect_answers"] if a.strip()))
            for row in read_jsonl_bytes(_only(files))]


def mc_from_json(files: dict[str, bytes]) -> list[McTargets]:
    # The original file stores each target set as {choice: label}; JSON object order is the choice order.
    rows = json.loads(read_text(_only(files)))
    return [McTargets(question=row["question"].strip(),
                      mc1_choices=tuple(row["mc1_targets"]), mc1_labels=tuple(row["mc1_targets"].values()),
                      mc2_choices=tuple(row["mc2_targets"]), mc2_labels=tuple(row["mc2_targets"].values()))
            for row in rows]


def mc_from_hf(files: dict[str, bytes]) -> list[McTargets]:
    return [McTargets(question=row["question"].strip(),
                      mc1_choices=tuple(row["mc1_targets"]["choices"]),
                      mc1_labels=tuple(row["mc1_targets"]["labels"]),
                      mc2_choices=tuple(row["mc2_targets"]["choices"]),
                      mc2_labels=tuple(row["mc2_targets"]["labels"]))
            for row in read_jsonl_bytes(_only(files))]


def generation_candidates() -> list[Candidate[list[Reference]]]:
    return [Candidate(MirrorSource((GENERATION_FILE,)), references_from_csv),
            Candidate(HFSource(HF_REPO, HF_REVISION, split="validation", config="generation"), references_from_hf)]


def mc_candidates() -> list[Candidate[list[McTargets]]]:
    return [Candidate(MirrorSource((MC_FILE,)), mc_from_json),
            Candidate(HFSource(HF_REPO, HF_REVISION, split="validation", config="multiple_choice"), mc_from_hf)]


def join(references: list[Reference], targets: list[McTargets]) -> list[TruthfulQAQuestion]:
    """One question per reference row, in the reference order, with its MC targets attached."""
    by_question = {question_key(t.question): t for t in targets}
    questions = []
    for index, ref in enumerate(references):
        mc = by_question.get(question_key(ref.question))
        if mc is None:
            raise HarnessError(f"TruthfulQA question {ref.question[:60]!r} has no MC targets; the generation and "
                               "multiple-choice files are from different versions")
        if ref.category not in GROUP_OF:
            raise HarnessError(f"TruthfulQA category {ref.category!r} is not in benchmarks/truthfulqa_data.py "
                               "CATEGORY_GROUPS; add it to a group")
        if 1 not in mc.mc1_labels or 1 not in mc.mc2_labels:
            raise HarnessError(f"TruthfulQA question {ref.question[:60]!r} has no correct MC choice")
        questions.append(TruthfulQAQuestion(
            id=f"tqa-{index:03d}", question=ref.question, category=ref.category, group=GROUP_OF[ref.category],
            type=ref.type, best_answer=ref.best_answer, correct_answers=ref.correct_answers,
            incorrect_answers=ref.incorrect_answers, mc1_choices=mc.mc1_choices, mc1_labels=mc.mc1_labels,
            mc2_choices=mc.mc2_choices, mc2_labels=mc.mc2_labels))
    if len(by_question) != len(questions):
        raise HarnessError(f"TruthfulQA: {len(questions)} questions but {len(by_question)} MC target sets; "
                           "the generation and multiple-choice files are from different versions")
    return questions


def load_truthfulqa() -> tuple[list[TruthfulQAQuestion], list[dict[str, Any]]]:
    """All 817 questions and the provenance record of each dataset read (for the run manifest)."""
    resolver = Resolver()
    references = resolver.load("truthfulqa-generation", generation_candidates())
    targets = resolver.load("truthfulqa-mc", mc_candidates())
    return join(references, targets), resolver.manifest()


# --- human-labelled answers, for judge validation ----------------------------------------------------

LABEL_FILES = {"truth": "truthfulqa/finetune_truth.jsonl.gz", "info": "truthfulqa/finetune_info.jsonl.gz"}
# The share of questions whose labelled answers are validation only: a judge fitted to the labels
# (embedded-truth-boosted) never sees them, and `harness judge validate` judges every truth judge on them.
HELDOUT_FRACTION = 0.3
HELDOUT_SEED = 0


def heldout_questions(questions: Sequence[str]) -> set[str]:
    """The held-out questions among `questions`: a seeded HELDOUT_FRACTION of the sorted distinct texts."""
    distinct = sorted(set(questions))
    order = np.random.default_rng(HELDOUT_SEED).permutation(len(distinct))
    return {distinct[i] for i in order[:int(HELDOUT_FRACTION * len(distinct))]}


@dataclass(frozen=True)
class LabelledAnswer:
    question: str
    answer: str
    label: bool  # the human label: truthful (kind "truth") or informative (kind "info")


def labelled_from_finetune(files: dict[str, bytes]) -> list[LabelledAnswer]:
    """Rows of the GPT-judge fine-tuning files: prompt "Q: ...\\nA: ...\\nTrue:" (or "Helpful:"), " yes"/" no"."""
    answers = []
    for row in read_jsonl_bytes(_only(files)):
        body = row["prompt"].rsplit("\n", 1)[0]
        question, answer = body.split("\nA:", 1)
        answers.append(LabelledAnswer(question.removeprefix("Q:").strip(), answer.strip(),
                                      row["completion"].strip() == "yes"))
    return answers


def load_labelled_answers(kind: str) -> list[LabelledAnswer]:
    """TruthfulQA's human truth ("truth") or informativeness ("info") labels of model answers (mirror only)."""
    if kind not in LABEL_FILES:
        raise HarnessError(f"unknown TruthfulQA label kind {kind!r}; choose one of: {', '.join(LABEL_FILES)}")
    return Resolver().load(f"truthfulqa-{kind}-labels", [Candidate(MirrorSource((LABEL_FILES[kind],)),
                                                                     labelled_from_finetune)])
