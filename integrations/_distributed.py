"""``torch.distributed`` helpers for the integrations: who measures what, and what the ranks agree once.

Rows are never exchanged: every rank writes a shard of its own and the job is merged when read
(:mod:`tracker.job`). Every function that makes a collective is called by every rank at the same
point, or by none.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch

from tracker import integration

GPU, assign, framework_launch = integration.GPU, integration.assign, integration.framework_launch


def placement(
    device: torch.device, local_rank: int, processes_on_node: int, gpu_devices: Any, measure: tuple[str, ...]
) -> tuple[tuple[str, ...], Any, bool]:
    """What one process measures: ``(kinds, gpu_devices, whether that GPU is its own CUDA device)``.

    The rules are :func:`tracker.job.placement.assign`'s, the device a rank trains on being its
    CUDA (or ROCm) device, by UUID (its index if the UUID cannot be read).
    """
    own = processes_on_node > 1 and device.type == "cuda" and gpu_devices is None and GPU in measure
    chosen = assign(measure, local_rank, processes_on_node, cuda_id(device) if own else None, gpu_devices)
    gpus = list(chosen.gpu_devices) if chosen.gpu_devices is not None else None
    return chosen.kinds, gpus, own


def cuda_id(device: torch.device) -> int | str:
    """The CUDA device's UUID as torch gives it (without ``GPU-``), or its index when that cannot be read."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        return str(torch.cuda.get_device_properties(index).uuid)
    except (RuntimeError, AttributeError, AssertionError):  # an old torch, or CUDA not initialised
        return index


def distributed(world_size: int) -> bool:
    """Whether this is a multi-process run with ``torch.distributed`` initialised."""
    return world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()


def gather(world_size: int, value: Any) -> list[Any]:
    """Every rank's ``value`` (in rank order) on every rank; ``[value]`` outside distributed runs."""
    if not distributed(world_size):
        return [value]
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, value)
    return gathered


def trainer_launch(trainer: Any, job_id: str | None) -> Any:
    """This rank's place as Lightning's ``Trainer`` says it, and the job's token, rank 0's, agreed by one collective.

    Lightning's own launcher starts a node's other ranks as children of rank 0 and sets no ``RANK``
    for rank 0, so neither the environment nor the parent process says which shards ran together:
    the token does (the job's id when no launcher or scheduler gives one).
    """
    token = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(3).hex()}"
    agreed = gather(trainer.world_size, token)[0]  # a collective: every rank, once, at setup
    ranks = (trainer.global_rank, trainer.local_rank, trainer.world_size, trainer.num_devices)
    return framework_launch(*ranks, agreed, job_id, "lightning")
