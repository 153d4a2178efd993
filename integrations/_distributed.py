"""``torch.distributed`` helpers for the integrations: who measures what, and gathering rows to rank 0.

Every function that makes a collective is called by every rank at the same point, or by none.
"""

from __future__ import annotations

from typing import Any

import torch

from tracker.sensors import GPU


def placement(
    device: torch.device, local_rank: int, processes_on_node: int, gpu_devices: Any, measure: tuple[str, ...]
) -> tuple[tuple[str, ...], Any, bool]:
    """What one process measures: ``(kinds, gpu_devices, whether that GPU is its own CUDA device)``.

    Alone on its node it measures everything asked. Otherwise local rank 0 measures the node-level
    kinds (CPU, RAM, and GPUs unless each rank trains on a CUDA device of its own), and each rank on
    CUDA its own device, by UUID (its index if the UUID cannot be read).
    """
    if processes_on_node <= 1:
        return tuple(measure), gpu_devices, False
    own = device.type == "cuda" and gpu_devices is None and GPU in measure
    kinds = tuple(k for k in measure if (local_rank == 0 and (k != GPU or not own)) or (k == GPU and own))
    return kinds, [cuda_id(device)] if own else gpu_devices, own


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


class Exchange:
    """The session's ``exchange`` hook: every rank's device usages gathered to global rank 0.

    Set ``collective = False`` once the ranks may be out of step (an exception): rank 0 then keeps
    its own usages and no collective is made.
    """

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self.collective = True

    def __call__(self, devices: list[Any]) -> list[Any] | None:
        if not self.collective:
            return devices if self.rank == 0 else None
        gathered: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, devices)
        return [d for part in gathered for d in part] if self.rank == 0 else None
