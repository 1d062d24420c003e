"""Data-parallel training over processes (``torchrun``; gloo on CPU, NCCL on CUDA).

Every process takes a contiguous slice of the same global batch, encodes it, and all-gathers the embeddings, so
each one computes the loss of the *global* batch (in-batch negatives and label pairs span all processes). The
gathered copy of a process's own slice is replaced by its local tensor, so backward reaches only the local
encoders; summing the parameter gradients over processes then gives exactly the gradient of the global loss.
A run on W processes therefore follows a single-process run with the same global batch (up to float rounding),
except for BatchNorm layers, whose statistics stay per process.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run (world 1 = no distribution)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes files and logs (rank 0)."""
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1), else nothing."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
        if attempt is None:
            dist.init_process_group(backend=backend)
        else:
            # torchrun keeps one store across --max-restarts attempts, and a new process names its process group's
            # keys as the last one did: without a prefix per attempt, a restarted rank can read its dead peers'
            # addresses and fail to connect (gloo: "Connection refused")
            from torch.distributed.rendezvous import rendezvous

            store, rank, size = next(rendezvous("env://"))
            dist.init_process_group(backend=backend, store=dist.PrefixStore(f"bcls/attempt-{attempt}", store),
                                    rank=rank, world_size=size)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    log.info("distributed training: rank %d of %d (%s)", info.rank, info.world, dist.get_backend())
    return info


def local_rows(rows: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """This process's contiguous slice of a global batch (``torch.tensor_split`` order)."""
    return torch.tensor_split(rows, info.world)[info.rank] if info.world > 1 else rows


def gather_with_local_grad(local: torch.Tensor, batch: int, info: DistInfo) -> torch.Tensor:
    """All processes' ``(b_r, E)`` slices of a global batch of ``batch`` rows, in rank order, as ``(batch, E)``;
    only this process's slice carries a gradient."""
    if info.world == 1:
        return local
    sizes = [len(part) for part in torch.tensor_split(torch.arange(batch), info.world)]
    padded = torch.zeros(max(sizes), *local.shape[1:], dtype=local.dtype, device=local.device)
    padded[: len(local)] = local.detach()
    parts = [torch.empty_like(padded) for _ in range(info.world)]
    dist.all_gather(parts, padded)
    parts = [part[:size] for part, size in zip(parts, sizes)]
    parts[info.rank] = local
    return torch.cat(parts)


def sum_gradients(model: torch.nn.Module, info: DistInfo) -> None:
    """Sum every parameter gradient over processes (each holds the part that flowed through its own slice)."""
    if info.world == 1:
        return
    for param in model.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)


def from_main(obj: T, info: DistInfo, device: torch.device) -> T:
    """Rank 0's ``obj`` (picklable) on every process; the others pass anything (``None``). ``device``: this
    process's training device, through which NCCL sends the bytes."""
    if info.world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=device if device.type == "cuda" else None)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.world > 1:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
