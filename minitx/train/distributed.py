"""Training on several processes with PyTorch's own engine: torchrun and DistributedDataParallel.

    torchrun --standalone --nproc_per_node 2 -m minitx.train --preset tiny

torchrun starts N copies of the command (ranks) and tells each its RANK and
WORLD_SIZE. Every rank builds the same model from the same seed and, at every
step, takes its share of the rows of the same batch; DistributedDataParallel
averages the gradients across ranks after the backward pass, so the copies stay
identical and a step is the single-process step on the whole batch: the same
batch size, steps and schedule, the work split N ways.
Rank 0 alone prints, takes the machine's training lock and saves the run.
Backend: NCCL on CUDA, gloo on the CPU.

Evaluation is sharded and all-reduced: each rank scores its share of the
validation and test data and the sums are added up, so every rank holds the
same scores in 1/N of the time, and so makes the same choices (the best model,
early stopping) without another message. A stop (Ctrl-C, or a loss that is
not finite on any rank) is agreed on at every step for the same reason: a rank
that left the loop alone would leave the others waiting for it.

Without torchrun (no WORLD_SIZE, or 1) nothing here is used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

TIMEOUT = timedelta(minutes=5)      # a collective that waits longer than this ends the job


@dataclass
class Distributed:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, batches: list) -> list:
        """This rank's rows of every batch (every N-th row from its rank). A batch with fewer rows
        than ranks (an epoch's last, at most) is left out by all of them alike."""
        return [self._rows(b) for b in batches if len(b) >= self.world_size]

    def _rows(self, batch):
        part = slice(self.rank, None, self.world_size)
        if isinstance(batch, torch.Tensor):                              # (B, T + 1) blocks
            return batch[part]
        return dataclasses.replace(batch, ids=batch.ids[part], labels=batch.labels[part], rows=batch.rows[part])

    def shard(self, items: list) -> list:
        """This rank's share for evaluation: every item belongs to exactly one rank."""
        return items[self.rank::self.world_size]

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The tensor added up over every rank (every rank gets the sum)."""
        tensor = tensor.to(self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.cpu()

    @contextlib.contextmanager
    def main_first(self):
        """Rank 0 runs the block first (training the tokenizer into the shared cache, say),
        the others after it, when what it made is there to read."""
        if not self.is_main:
            dist.barrier()
        yield
        if self.is_main:
            dist.barrier()

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def from_environment(device_name: str = "auto") -> Distributed | None:
    """The process group torchrun asked for (NCCL on CUDA, gloo on the CPU), or None when this
    process trains alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return None
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=TIMEOUT)
    return Distributed(rank, world_size, local_rank, device)
