"""`self-align`: Principle-Driven Self-Alignment (Sun et al. 2023, the Dromedary recipe), four stages.

1. Topic-guided prompt synthesis: the model proposes topics from a few seed questions and their domains,
   then writes new questions about those topics from a few seed questions as examples.
2. Principle-driven answering: hand-written principles and worked exemplars (harness/principles/) are
   placed before every question (seed questions and synthesized ones); the model answers.
3. Principle engraving: LoRA fine-tuning on the question/answer pairs WITHOUT the principles in the
   prompt, so the behaviour moves into the weights.
4. Verbose cloning (off by default; `--option verbose_cloning=true`): the engraved model answers again
   under a short "be thorough" instruction, and is fine-tuned on those answers without it.

Unlike ISARA, the seed answers are never used: what the model learns comes from the principles.
"""
from __future__ import annotations

import json
import math
import random
import re
import shutil
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness import progress
from harness.aligner import AlignContext, AlignedModel, Aligner
from harness.embedding import embed
from harness.errors import HarnessError
from harness.generation import cached_generate
from harness.hashing import hash_file
from harness.loop.filters import FilterSettings, format_reason, is_leak, normalise
from harness.loop.icl import one_line
from harness.options import option
from harness.train import GenerationOptions, SftOutcome, TrainingBudget, TrainOptions, finetune
from harness.principles import ANNOTATION_OPEN, load_principles, render_principles
from harness.store import JsonlWriter, read_jsonl, write_json_atomic
from harness.types import Example, Sampling



@dataclass(frozen=True)
class SelfAlignOptions(TrainOptions, GenerationOptions):
    iterations: int = option(2, "with samples_per_iteration, sizes the synthetic prompts like ISARA's "
                             "(samples_per_iteration x iterations)", minimum=1)
    samples_per_iteration: int = option(32, "see iterations", minimum=1)
    similarity_threshold: float = option(0.9, "near-duplicate cosine threshold for synthetic questions", above=0,
                                         maximum=1)
    principles_file: str | None = option(None, "a YAML principles file (default: harness/principles/)")
    verbose_cloning: bool = option(False, "also run the verbose-cloning stage")
    answer_seed_questions: bool = option(True, "answer the seed questions too, not only the synthetic ones")
QUESTIONS_PER_TOPIC = 4
TOPIC_EXAMPLES = 4  # seed questions shown when asking for topics
QUESTION_EXAMPLES = 3  # seed questions shown when asking for a question about a topic
TOPIC_MAX_TOKENS = 32
QUESTION_MAX_TOKENS = 48
ANSWER_TEMPERATURE = 0.7
ANSWER_TOP_P = 0.9
STAGE = "self-align"
# The model sometimes goes on to write the next exemplar's annotation line; the answer ends before it.
ANNOTATION_STOP = "\n" + ANNOTATION_OPEN


# ----- prompts and parsing ---------------------------------------------------------------------------

def topic_label(domain: str) -> str:
    return domain.replace("_", " ").strip()


def topic_prompt(seeds: list[Example], rng: random.Random) -> str:
    """A few seed questions, then a list of topics that starts with their domains, for the model to extend."""
    shown = rng.sample(seeds, min(TOPIC_EXAMPLES, len(seeds)))
    labels = list(dict.fromkeys(topic_label(s.domain) for s in shown))
    questions = "\n".join(f"- {one_line(s.question)}" for s in shown)
    return f"Questions people ask an assistant:\n{questions}\n\nTopics of these and other questions: {'; '.join(labels)};"


def parse_topics(continuation: str, known: set[str]) -> list[str]:
    """New topics from a `; `-separated continuation: 1-5 words of letters, not already known."""
    topics = []
    for part in re.split(r"[;,]", continuation.split("\n", 1)[0]):
        topic = part.strip(" .:-\"'").lower()
        words = topic.split()
        if 1 <= len(words) <= 5 and re.fullmatch(r"[a-z][a-z '&-]*", topic) and normalise(topic) not in known:
            known.add(normalise(topic))
            topics.append(topic)
    return topics


def question_prompt(seeds: list[Example], topic: str, rng: random.Random) -> str:
    shown = rng.sample(seeds, min(QUESTION_EXAMPLES, len(seeds)))
    blocks = [f"Question about {topic_label(s.domain)}: {one_line(s.question)}" for s in shown]
    return "\n\n".join(blocks) + f"\n\nQuestion about {topic}:"


def parse_question(continuation: str) -> str | None:
    question = one_line(continuation.split("\n", 1)[0])
    return question or None


def principled_prompt(backend: Any, preamble: str, question: str) -> str:
    """`preamble` before the question: plain text for base models, a system (or user) preamble for chat."""
    return backend.prompt_format.with_preamble(preamble, question)


def finished_answer(text: str, finish: str) -> str | None:
    """The answer, cut back to its last full sentence when generation ran out of tokens (None if none)."""
    answer = one_line(text)
    if finish == "length":
        ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", answer)]
        answer = answer[:ends[-1]] if ends else ""
    return answer or None


# ----- the aligner -----------------------------------------------------------------------------------

@dataclass
class StageResult:
    """Rows written by a generation stage and the counts that summarise them."""

    records: list[dict]
    counts: dict[str, Any]


class SelfAlign(Aligner):
    name = "self-align"
    options_class = SelfAlignOptions
    description = "principle-driven self-alignment: topic-guided prompts, principled answers, LoRA engraving"

    def align(self, ctx: AlignContext) -> AlignedModel:
        principles = load_principles(ctx.options.principles_file)
        root = ctx.artifacts(STAGE)
        used = root / "principles.yaml"
        if used.exists() and hash_file(used) != principles.sha256:  # stages of this run rest on the old text
            raise HarnessError(f"the principles file {principles.path} changed since this run started; "
                               "pass a new --out to run with the new principles")
        shutil.copyfile(principles.path, used)
        training = TrainingBudget(ctx.options.max_train_tokens)
        n_prompts = ctx.options.samples_per_iteration * ctx.options.iterations
        settings = FilterSettings(duplicate_similarity=ctx.options.similarity_threshold)

        topics = self._stage(ctx, "1_topics", lambda out: self._topics(ctx, n_prompts, out))
        questions = self._stage(ctx, "1_questions",
                                lambda out: self._questions(ctx, topics.counts["topics"], n_prompts, settings, out))
        kept_questions = [(r["question"], r["topic"]) for r in questions.records if r["kept"]]
        if ctx.options.answer_seed_questions:
            kept_questions = [(s.question, s.domain) for s in ctx.seeds] + kept_questions
        preamble = render_principles(principles)
        (root / "preamble.txt").write_text(preamble + "\n", encoding="utf-8")
        answers = self._stage(ctx, "2_answers",
                              lambda out: self._answers(ctx, kept_questions, preamble, None, settings, out))
        stages: dict[str, Any] = {"topics": topics.counts, "questions": questions.counts, "answers": answers.counts}
        adapter = self._train(ctx, "3_engrave", answers.records, None, training, stages)
        if ctx.options.verbose_cloning and adapter is not None:
            if training.exhausted:
                training.skip()
                stages["4_verbose_train"] = {"trained": False, "reason": "training budget used up"}
            else:
                engraved = adapter
                verbose = self._stage(ctx, "4_verbose_answers",
                                      lambda out: self._answers(ctx, kept_questions, principles.verbose, engraved,
                                                                settings, out))
                stages["verbose_answers"] = verbose.counts
                adapter = self._train(ctx, "4_verbose_train", verbose.records, engraved, training, stages) or engraved
        return AlignedModel(ctx.backend, adapter=adapter, description={
            "aligner": self.name, "principles": principles.record(), "stages": stages,
            "verbose_cloning": ctx.options.verbose_cloning, "budget": training.record()})

    # ----- stage plumbing: each stage writes records.jsonl + summary.json; a finished stage is reused

    def _stage(self, ctx: AlignContext, name: str, run) -> StageResult:
        out = ctx.artifacts(STAGE, name)
        summary_path = out / "summary.json"
        if summary_path.exists():
            return StageResult(read_jsonl(out / "records.jsonl"), json.loads(summary_path.read_text()))
        with ctx.store.stage(f"align/{STAGE}/{name}") as usage:
            result, spent = run(out)
            usage.update(tokens_generated=spent, **{k: v for k, v in result.counts.items() if k != "topics"})
        write_json_atomic(summary_path, result.counts)
        return result

    @staticmethod
    def _write(out: Path, records: list[dict]) -> None:
        (out / "records.jsonl").unlink(missing_ok=True)
        with JsonlWriter(out / "records.jsonl") as writer:
            for record in records:
                writer.write(record)

    def _generate(self, ctx: AlignContext, prompts: list[str], sampling: Sampling, adapter: Path | None,
                  desc: str) -> tuple[list[dict], int]:
        return cached_generate(ctx.backend, prompts, sampling, ctx.cache, adapter, batch_size=ctx.options.gen_batch_size,
                               desc=f"self-align: {desc}")

    # ----- stage 1: topics, then questions about them

    def _topics(self, ctx: AlignContext, n_prompts: int, out: Path) -> tuple[StageResult, int]:
        n_topics = max(1, math.ceil(n_prompts / QUESTIONS_PER_TOPIC))
        rng = random.Random(ctx.seed * 1_000 + 1)
        prompts = [topic_prompt(ctx.seeds, rng) for _ in range(n_topics)]
        sampling = Sampling(max_new_tokens=TOPIC_MAX_TOKENS, temperature=ctx.options.temperature, top_p=0.95,
                            seed=ctx.seed * 1_000 + 1, stop=("\n",))
        generations, spent = self._generate(ctx, prompts, sampling, None, "propose topics")
        known = {normalise(topic_label(s.domain)) for s in ctx.seeds}
        records, topics = [], []
        for prompt, generation in zip(prompts, generations):
            new = parse_topics(generation["text"], known)
            topics += new
            records.append({"prompt": prompt, "raw": generation["text"], "topics": new})
        topics = topics[:n_topics]
        fallback = not topics
        if fallback:  # the model proposed nothing usable: the seed domains stand in, and the record says so
            topics = sorted({topic_label(s.domain) for s in ctx.seeds})
        self._write(out, records)
        return StageResult(records, {"prompts": len(prompts), "proposed": sum(len(r["topics"]) for r in records),
                                     "kept": len(topics), "fallback_to_seed_domains": fallback,
                                     "topics": topics}), spent

    def _questions(self, ctx: AlignContext, topics: list[str], n_prompts: int, settings: FilterSettings,
                   out: Path) -> tuple[StageResult, int]:
        rng = random.Random(ctx.seed * 1_000 + 2)
        assigned = [topics[i % len(topics)] for i in range(n_prompts)]
        prompts = [question_prompt(ctx.seeds, topic, rng) for topic in assigned]
        sampling = Sampling(max_new_tokens=QUESTION_MAX_TOKENS, temperature=ctx.options.temperature, top_p=0.95,
                            seed=ctx.seed * 1_000 + 2, stop=("\n",))
        generations, spent = self._generate(ctx, prompts, sampling, None, "write questions")
        parsed = [parse_question(g["text"]) for g in generations]
        vectors = embed([q or "" for q in parsed])
        eval_texts = {normalise(p) for p in ctx.eval_prompts}
        seen = {normalise(s.question) for s in ctx.seeds}
        known = [embed([s.question for s in ctx.seeds])]
        records, reasons = [], Counter()
        for prompt, topic, generation, question, vector in zip(prompts, assigned, generations, parsed, vectors):
            reason = self._question_reason(question, vector, seen, np.vstack(known), eval_texts, ctx.eval_vectors,
                                           settings)
            if reason is None:
                seen.add(normalise(question))
                known.append(vector[None, :])
            reasons[reason or "kept"] += 1
            records.append({"prompt": prompt, "topic": topic, "raw": generation["text"], "question": question,
                            "kept": reason is None, "reason": reason})
        self._write(out, records)
        return StageResult(records, {"generated": len(prompts), "kept": reasons["kept"],
                                     "rejected_by_reason": {r: n for r, n in reasons.items() if r != "kept"}}), spent

    @staticmethod
    def _question_reason(question: str | None, vector: np.ndarray, seen: set[str], known: np.ndarray,
                         eval_texts: set[str], eval_vectors: np.ndarray, settings: FilterSettings) -> str | None:
        if not question:
            return "empty"
        if not settings.min_question_words <= len(question.split()) <= settings.max_question_words:
            return "question_length"
        if is_leak(question, vector, eval_texts, eval_vectors, settings.leakage_similarity):
            return "leaks_evaluation_item"
        if normalise(question) in seen:
            return "exact_duplicate"
        if float(np.max(known @ vector)) >= settings.duplicate_similarity:
            return "near_duplicate"
        return None

    # ----- stage 2 (and 4): answers under a preamble

    def _answers(self, ctx: AlignContext, questions: list[tuple[str, str]], preamble: str, adapter: Path | None,
                 settings: FilterSettings, out: Path) -> tuple[StageResult, int]:
        prompts = [principled_prompt(ctx.backend, preamble, q) for q, _ in questions]
        sampling = Sampling(max_new_tokens=ctx.options.gen_max_new_tokens, temperature=ANSWER_TEMPERATURE,
                            top_p=ANSWER_TOP_P, seed=ctx.seed * 1_000 + (4 if adapter else 3),
                            stop=ctx.backend.prompt_format.answer_stops + (ANNOTATION_STOP,))
        generations, spent = self._generate(ctx, prompts, sampling, adapter,
                                            "verbose answers" if adapter else "answer with principles")
        records, reasons = [], Counter()
        for (question, domain), generation in zip(questions, generations):
            answer = finished_answer(generation["text"], generation["finish"])
            reason = "truncated" if answer is None else format_reason(question, answer, settings)
            reasons[reason or "kept"] += 1
            records.append({"question": question, "domain": domain, "raw": generation["text"],
                            "finish": generation["finish"], "answer": answer, "kept": reason is None,
                            "reason": reason})
        self._write(out, records)
        return StageResult(records, {"prompts": len(prompts), "kept": reasons["kept"],
                                     "rejected_by_reason": {r: n for r, n in reasons.items() if r != "kept"}}), spent

    # ----- stage 3 (and 4): fine-tuning without the preamble

    def _train(self, ctx: AlignContext, name: str, records: list[dict], init_adapter: Path | None,
               training: TrainingBudget, stages: dict[str, Any]) -> Path | None:
        examples = [Example(r["question"], r["answer"], r["domain"], source=STAGE) for r in records if r["kept"]]
        if not examples:
            progress.say(f"self-align: no answer passed the filters in {name}; nothing to train on")
            stages[name] = {"trained": False, "reason": "no kept answers"}
            return None
        if training.exhausted:
            training.skip()
            stages[name] = {"trained": False, "reason": "training budget used up"}
            return None
        out = ctx.artifacts(STAGE, name)
        finished = (out / "train.json").exists() and (out / "adapter").exists()  # keep its recorded timing
        with nullcontext({}) if finished else ctx.store.stage(f"align/{STAGE}/{name}") as usage:
            outcome: SftOutcome = finetune(ctx.backend, examples, out, ctx.options, ctx.seed,
                                           init_adapter=init_adapter, max_tokens=training.remaining)
            usage.update(tokens_trained=outcome.tokens_trained, optimizer_steps=outcome.steps,
                         first_loss=outcome.first_loss, last_loss=outcome.last_loss,
                         stopped_at_budget=outcome.stopped_at_budget, resumed=outcome.resumed)
        training.spend(outcome.tokens_trained, outcome.stopped_at_budget)
        stages[name] = {"trained": True, "pairs": len(examples), "tokens_trained": outcome.tokens_trained,
                        "optimizer_steps": outcome.steps, "first_loss": outcome.first_loss,
                        "last_loss": outcome.last_loss, "stopped_at_budget": outcome.stopped_at_budget}
        return outcome.adapter
