"""`isara`: iterative retrieval-augmented in-context self-generation + supervised fine-tuning.

Per iteration t = 1..T: pick N anchors from the pool (seeds + samples kept so far); for each, retrieve its
k nearest pool examples and build a prompt made only of question/answer examples; the current model
continues it with a new pair; parse and filter; add what passes to the pool; LoRA fine-tune on the pool;
the next iteration generates with the fine-tuned model.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass

import numpy as np

from harness.aligner import AlignContext, AlignedModel, Aligner
from harness.embedding import VectorIndex, embed
from harness.generation import cached_generate
from harness.loop.filters import FilterSettings, FitChecker, format_reason, is_leak, normalise
from harness.loop.icl import GENERATION_STOPS, build_generation_prompt, parse_generated_pair
from harness.options import option
from harness.train import GenerationOptions, TrainingBudget, TrainOptions, finetune
from harness.store import JsonlWriter, read_jsonl, write_json_atomic
from harness.types import Example, Sampling


@dataclass(frozen=True)
class IsaraOptions(TrainOptions, GenerationOptions):
    iterations: int = option(2, "ISARA iterations T", minimum=1)
    samples_per_iteration: int = option(32, "anchors, i.e. generated pairs per iteration N", minimum=1)
    k_neighbours: int = option(4, "examples per in-context generation prompt k, anchor included", minimum=1)
    similarity_threshold: float = option(0.9, "near-duplicate cosine threshold against the pool", above=0, maximum=1)
    train_from_base: bool = option(False, "each iteration trains a fresh adapter on the base (true) or continues "
                                   "the previous one (false)")


@dataclass
class Pool:
    """The growing set of examples with their question and answer embeddings."""

    examples: list[Example]
    question_vectors: np.ndarray
    answer_vectors: np.ndarray

    @classmethod
    def of(cls, examples: list[Example]) -> "Pool":
        return cls(list(examples), embed([e.question for e in examples]), embed([e.answer for e in examples]))

    def add(self, examples: list[Example], question_vectors: np.ndarray, answer_vectors: np.ndarray) -> None:
        if examples:
            self.examples += examples
            self.question_vectors = np.vstack([self.question_vectors, question_vectors])
            self.answer_vectors = np.vstack([self.answer_vectors, answer_vectors])


def icl_prompts(pool: Pool, n_anchors: int, k: int, rng: random.Random) -> list[str]:
    """One prompt per anchor: its k nearest pool examples, the anchor itself last."""
    indices = list(range(len(pool.examples)))
    anchors = rng.sample(indices, n_anchors) if n_anchors <= len(indices) else rng.choices(indices, k=n_anchors)
    _, neighbours = VectorIndex(pool.question_vectors).search(pool.question_vectors[anchors], k)
    prompts = []
    for anchor, row in zip(anchors, neighbours):
        others = [i for i in row if i != anchor][: k - 1]
        rng.shuffle(others)
        prompts.append(build_generation_prompt([pool.examples[i] for i in others + [anchor]]))
    return prompts


class SampleFilter:
    """Applies every filter in order and records the first reason a pair is rejected."""

    def __init__(self, pool: Pool, seeds: list[Example], eval_prompts: list[str], eval_vectors: np.ndarray,
                 settings: FilterSettings):
        self.pool, self.settings = pool, settings
        self.eval_texts = {normalise(p) for p in eval_prompts}
        self.eval_vectors = eval_vectors
        self.seen = {normalise(e.question) for e in pool.examples}
        self.fit = FitChecker(seeds, pool.question_vectors[: len(seeds)], pool.answer_vectors[: len(seeds)],
                              settings.fit_neighbours)
        self.seeds = seeds

    def reason(self, question: str, answer: str, q_vec: np.ndarray, a_vec: np.ndarray,
               accepted_vectors: list[np.ndarray]) -> str | None:
        reason = format_reason(question, answer, self.settings)
        if reason:
            return reason
        if is_leak(question, q_vec, self.eval_texts, self.eval_vectors, self.settings.leakage_similarity):
            return "leaks_evaluation_item"
        if normalise(question) in self.seen:
            return "exact_duplicate"
        known = np.vstack([self.pool.question_vectors] + accepted_vectors) if accepted_vectors else self.pool.question_vectors
        if float(np.max(known @ q_vec)) >= self.settings.duplicate_similarity:
            return "near_duplicate"
        if self.fit.mismatch(q_vec, a_vec, answer):
            return "answer_does_not_fit_question"
        return None


class Isara(Aligner):
    name = "isara"
    description = "iterative retrieval-augmented in-context self-generation + LoRA SFT (ISARA)"
    options_class = IsaraOptions

    def align(self, ctx: AlignContext) -> AlignedModel:
        budget = ctx.options
        settings = FilterSettings(duplicate_similarity=budget.similarity_threshold)
        pool = Pool.of(ctx.seeds)
        adapter = None
        history = []
        checkpoints: list = [(0, None)]  # (iteration, adapter); 0 = the unaligned model
        training = TrainingBudget(budget.max_train_tokens)
        for t in range(1, budget.iterations + 1):
            out = ctx.artifacts("isara", f"iteration_{t}")
            summary_path = out / "summary.json"
            if summary_path.exists() and (out / "adapter").exists():
                self._restore(pool, out)
                adapter = out / "adapter"
                history.append(json.loads(summary_path.read_text()))
                training.spend(history[-1]["tokens_trained"], history[-1].get("stopped_at_budget", False))
                checkpoints.append((t, adapter))
                continue
            if training.exhausted:
                training.skip()
                break
            with ctx.store.stage(f"align/isara/iteration_{t}/generate") as usage:
                kept, counts, spent = self._generate(ctx, pool, adapter, t, settings, out)
                usage.update(tokens_generated=spent, **counts)
            pool.add(*kept)
            with ctx.store.stage(f"align/isara/iteration_{t}/train") as usage:
                outcome = finetune(ctx.backend, pool.examples, out, budget, ctx.seed + t,
                                   init_adapter=None if budget.train_from_base else adapter,
                                   max_tokens=training.remaining)
                training.spend(outcome.tokens_trained, outcome.stopped_at_budget)
                usage.update(tokens_trained=outcome.tokens_trained, optimizer_steps=outcome.steps,
                             first_loss=outcome.first_loss, last_loss=outcome.last_loss,
                             stopped_at_budget=outcome.stopped_at_budget)
            adapter = outcome.adapter
            checkpoints.append((t, adapter))
            summary = {"iteration": t, **counts, "pool_size": len(pool.examples),
                       "data_scaling_ratio": round((len(pool.examples) - len(ctx.seeds)) / len(ctx.seeds), 4),
                       "tokens_generated": spent, "tokens_trained": outcome.tokens_trained,
                       "optimizer_steps": outcome.steps, "first_loss": outcome.first_loss,
                       "last_loss": outcome.last_loss, "stopped_at_budget": outcome.stopped_at_budget}
            write_json_atomic(summary_path, summary)
            history.append(summary)
        return AlignedModel(ctx.backend, adapter=adapter,
                            description={"aligner": self.name, "iterations": history,
                                         "budget": training.record()}, checkpoints=checkpoints)

    def _generate(self, ctx: AlignContext, pool: Pool, adapter, t: int, settings: FilterSettings, out):
        budget = ctx.options
        rng = random.Random(ctx.seed * 1_000 + t)
        prompts = icl_prompts(pool, budget.samples_per_iteration, budget.k_neighbours, rng)
        sampling = Sampling(max_new_tokens=budget.gen_max_new_tokens, temperature=budget.temperature,
                            top_p=0.95, seed=ctx.seed * 1_000 + t, stop=GENERATION_STOPS)
        generations, spent = cached_generate(ctx.backend, prompts, sampling, ctx.cache, adapter,
                                             batch_size=budget.gen_batch_size, desc=f"isara {t}: generate")
        parsed = [parse_generated_pair(g["text"]) for g in generations]
        valid = [p for p in parsed if p]
        q_vecs = embed([q for q, _ in valid])
        a_vecs = embed([a for _, a in valid])
        sample_filter = SampleFilter(pool, ctx.seeds, ctx.eval_prompts, ctx.eval_vectors, settings)
        kept, kept_q, kept_a, reasons = [], [], [], Counter()
        (out / "generated.jsonl").unlink(missing_ok=True)
        with JsonlWriter(out / "generated.jsonl") as writer:
            v = 0
            for prompt, generation, pair in zip(prompts, generations, parsed):
                record = {"prompt": prompt, "raw": generation["text"], "question": None, "answer": None}
                if pair is None:
                    reason = "unparseable"
                else:
                    q_vec, a_vec = q_vecs[v], a_vecs[v]
                    v += 1
                    record.update(question=pair[0], answer=pair[1])
                    reason = sample_filter.reason(pair[0], pair[1], q_vec, a_vec, kept_q)
                    if reason is None:
                        domain = sample_filter.fit.domain_of(q_vec, ctx.seeds)
                        kept.append(Example(pair[0], pair[1], domain, source=out.name))
                        kept_q.append(q_vec[None, :])
                        kept_a.append(a_vec[None, :])
                        sample_filter.seen.add(normalise(pair[0]))
                        record["domain"] = domain
                reasons[reason or "kept"] += 1
                writer.write({**record, "kept": reason is None, "reason": reason})
        counts = {"generated": len(prompts), "parsed": len(valid), "kept": len(kept),
                  "rejected_by_reason": {r: n for r, n in reasons.items() if r != "kept"}}
        stack = (lambda vs: np.vstack(vs) if vs else np.zeros((0, pool.question_vectors.shape[1]), np.float32))
        return (kept, stack(kept_q), stack(kept_a)), counts, spent

    @staticmethod
    def _restore(pool: Pool, out) -> None:
        kept = [Example(r["question"], r["answer"], r["domain"], source=out.name)
                for r in read_jsonl(out / "generated.jsonl") if r["kept"]]
        if kept:
            pool.add(kept, embed([e.question for e in kept]), embed([e.answer for e in kept]))
