"""Whose CPU energy: the whole machine's, or this process tree's share of it (``cpu_scope``).

``"machine"`` reports what the CPU sensor gives: RAPL's package energy, or the TDP estimate from
machine-wide utilisation; on a node shared with other jobs their load counts too.
``"process"`` multiplies the energy of every interval between two readings by this process tree's
share of the CPU time used on the machine in that interval::

    share = Δ(CPU time of the process and its descendants) / Δ(busy CPU time of all CPUs)

(codecarbon's ``tracking_mode="process"`` takes the process's CPU time over the machine's capacity
instead, which leaves the package's idle power to nobody). The tree's time counts live descendants
(DataLoader workers) and the children already reaped; under a launcher that starts one process
per rank, its root is the launcher's process, so that the ranks of a node are one tree.

The default is ``"process"`` when the run is confined to a part of the machine (a cgroup CPU quota
or an affinity mask smaller than its logical CPUs, as under SLURM or Kubernetes), else ``"machine"``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracker.energy import counter_delta_j, trapezoid_j
from tracker.errors import ConfigurationError
from tracker.sensors import Reading, Sensor
from tracker.sensors._cgroup import CGROUP_ROOT, PROC_SELF_CGROUP, cpu_quota
from tracker.sensors._procfs import machine_busy_s

MACHINE, PROCESS = "machine", "process"
SCOPES = (MACHINE, PROCESS)


def check_scope(value: Any) -> str | None:
    """``value`` if it is a CPU scope or ``None`` (choose by confinement).

    Raises:
        ConfigurationError: it is neither.
    """
    if value is None or value in SCOPES:
        return value
    raise ConfigurationError(
        f"cpu_scope={value!r} is not valid: give 'machine' (the whole CPU's energy, other jobs' load included), "
        "'process' (this process tree's share of it), or None to choose 'process' when the run is confined "
        "to part of the machine"
    )


def confinement(*, cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> str:
    """Why this process is confined to part of the machine (``"cgroup CPU quota of 4 of 64 CPUs"``), or ``""``."""
    machine = os.cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        affinity = len(os.sched_getaffinity(0))
        if affinity < machine:
            return f"affinity mask of {affinity} of {machine} CPUs"
    quota = cpu_quota(cgroup_root=cgroup_root, proc_cgroup=proc_cgroup)
    if quota is not None and quota < machine:
        return f"cgroup CPU quota of {quota:g} of {machine} CPUs"
    return ""


def resolve_scope(value: str | None, confined_by: str) -> tuple[str, str]:
    """The scope to use and why: the user's, else ``process`` when confined, else ``machine``."""
    if value is not None:
        return value, "given"
    if confined_by:
        return PROCESS, f"confined to part of the machine: {confined_by}"
    return MACHINE, "the whole machine is available"


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid``, its live descendants and the children it reaped.

    Raises:
        psutil.Error: ``pid`` is gone.
    """
    import psutil  # here, not at import: psutil reads /proc when imported, and the session imports this module

    root = psutil.Process(pid)
    total = _cpu_s(root)
    for child in root.children(recursive=True):
        try:
            total += _cpu_s(child)
        except psutil.Error:
            continue  # it ended between the listing and the read; its time reaches its parent when reaped
    return total


def _cpu_s(process: Any) -> float:
    times = process.cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def share_of(process_s: float, busy_s: float) -> float:
    """The process tree's share of the busy CPU time of an interval, in [0, 1]."""
    if process_s <= 0:
        return 0.0
    return 1.0 if busy_s <= process_s else process_s / busy_s


class ProcessScopedSensor:
    """A CPU sensor's energy, interval by interval, times this process tree's share of the CPU time.

    ``method`` and ``name`` are the wrapped sensor's (the method says how the machine's energy was
    obtained; the row's ``cpu_scope`` column says whose share). ``energy_j`` is a counter of the
    scoped energy from the first reading (J, never wraps); ``power_w`` the wrapped power times the share.

    Args:
        inner: the machine-wide CPU sensor (RAPL package, TDP estimate).
        root_pid: the root of the process tree; this process when ``None``.
        process_cpu_s: returns the tree's CPU seconds (tests pass a script); :func:`tree_cpu_s` by default.
        busy_cpu_s: returns the machine's busy CPU seconds; :func:`machine_busy_s` by default.
    """

    def __init__(
        self,
        inner: Sensor,
        *,
        root_pid: int | None = None,
        process_cpu_s: Callable[[], float] | None = None,
        busy_cpu_s: Callable[[], float] = machine_busy_s,
    ) -> None:
        pid = os.getpid() if root_pid is None else root_pid
        self.inner, self.name, self.kind, self.method = inner, inner.name, inner.kind, inner.method
        self.info = {**inner.info, "cpu_scope": PROCESS, "cpu_scope_root_pid": pid, "cpu_scope_share": SHARE_RULE}
        self._process_cpu_s = process_cpu_s or (lambda: tree_cpu_s(pid))
        self._busy_cpu_s = busy_cpu_s
        self._last: tuple[Reading, float, float] | None = None
        self._energy_j = 0.0
        self.share = 0.0

    def read(self) -> Reading:
        """Read the wrapped sensor and the CPU times; returns the scoped energy so far."""
        reading = self.inner.read()
        process_s, busy_s = self._process_cpu_s(), self._busy_cpu_s()
        if self._last is None:
            self._last = (reading, process_s, busy_s)
            return Reading(self.name, self.kind, reading.time_s, energy_j=0.0)
        before, process0, busy0 = self._last
        # A descendant that ended but is not reaped yet drops out of the tree for a while: hold, never go back.
        process_s = max(process_s, process0)
        self.share = share_of(process_s - process0, busy_s - busy0)
        self._energy_j += _delta_j(before, reading) * self.share
        self._last = (reading, process_s, busy_s)
        power = None if reading.power_w is None else reading.power_w * self.share
        return Reading(self.name, self.kind, reading.time_s, energy_j=self._energy_j, power_w=power)

    def close(self) -> None:
        """Close the wrapped sensor."""
        self.inner.close()


SHARE_RULE = "energy x (tree CPU time / busy CPU time of all CPUs), per interval"


def _delta_j(before: Reading, after: Reading) -> float:
    """The wrapped sensor's energy between two readings, J: counter difference (wrap, reset) or trapezoid."""
    if before.energy_j is not None and after.energy_j is not None:
        return counter_delta_j(before.energy_j, after.energy_j, after.counter_range_j)[0]
    if before.power_w is not None and after.power_w is not None:
        return trapezoid_j(before.power_w, after.power_w, max(0.0, after.time_s - before.time_s))
    return 0.0
