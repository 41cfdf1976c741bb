"""Processes and devices: one process, or ``torchrun --nproc_per_node=K`` with DDP or FSDP2.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; the process group uses NCCL on GPUs
and gloo on CPUs. Parameters are either replicated (DDP, gradients all-reduced) or sharded
(FSDP2 ``fully_shard`` on every decoder layer and the whole model).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from swat.utils.checks import check_device


@dataclass
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False  # this process created the process group and must destroy it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> DistEnv:
    """The process's rank and device; joins the process group when launched by ``torchrun``
    (or reuses one that the caller already initialised)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns_group = False
    if dist.is_available() and dist.is_initialized():
        world_size = dist.get_world_size()
    elif world_size > 1:
        backend = "nccl" if pick_device(device, local_rank).type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        owns_group = True
    rank = dist.get_rank() if world_size > 1 else 0
    chosen = pick_device(device, local_rank)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=chosen, owns_group=owns_group)


def teardown(env: DistEnv) -> None:
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def pick_device(device: str, local_rank: int) -> torch.device:
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    name = f"cuda:{local_rank}" if device == "cuda" else device  # each process its own GPU
    return check_device(name, instead="use train.device=cpu or auto")


def wrap(model: nn.Module, env: DistEnv, fsdp: bool) -> nn.Module:
    """The module that runs forward/backward: ``model`` itself (one process), a DDP replica, or
    ``model`` sharded in place by FSDP2 (each block the model names in ``_no_split_modules``, its
    decoder layers, a unit, then the rest)."""
    if not env.distributed:
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        blocks = set(getattr(model, "_no_split_modules", None) or ())
        for layer in [m for m in model.modules() if type(m).__name__ in blocks]:
            fully_shard(layer)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def gradient_sync(model: nn.Module, enabled: bool):
    """A context in which backward does (``enabled``) or does not all-reduce gradients: the
    micro-steps before the last one of a step accumulate locally."""
    if enabled:
        return contextlib.nullcontext()
    if hasattr(model, "no_sync"):
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        return _fsdp_no_sync(model)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _fsdp_no_sync(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def all_reduce_sum(tensor: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum of ``tensor`` over processes (``tensor`` itself with one process)."""
    if env.distributed:
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()
