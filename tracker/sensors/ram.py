"""RAM power from a documented model, sized by the memory this process may use.

Model: **0.375 W per GiB**, constant, the "3 W per 8 GB" that codecarbon v2 took from Crucial
and, within 1 %, the 0.3725 W/GB of Green Algorithms (Lannelongue et al. 2021). Published
figures run from 0.08 W/GB (Green Algorithms' current table) to codecarbon v3's 5 W per DIMM,
so this term is uncertain by a factor of about 2 either way and the log says so. We keep a
per-GiB rate rather than v3's per-DIMM count because it can be sized by an allocation: the
DIMM count of the host says nothing about the share of it a container or job may use.

Size: the cgroup memory limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``, the smallest
along the process's cgroup path) when it is below physical RAM, else physical RAM. Sizing by
the host alone gave 378 W of "RAM" for a job on a 1 TB host (codecarbon issue #629).

The cgroup lookups are in :mod:`tracker.sensors._cgroup`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tracker.sensors import RAM, Reading, is_positive_number, positive_watts
from tracker.sensors._cgroup import CGROUP_ROOT, PROC_SELF_CGROUP, cgroup_dirs, memory_limit_bytes
from tracker.sensors._procfs import physical_memory_bytes
from tracker.sensors.methods import RAM_MODEL, RAM_USER

__all__ = ["W_PER_GIB", "RamModelSensor", "cgroup_dirs", "is_positive_number", "memory_limit_bytes", "positive_watts"]

W_PER_GIB = 0.375
GIB = 1 << 30


class RamModelSensor:
    """RAM power as ``W_PER_GIB`` × the memory this process may use, or as the user's figure.

    Readings: ``energy_j`` is ``power_w × (t − t0)`` in J since construction, a counter that
    never wraps; ``power_w`` is the constant model power in W.

    Args:
        power_w: the RAM power in W to use instead of the model (method ``ram_user``).
        clock: monotonic clock in seconds.
        cgroup_root: the cgroup filesystem.
        total_bytes: physical RAM in bytes; when ``None``, ``MemTotal`` of ``/proc/meminfo``
            (``psutil.virtual_memory().total`` off Linux).
        proc_cgroup: the file naming the process's cgroups.

    Raises:
        ConfigurationError: ``power_w`` is not a positive finite number.

    Example:
        >>> RamModelSensor(total_bytes=16 << 30, cgroup_root=Path("/nonexistent")).info["power_w"]
        6.0
    """

    def __init__(
        self,
        power_w: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        cgroup_root: Path = CGROUP_ROOT,
        total_bytes: int | None = None,
        proc_cgroup: Path = PROC_SELF_CGROUP,
    ) -> None:
        user_w = None if power_w is None else positive_watts(power_w, "power_w")
        physical = physical_memory_bytes() if total_bytes is None else int(total_bytes)
        limit = memory_limit_bytes(cgroup_root=Path(cgroup_root), proc_cgroup=Path(proc_cgroup))
        size, source = (limit, "cgroup") if limit is not None and limit < physical else (physical, "physical")
        self.power_w = size / GIB * W_PER_GIB if user_w is None else user_w
        self.name, self.kind = "ram", RAM
        self.method = RAM_MODEL if user_w is None else RAM_USER
        self.info = {
            "model": "user-given power" if user_w is not None else f"{W_PER_GIB} W/GiB x memory size",
            "model_source": "codecarbon v2 (3 W per 8 GB, Crucial); Green Algorithms 0.3725 W/GB",
            "size_bytes": size,
            "size_gib": round(size / GIB, 3),
            "size_source": source,
            "w_per_gib": W_PER_GIB,
            "power_w": self.power_w,
        }
        self._clock = clock
        self._t0 = clock()

    def read(self) -> Reading:
        """The modelled energy since construction, in J, and the model power, in W."""
        now = self._clock()
        return Reading(self.name, self.kind, now, energy_j=self.power_w * (now - self._t0), power_w=self.power_w)

    def close(self) -> None:
        """Nothing to release."""
