"""`spin`: Self-Play Fine-Tuning (Chen et al. 2024).

Per iteration t = 1..T: the previous iterate (the base model for t = 1, else the adapter of t - 1) answers
every seed question; a LoRA adapter, started from the previous iterate, is trained with the SPIN loss
(harness/train/preference.py) to raise the likelihood ratio of the seed's human answer over the
previous iterate's own answer, with the previous iterate as the frozen reference. The next iteration
plays against the model just trained.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.aligner import AlignContext, AlignedModel, Aligner
from harness.errors import HarnessError
from harness.generation import cached_generate
from harness.loop.icl import one_line
from harness.options import option
from harness.train import DEFAULT_BETA, GenerationOptions, TrainingBudget, TrainOptions, train_spin
from harness.store import JsonlWriter, write_json_atomic
from harness.types import Sampling



@dataclass(frozen=True)
class SpinOptions(TrainOptions, GenerationOptions):
    iterations: int = option(2, "SPIN iterations", minimum=1)
    beta: float = option(DEFAULT_BETA, "strength of the SPIN (DPO-form) loss", above=0)


def spin_triples(backend: Any, records: list[dict]) -> list[tuple[str, str, str]]:
    """(prompt, real completion, generated completion) for every usable record."""
    triples = []
    for record in records:
        if record["kept"]:
            prompt, real = backend.prompt_format.training_pair(record["question"], record["real"])
            _, generated = backend.prompt_format.training_pair(record["question"], record["generated"])
            triples.append((prompt, real, generated))
    return triples


class Spin(Aligner):
    name = "spin"
    options_class = SpinOptions
    description = "self-play fine-tuning: the seed answers against the previous iterate's own answers"

    def align(self, ctx: AlignContext) -> AlignedModel:
        beta = ctx.options.beta
        training = TrainingBudget(ctx.options.max_train_tokens)
        adapter: Path | None = None
        history = []
        checkpoints: list[tuple[int, Path | None]] = [(0, None)]  # 0 = the unaligned model
        for t in range(1, ctx.options.iterations + 1):
            out = ctx.artifacts("spin", f"iteration_{t}")
            summary_path = out / "summary.json"
            if summary_path.exists() and (out / "adapter").exists():
                summary = json.loads(summary_path.read_text())
                training.spend(summary["tokens_trained"], summary["stopped_at_budget"])
                history.append(summary)
                adapter = out / "adapter"
                checkpoints.append((t, adapter))
                continue
            if training.exhausted:
                training.skip()
                break
            with ctx.store.stage(f"align/spin/iteration_{t}/generate") as usage:
                records, spent = self._play(ctx, adapter, t, out)
                usage.update(tokens_generated=spent, answered=len(records),
                             kept=sum(r["kept"] for r in records))
            triples = spin_triples(ctx.backend, records)
            if not triples:
                raise HarnessError(f"spin iteration {t}: every generated answer was empty or equal to the seed's; "
                                   "nothing to train on")
            with ctx.store.stage(f"align/spin/iteration_{t}/train") as usage:
                result = train_spin(
                    ctx.backend, triples, out / "adapter", beta=beta, reference_adapter=adapter, init_adapter=adapter,
                    epochs=ctx.options.epochs, learning_rate=ctx.options.learning_rate, rank=ctx.options.lora_rank,
                    batch_size=ctx.options.batch_size, max_seq_len=ctx.options.max_seq_len, seed=ctx.seed + t,
                    max_tokens=training.remaining)
                training.spend(result.tokens_trained, result.stopped_at_budget)
                summary = {"iteration": t, "pairs": len(triples), "tokens_generated": spent,
                           "tokens_trained": result.tokens_trained, "optimizer_steps": result.steps,
                           "first_loss": result.losses[0] if result.losses else None,
                           "last_loss": result.losses[-1] if result.losses else None,
                           "first_reward_accuracy": result.reward_accuracy[0] if result.steps else None,
                           "last_reward_accuracy": result.reward_accuracy[-1] if result.steps else None,
                           "last_reward_margin": result.reward_margin[-1] if result.steps else None,
                           "stopped_at_budget": result.stopped_at_budget, "beta": beta}
                usage.update({k: v for k, v in summary.items() if k not in ("iteration", "tokens_generated")})
            write_json_atomic(out / "steps.json", {"loss": result.losses, "reward_accuracy": result.reward_accuracy,
                                                   "reward_margin": result.reward_margin})
            write_json_atomic(summary_path, summary)
            history.append(summary)
            adapter = out / "adapter"
            checkpoints.append((t, adapter))
        return AlignedModel(ctx.backend, adapter=adapter, description={
            "aligner": self.name, "beta": beta, "iterations": history, "budget": training.record()},
            checkpoints=checkpoints)

    @staticmethod
    def _play(ctx: AlignContext, adapter: Path | None, t: int, out: Path) -> tuple[list[dict], int]:
        """The previous iterate answers every seed question; records pair its answer with the seed's."""
        backend = ctx.backend
        sampling = Sampling(max_new_tokens=ctx.options.gen_max_new_tokens, temperature=ctx.options.temperature,
                            top_p=0.95, seed=ctx.seed * 1_000 + t, stop=backend.prompt_format.answer_stops)
        prompts = [backend.prompt_format.question(seed.question) for seed in ctx.seeds]
        generations, spent = cached_generate(backend, prompts, sampling, ctx.cache, adapter,
                                             batch_size=ctx.options.gen_batch_size, desc=f"spin {t}: play")
        records = []
        for seed, generation in zip(ctx.seeds, generations):
            generated = one_line(generation["text"])
            reason = "empty" if not generated else "same_as_real" if generated == one_line(seed.answer) else None
            records.append({"question": seed.question, "domain": seed.domain, "real": seed.answer,
                            "generated": generated, "finish": generation["finish"], "kept": reason is None,
                            "reason": reason})
        (out / "generated.jsonl").unlink(missing_ok=True)
        with JsonlWriter(out / "generated.jsonl") as writer:
            for record in records:
                writer.write(record)
        return records, spent
