"""Data-parallel training across processes: each process takes its share of every batch, the gradients are
summed across processes before the optimizer step, so every process keeps the same weights and the run equals
one process with the same batch (the loss is normalised by the whole batch's tokens, not each share's).

Started by `accelerate launch` or `torchrun`, which set WORLD_SIZE, RANK, MASTER_ADDR and MASTER_PORT: the
process group is gloo on CPU, nccl on GPU. Without them there is one process and nothing changes. Only the
main process writes (the adapter, progress bars).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Sequence, TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Processes:
    index: int  # this process's rank
    count: int  # world size

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def share(self, batch: Sequence[T]) -> list[T]:
        """This process's rows of a batch (every process holds the same schedule, so the shares partition it)."""
        return list(batch[self.index::self.count])

    def sum(self, value: float) -> float:
        if self.count == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64)
        torch.distributed.all_reduce(tensor)
        return float(tensor.item())

    def sum_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        if self.count == 1:
            return
        for param in params:
            if param.grad is None:  # a process whose share was empty
                param.grad = torch.zeros_like(param)
            torch.distributed.all_reduce(param.grad)

    def wait_for_all(self) -> None:
        if self.count > 1:
            torch.distributed.barrier()


def processes(device: torch.device) -> Processes:
    """The processes training together (one, unless started by a launcher with WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Processes(0, 1)
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size())
