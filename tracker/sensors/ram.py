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

This module also holds the cgroup lookups that :mod:`tracker.sensors.cpu_estimate` uses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from numbers import Real
from pathlib import Path

import psutil

from tracker.errors import ConfigurationError
from tracker.sensors import RAM, Reading

__all__ = ["W_PER_GIB", "RamModelSensor", "cgroup_dirs", "is_positive_number", "memory_limit_bytes", "positive_watts"]

W_PER_GIB = 0.375
GIB = 1 << 30
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def is_positive_number(value: object) -> bool:
    """Whether ``value`` is a finite real number above 0 (a bool is not a number here)."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def positive_watts(value: object, argument: str) -> float:
    """``value`` as a float if it is a finite positive number of watts.

    Raises:
        ConfigurationError: naming ``argument`` and the value given.
    """
    if not is_positive_number(value):
        raise ConfigurationError(
            f"{argument}={value!r} is not valid: give a power in watts as a positive number "
            f"(e.g. {argument}=10.0), or None to estimate it"
        )
    return float(value)


def cgroup_dirs(
    controller: str, *, cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP
) -> list[tuple[int, Path]]:
    """The process's cgroup directories and their ancestors, nearest first, as ``(version, dir)``.

    v2 directories (``cgroup_root/<path>``) come first, then v1 ones
    (``cgroup_root/<controller>/<path>``); paths come from ``/proc/self/cgroup``. Directories
    that do not exist are left out. A limit anywhere along the path applies, so callers take the
    smallest value they find.
    """
    paths = _self_cgroup_paths(proc_cgroup, controller)
    found = []
    for version, base in ((2, Path(cgroup_root)), (1, Path(cgroup_root) / controller)):
        parts = [p for p in paths.get(version, "/").split("/") if p and p != ".."]
        for depth in range(len(parts), -1, -1):
            directory = base.joinpath(*parts[:depth])
            if directory.is_dir():
                found.append((version, directory))
    return found


def _self_cgroup_paths(proc_cgroup: Path, controller: str) -> dict[int, str]:
    """``{2: path}`` from the ``0::path`` line, ``{1: path}`` from the line naming ``controller``."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return {}
    paths = {}
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if not controllers:
            paths[2] = path
        elif controller in controllers.split(","):
            paths[1] = path
    return paths


def read_cgroup_file(path: Path) -> str | None:
    """A cgroup file's stripped text, ``None`` if it cannot be read."""
    try:
        return path.read_text().strip()
    except OSError:
        return None


def memory_limit_bytes(*, cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> int | None:
    """The smallest cgroup memory limit over the process's cgroup path, in bytes; ``None`` if none is set."""
    limits = []
    for version, directory in cgroup_dirs("memory", cgroup_root=cgroup_root, proc_cgroup=proc_cgroup):
        text = read_cgroup_file(directory / ("memory.max" if version == 2 else "memory.limit_in_bytes"))
        if text and text.isdigit():
            limits.append(int(text))
    return min(limits, default=None)


class RamModelSensor:
    """RAM power as ``W_PER_GIB`` × the memory this process may use, or as the user's figure.

    Readings: ``energy_j`` is ``power_w × (t − t0)`` in J since construction, a counter that
    never wraps; ``power_w`` is the constant model power in W.

    Args:
        power_w: the RAM power in W to use instead of the model (method ``ram_user``).
        clock: monotonic clock in seconds.
        cgroup_root: the cgroup filesystem.
        total_bytes: physical RAM in bytes; ``psutil.virtual_memory().total`` when ``None``.
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
        physical = psutil.virtual_memory().total if total_bytes is None else int(total_bytes)
        limit = memory_limit_bytes(cgroup_root=Path(cgroup_root), proc_cgroup=Path(proc_cgroup))
        size, source = (limit, "cgroup") if limit is not None and limit < physical else (physical, "physical")
        self.power_w = size / GIB * W_PER_GIB if user_w is None else user_w
        self.name, self.kind = "ram", RAM
        self.method = "ram_model" if user_w is None else "ram_user"
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
