"""CPU power estimated from utilisation and TDP, for machines where RAPL is absent or unreadable.

Model: ``P = P_max × (0.1 + 0.9·u³)``, ``u`` the busy fraction of all CPUs over the interval.
This is codecarbon's CPU-load curve since v3.0.5 (``external/hardware.py``, "cubic relationship
with minimum 10% of TDP"): the floor stands for the package's idle power, which a linear ``TDP·u``
(codecarbon's process mode, Green Algorithms) leaves out. Using the same curve keeps our figures
comparable with the tool users know. It is an estimate, not a measurement: static and dynamic
estimators err by up to 40 % against a wattmeter (Fischer 2025, arXiv:2509.22092), and at
mid load the cubic sits well below a linear curve (50 % busy gives 21 % of ``P_max``).

``P_max`` comes from, in order (the ``method`` of the sensor says which):

- ``tdp_user``: the ``tdp_w`` the user gives, used as is.
- ``tdp_estimate``: the model name in ``/proc/cpuinfo`` matched in codecarbon's
  ``data/hardware/cpu_power.csv`` (TDP per socket) × sockets × the share of the machine's
  logical CPUs this process may use (1 unless a cgroup quota or affinity mask restricts it).
  In a VM, ``/proc/cpuinfo`` counts only the guest's vCPUs, so the share stays 1 and a matched
  full-package TDP overstates a small VM's part of the host: give ``tdp_w`` there.
- ``tdp_default``: :data:`DEFAULT_W_PER_CPU` × the logical CPUs this process may use, when the
  model is unknown, has no model number (cloud VMs often say just "AMD EPYC") or matches rows
  with different TDPs.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import psutil

from tracker.errors import ConfigurationError
from tracker.sensors import CPU, Reading
from tracker.sensors.ram import CGROUP_ROOT, PROC_SELF_CGROUP, cgroup_dirs, positive_watts, read_cgroup_file

__all__ = ["DEFAULT_W_PER_CPU", "CpuEstimateSensor", "CpuInfo", "load_factor", "match_tdp", "usable_cpus"]

#: Watts per logical CPU for an unknown CPU: the median TDP per hardware thread of common parts
#: in codecarbon's table: EPYC 9654 360 W/192 = 1.88, EPYC 7763 280/128 = 2.19, Ryzen 9 5950X
#: 105/32 = 3.28, Xeon Platinum 8380 270/80 = 3.38, Core i7-1165G7 28/8 = 3.50, Xeon Gold 6248
#: 150/40 = 3.75, Core i9-13900K 125/32 = 3.91, Xeon E5-2686 v4 145/36 = 4.03, Xeon Platinum
#: 8175M 240/48 = 5.00. (codecarbon uses 4 W.)
DEFAULT_W_PER_CPU = 3.5
MODEL_FORMULA = "P = tdp_w * (0.1 + 0.9 * u**3), u = busy fraction of all CPUs (codecarbon >= 3.0.5)"
_TABLE = Path("data") / "hardware" / "cpu_power.csv"
_NOISE = [
    r"\((?:r|tm)\)|[®™]",  # trademarks
    r"@.*$",  # clock speed: "CPU @ 2.30GHz"
    r"\bwith\b.*$",  # "with Radeon Graphics"
    r"\b\d+(?:st|nd|rd|th) gen\b",  # "11th Gen Intel"
    r"\b\d+-core\b|\bprocessor\b|\bcpu\b",
]


class CpuInfo(NamedTuple):
    """What ``/proc/cpuinfo`` says: the first model name, sockets, logical CPUs."""

    model: str
    sockets: int
    processors: int


def read_cpuinfo(path: Path) -> CpuInfo:
    """Parse ``/proc/cpuinfo``; an unreadable file gives an unknown model, 1 socket, 0 processors."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return CpuInfo("", 1, 0)
    fields = [tuple(part.strip() for part in line.split(":", 1)) for line in lines if ":" in line]
    models = [value for key, value in fields if key == "model name"]
    sockets = {value for key, value in fields if key == "physical id"}
    processors = sum(1 for key, _ in fields if key == "processor")
    return CpuInfo(models[0] if models else "", max(1, len(sockets)), processors)


def normalise(name: str) -> str:
    """A CPU name lower-cased, without trademarks, clock speed, core count or filler words."""
    text = name.lower()
    for pattern in _NOISE:
        text = re.sub(pattern, " ", text)
    return " ".join(text.split())


def codecarbon_table() -> Path | None:
    """codecarbon's ``cpu_power.csv``, found without importing codecarbon (its import starts NVML)."""
    try:
        spec = importlib.util.find_spec("codecarbon")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / _TABLE
    return path if path.is_file() else None


def load_table(path: Path) -> list[tuple[str, float]]:
    """``(name, TDP in W per socket)`` rows; rows with a malformed TDP (ranges like ``27.29.5``) are skipped."""
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        for record in csv.reader(f):
            try:
                tdp = float(record[1])
            except (IndexError, ValueError):
                continue
            if tdp > 0:
                rows.append((record[0], tdp))
    return rows


def match_tdp(model: str, table: list[tuple[str, float]]) -> tuple[str, float] | None:
    """The table row for a CPU model name, or ``None`` if there is none or it is ambiguous.

    First an exact match of the normalised names; then the rows whose words all appear in the
    model's name and whose model-number words (those with a digit) are exactly the model's, the
    ones with most words winning. Without a model number nothing matches: "AMD EPYC" alone
    must not borrow the TDP of some 280 W EPYC. Several winners with different TDPs: ``None``.
    """
    wanted = normalise(model)
    exact = [(name, tdp) for name, tdp in table if normalise(name) == wanted]
    if exact:
        return _unique(exact)
    words = set(wanted.split())
    numbers = {w for w in words if any(c.isdigit() for c in w)}
    if not numbers:
        return None
    candidates = []
    for name, tdp in table:
        row = set(normalise(name).split())
        if row <= words and {w for w in row if any(c.isdigit() for c in w)} == numbers:
            candidates.append((len(row), name, tdp))
    best = max((size for size, _, _ in candidates), default=0)
    return _unique([(name, tdp) for size, name, tdp in candidates if size == best])


def _unique(rows: list[tuple[str, float]]) -> tuple[str, float] | None:
    return rows[0] if rows and len({tdp for _, tdp in rows}) == 1 else None


def cpu_quota(*, cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> float | None:
    """The smallest cgroup CPU quota over the process's cgroup path, in CPUs; ``None`` if unlimited."""
    quotas = []
    for version, directory in cgroup_dirs("cpu", cgroup_root=cgroup_root, proc_cgroup=proc_cgroup):
        if version == 2:
            quota, _, period = (read_cgroup_file(directory / "cpu.max") or "max").partition(" ")
        else:
            quota = read_cgroup_file(directory / "cpu.cfs_quota_us") or "-1"
            period = read_cgroup_file(directory / "cpu.cfs_period_us") or ""
        if quota.isdigit() and period.isdigit() and int(period) > 0:
            quotas.append(int(quota) / int(period))
    return min(quotas, default=None)


def usable_cpus(*, cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> float:
    """The logical CPUs this process may use: its affinity mask, capped by a cgroup quota."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cpu_quota(cgroup_root=cgroup_root, proc_cgroup=proc_cgroup)
    return float(affinity) if quota is None else min(float(affinity), quota)


def load_factor(u: float) -> float:
    """codecarbon's CPU-load curve: the fraction of ``P_max`` drawn at busy fraction ``u``."""
    return 0.1 + 0.9 * u**3


def busy_fraction(before: Any, after: Any) -> float:
    """The busy fraction of all CPUs between two ``psutil.cpu_times()`` results, in [0, 1].

    As psutil's ``cpu_percent`` computes it: guest time is already counted in user time on
    Linux, so it is left out of the total; idle and iowait are not busy.
    """
    busy0, total0 = _busy_total(before)
    busy1, total1 = _busy_total(after)
    if total1 - total0 <= 0:
        return 0.0
    return min(1.0, max(0.0, (busy1 - busy0) / (total1 - total0)))


def _busy_total(times: Any) -> tuple[float, float]:
    fields = times._asdict()
    total = sum(fields.values()) - fields.get("guest", 0.0) - fields.get("guest_nice", 0.0)
    return total - fields.get("idle", 0.0) - fields.get("iowait", 0.0), total
