"""torch.distributed for the trainer: process group from torchrun's environment, flat reductions."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, TypeVar
from datetime import timedelta

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from .errors import ConfigError

# Seconds a collective waits for a rank before the others give up with an error.
TIMEOUT_ENV = "MTBENCH_DIST_TIMEOUT"

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    """This process's place in the job: rank, world size and its local rank on the machine."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when there is a device; anything else must name an available device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}: expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but no CUDA device is available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) available")
    return device


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group torchrun describes (nccl on CUDA, gloo on CPU); a no-op for one process.

    Returns this process's Dist and its device (``cuda:LOCAL_RANK`` on CUDA).
    """
    if not launched_by_torchrun():
        return Dist(), device
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"local rank {local_rank} has no GPU: this machine has {torch.cuda.device_count()}; "
                "use --nproc-per-node <= the number of GPUs"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "600")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timeout)
    return Dist(rank, world, local_rank), device


def from_rank0(make: Callable[[], T], device: torch.device) -> T:
    """``make()`` run on rank 0 only, its result given to every rank (joining the process group first).

    One process: just ``make()``. Used for what only rank 0 may do but all ranks must know, such
    as creating the run directory.
    """
    if not launched_by_torchrun():
        return make()
    dist_info, _ = init(device)
    value = [make() if dist_info.is_main else None]
    dist.broadcast_object_list(value, src=0)
    return value[0]


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean_(tensors: list[torch.Tensor]) -> None:
    """Average same-dtype, same-device tensors over all ranks in ONE collective, in place."""
    flat = _flatten_dense_tensors(tensors)
    dist.all_reduce(flat)
    flat.div_(dist.get_world_size())
    for t, reduced in zip(tensors, _unflatten_dense_tensors(flat, tensors)):
        t.copy_(reduced)


def all_reduce_mean_in_place_(tensor: torch.Tensor) -> None:
    """Average one contiguous tensor over all ranks in place (a per-task gradient buffer)."""
    dist.all_reduce(tensor)
    tensor.div_(dist.get_world_size())


def broadcast_(tensors: list[torch.Tensor], src: int = 0) -> None:
    """Give every rank ``src``'s values of the tensors, grouped by dtype: one collective per dtype."""
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = _flatten_dense_tensors(group)
        dist.broadcast(flat, src)
        for t, value in zip(group, _unflatten_dense_tensors(flat, group)):
            t.copy_(value)
