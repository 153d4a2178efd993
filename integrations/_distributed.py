"""``torch.distributed`` helpers for the integrations: who measures what, and gathering rows to rank 0.

Every function that makes a collective is called by every rank at the same point, or by none.
"""

from __future__ import annotations

from typing import Any

import torch

from tracker import integration

GPU, assign, keep_once = integration.GPU, integration.assign, integration.keep_once


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


def counted_once(usages: list[Any]) -> list[Any]:
    """Every rank's device usages less the duplicates (a GPU seen by several ranks), by the placement's rule."""
    rows = [{"kind": u.kind, "uuid": u.uuid, "host": u.host, "sensor": u.sensor, "rank": u.rank} for u in usages]
    kept, _ = keep_once(rows)
    ids = {id(row) for row in kept}
    return [usage for usage, row in zip(usages, rows, strict=True) if id(row) in ids]


class Exchange:
    """The session's ``exchange`` hook: every rank's device usages gathered to global rank 0, each device once.

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
        return counted_once([d for part in gathered for d in part]) if self.rank == 0 else None
