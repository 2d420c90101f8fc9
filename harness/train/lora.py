"""LoRA supervised fine-tuning with the loss on completion tokens only, and its resumable wrapper.

`train_lora` takes a model handle (an `HFModel`) and question/answer pairs already formatted as
(prompt, completion), trains a LoRA adapter and saves it as a standard PEFT directory. `finetune` trains
`Example`s into `out_dir/adapter` and reuses a finished directory instead of training again.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from tqdm import tqdm

from harness.errors import HarnessError
from harness.progress import bar as progress_bar
from harness.store import write_json_atomic
from harness.train.distributed import Processes, processes
from harness.train.schedule import BudgetedBatches
from harness.train.options import TrainOptions
from harness.types import Example

Progress = Callable[[int], None]


@dataclass(frozen=True)
class TrainResult:
    losses: list[float]  # mean completion-token loss of each optimizer step
    tokens_trained: int  # completion tokens that carried loss, summed over steps
    steps: int
    wall_s: float
    stopped_at_budget: bool = False  # training ended early because max_tokens was reached


@dataclass(frozen=True)
class SftOutcome:
    adapter: Path
    tokens_trained: int
    steps: int
    first_loss: float
    last_loss: float
    wall_s: float
    resumed: bool
    stopped_at_budget: bool = False


@contextmanager
def training(handle: Any, model: torch.nn.Module, out_dir: Path, steps: int, desc: str,
             progress: Progress | None, group: Processes = Processes(0, 1)) -> Iterator[Callable[[], None]]:
    """Train mode for the block, which calls the yielded function once per optimizer step (a progress bar,
    and `progress` when given); then eval mode and, when the block finished, the adapter saved to out_dir (by
    the main process, the others waiting for it)."""
    bar = progress_bar(steps, desc) if group.is_main else tqdm(total=steps, disable=True)

    def step_done() -> None:
        bar.update(1)
        if progress:
            progress(1)

    model.train()
    try:
        yield step_done
    finally:
        bar.close()
        model.eval()
    if group.is_main:
        handle.save_adapter(model, Path(out_dir))
    group.wait_for_all()
    if not group.is_main:
        handle.adopt_adapter(Path(out_dir))


def trainer_of(backend: Any) -> Any:
    """The model handle that trains for `backend`: the `hf` backend trains itself; a backend that only runs
    inference elsewhere (vllm, an OpenAI-compatible server) hands over a transformers copy of its model."""
    training_model = getattr(backend, "training_model", None)
    return training_model() if callable(training_model) else backend


def optimizer_for(model: torch.nn.Module, learning_rate: float) -> tuple[list[torch.nn.Parameter], torch.optim.Optimizer]:
    params = [p for p in model.parameters() if p.requires_grad]
    return params, torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)


def train_lora(handle: Any, pairs: list[tuple[str, str]], out_dir: Path, *, epochs: int, learning_rate: float,
               rank: int, batch_size: int, max_seq_len: int, seed: int, init_adapter: Path | None = None,
               max_steps: int | None = None, max_tokens: int | None = None,
               progress: Progress | None = None) -> TrainResult:
    """LoRA SFT on (prompt, completion) pairs; saves the adapter to out_dir.

    Steps = epochs x ceil(len(pairs) / batch_size), capped at max_steps. `init_adapter` continues an
    existing adapter (its own rank applies); otherwise a fresh one (alpha = 2 x rank) on all linear
    projections of attention and MLP. `max_tokens` caps the completion tokens trained on: a batch that
    would cross it keeps only the rows that fit, and training stops there (`stopped_at_budget`), so
    the cap is never exceeded. Even with no step taken, an adapter (the initial one) is saved.
    """
    started = time.perf_counter()
    handle = trainer_of(handle)
    handle.check_training_fits(batch_size, max_seq_len)
    rows = handle.training_rows(pairs, max_seq_len)
    if not rows:
        raise HarnessError(f"no training pair has a completion within max_seq_len={max_seq_len}; raise it")
    model = handle.trainable(rank, seed, init_adapter)
    params, optimizer = optimizer_for(model, learning_rate)
    schedule = BudgetedBatches([n for _ids, n in rows], batch_size, epochs, seed, max_steps, max_tokens)
    group = processes(handle.device)
    losses: list[float] = []
    with training(handle, model, out_dir, schedule.steps, f"train LoRA ({len(rows)} pairs)", progress,
                  group) as step_done:
        for batch in schedule:
            optimizer.zero_grad(set_to_none=True)
            if group.count == 1:
                loss = float(_backward_mean_loss(handle, model, [rows[i] for i in batch]))
            else:
                loss = _backward_shared_loss(handle, model, [rows[i] for i in batch], group, params)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            losses.append(loss)
            step_done()
    return TrainResult(losses=losses, tokens_trained=schedule.tokens, steps=len(losses),
                       wall_s=time.perf_counter() - started, stopped_at_budget=schedule.stopped_at_budget)


def _backward_mean_loss(handle: Any, model: torch.nn.Module, rows: list[tuple[list[int], int]]) -> torch.Tensor:
    loss = -handle.continuation_logprobs(model, rows).mean()  # per completion token, over the batch
    loss.backward()
    return loss.detach()


def _backward_shared_loss(handle: Any, model: torch.nn.Module, rows: list[tuple[list[int], int]],
                          group: Processes, params: list[torch.nn.Parameter]) -> float:
    """The batch's mean loss per completion token with this process's share of the rows: its summed loss over the
    whole batch's token count, gradients summed across processes (together: the one-process gradient)."""
    total = sum(n for _ids, n in rows)
    mine = group.share(rows)
    summed = 0.0
    if mine:
        loss = -handle.continuation_logprobs(model, mine).sum()
        (loss / total).backward()
        summed = float(loss.detach())
    group.sum_gradients(params)
    return group.sum(summed) / total


def finetune(handle: Any, examples: list[Example], out_dir: Path, options: TrainOptions, seed: int,
             init_adapter: Path | None = None, max_tokens: int | None = None) -> SftOutcome:
    """Train a LoRA adapter into out_dir/adapter; a finished directory is reused, not retrained.

    `max_tokens` caps the completion tokens trained on (see `train_lora`).
    """
    adapter, summary_path = out_dir / "adapter", out_dir / "train.json"
    if adapter.exists() and summary_path.exists():
        summary = json.loads(summary_path.read_text())
        return SftOutcome(adapter=adapter, resumed=True, **summary)
    pairs = [handle.prompt_format.training_pair(e.question, e.answer) for e in examples]
    result = train_lora(
        handle, pairs, adapter, epochs=options.epochs, learning_rate=options.learning_rate, rank=options.lora_rank,
        batch_size=options.batch_size, max_seq_len=options.max_seq_len, seed=seed, init_adapter=init_adapter,
        max_tokens=max_tokens,
    )
    summary = {"tokens_trained": result.tokens_trained, "steps": result.steps,
               "first_loss": result.losses[0] if result.losses else float("nan"),
               "last_loss": result.losses[-1] if result.losses else float("nan"),
               "wall_s": round(result.wall_s, 3), "stopped_at_budget": result.stopped_at_budget}
    write_json_atomic(out_dir / "losses.json", result.losses)
    write_json_atomic(summary_path, summary)
    return SftOutcome(adapter=adapter, resumed=False, **summary)
