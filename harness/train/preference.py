"""The SPIN objective (Chen et al. 2024, "Self-Play Fine-Tuning Converts Weak Language Models to Strong").

For a prompt x with a real answer y (the seed's) and a generated answer y' (the previous iterate's), and
log-likelihood ratios r(y) = log p_theta(y|x) - log p_ref(y|x) against the previous iterate as reference:

    loss = log(1 + exp(-beta * (r(y) - r(y'))))  =  -log sigmoid(beta * (r(y) - r(y')))

averaged over pairs. It has the form of the DPO loss, with the real answer as the preferred one.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from harness.errors import HarnessError
from harness.train.distributed import processes
from harness.train.lora import Progress, TrainResult, optimizer_for, trainer_of, training
from harness.train.schedule import BudgetedBatches

DEFAULT_BETA = 0.1


@dataclass(frozen=True)
class SpinLoss:
    loss: torch.Tensor  # scalar, differentiable
    reward_accuracy: float  # share of pairs with r(y) > r(y')
    reward_margin: float  # mean beta * (r(y) - r(y'))


def spin_loss(policy_real: torch.Tensor, policy_generated: torch.Tensor, reference_real: torch.Tensor,
              reference_generated: torch.Tensor, beta: float = DEFAULT_BETA) -> SpinLoss:
    """Each argument holds one summed answer log-probability per pair."""
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    margin = beta * ((policy_real - reference_real) - (policy_generated - reference_generated))
    loss = -F.logsigmoid(margin).mean()
    detached = margin.detach()
    return SpinLoss(loss=loss, reward_accuracy=float((detached > 0).float().mean()),
                    reward_margin=float(detached.mean()))


@dataclass(frozen=True)
class SpinResult(TrainResult):
    # Per step: the share of pairs whose real answer gained more log-likelihood ratio than the generated
    # one, and the mean of beta x (ratio of real - ratio of generated).
    reward_accuracy: list[float] = field(default_factory=list)
    reward_margin: list[float] = field(default_factory=list)


def train_spin(handle: Any, triples: list[tuple[str, str, str]], out_dir: Path, *, beta: float,
               reference_adapter: Path | None, init_adapter: Path | None, epochs: int, learning_rate: float,
               rank: int, batch_size: int, max_seq_len: int, seed: int, max_tokens: int | None = None,
               progress: Progress | None = None) -> SpinResult:
    """Self-play fine-tuning on (prompt, real completion, generated completion) triples.

    The reference (`reference_adapter` on the base, or the plain base) is frozen: its log-probs are
    computed once up front. The policy starts from `init_adapter` (SPIN: the previous iterate, the
    same as the reference) or a fresh LoRA, which equals the base model until it is trained. A step
    takes `batch_size` triples in micro-batches of batch_size // 2 (two rows each, so a forward pass
    is no wider than an SFT step). Tokens trained count the completion tokens of both answers;
    `max_tokens` caps them as in `train_lora`.
    """
    started = time.perf_counter()
    handle = trainer_of(handle)
    handle.check_training_fits(batch_size, max_seq_len)
    pairs = []
    for prompt, real, generated in triples:
        rows = handle.training_rows([(prompt, real), (prompt, generated)], max_seq_len)
        if len(rows) == 2:
            pairs.append((rows[0], rows[1]))
    if not pairs:
        raise HarnessError(f"no SPIN pair has both answers within max_seq_len={max_seq_len}; raise it")
    flat = [row for pair in pairs for row in pair]
    reference = handle.frozen_row_logprob_sums(flat, reference_adapter, batch_size).view(-1, 2).float()
    model = handle.trainable(rank, seed, init_adapter)
    reference = reference.to(next(model.parameters()).device)
    params, optimizer = optimizer_for(model, learning_rate)
    counts = [real[1] + generated[1] for real, generated in pairs]
    schedule = BudgetedBatches(counts, batch_size, epochs, seed, max_tokens=max_tokens)
    micro = max(1, batch_size // 2)
    group = processes(handle.device)  # several processes: each takes its share of every batch (distributed.py)
    losses: list[float] = []
    accuracy: list[float] = []
    margins: list[float] = []
    with training(handle, model, out_dir, schedule.steps, f"train SPIN ({len(pairs)} pairs)", progress,
                  group) as step_done:
        for batch in schedule:
            optimizer.zero_grad(set_to_none=True)
            step_loss = step_accuracy = step_margin = 0.0
            mine = group.share(batch)
            for chunk_start in range(0, len(mine), micro):
                chunk = mine[chunk_start:chunk_start + micro]
                policy = handle.row_logprob_sums(model, [row for i in chunk for row in pairs[i]]).view(-1, 2)
                out = spin_loss(policy[:, 0], policy[:, 1], reference[chunk, 0], reference[chunk, 1], beta)
                share = len(chunk) / len(batch)
                (out.loss * share).backward()
                step_loss += float(out.loss.detach()) * share
                step_accuracy += out.reward_accuracy * share
                step_margin += out.reward_margin * share
            group.sum_gradients(params)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            losses.append(group.sum(step_loss))
            accuracy.append(group.sum(step_accuracy))
            margins.append(group.sum(step_margin))
            step_done()
    return SpinResult(losses=losses, tokens_trained=schedule.tokens, steps=len(losses),
                      wall_s=time.perf_counter() - started, stopped_at_budget=schedule.stopped_at_budget,
                      reward_accuracy=accuracy, reward_margin=margins)
