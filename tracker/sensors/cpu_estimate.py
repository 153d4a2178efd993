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

import csv
import functools
import importlib.util
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

from tracker.errors import ConfigurationError
from tracker.sensors import CPU, Reading, is_positive_number, positive_watts
from tracker.sensors._cgroup import CGROUP_ROOT, PROC_SELF_CGROUP, cpu_quota
from tracker.sensors._procfs import busy_and_total_s, cpu_times_reader
from tracker.sensors.methods import TDP_DEFAULT, TDP_ESTIMATE, TDP_USER

__all__ = ["DEFAULT_W_PER_CPU", "CpuEstimateSensor", "CpuInfo", "load_factor", "match_tdp", "usable_cpus"]

#: Watts per logical CPU for an unknown CPU: the median TDP per hardware thread of common parts
#: in codecarbon's table: EPYC 9654 360 W/192 = 1.88, EPYC 7763 280/128 = 2.19, Ryzen 9 5950X
#: 105/32 = 3.28, Xeon Platinum 8380 270/80 = 3.38, Core i7-1165G7 28/8 = 3.50, Xeon Gold 6248
#: 150/40 = 3.75, Core i9-13900K 125/32 = 3.91, Xeon E5-2686 v4 145/36 = 4.03, Xeon Platinum
#: 8175M 240/48 = 5.00. (codecarbon uses 4 W.)
DEFAULT_W_PER_CPU = 3.5
MODEL_FORMULA = "P = tdp_w * (0.1 + 0.9 * u**3), u = busy fraction of all CPUs (codecarbon >= 3.0.5)"
_TABLE = Path("data") / "hardware" / "cpu_power.csv"
_NOISE = (
    r"\((?:r|tm)\)|[®™]",  # trademarks
    r"@.*$",  # clock speed: "CPU @ 2.30GHz"
    r"\bwith\b.*$",  # "with Radeon Graphics"
    r"\b\d+(?:st|nd|rd|th) gen\b",  # "11th Gen Intel"
    r"\b\d+-cores?\b|\bprocessor\b|\bcpu\b",
)


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
    """The path of codecarbon's ``cpu_power.csv``, found without importing codecarbon (its import starts NVML)."""
    try:
        spec = importlib.util.find_spec("codecarbon")
        path = Path(list(spec.submodule_search_locations)[0]) / _TABLE if spec else None
        return path if path is not None and path.is_file() else None
    except (ImportError, ValueError, IndexError, TypeError, OSError):
        return None


def load_table(path: Path, model: str = "") -> list[tuple[str, float]]:
    """``(name, TDP in W per socket)`` rows of a ``Name,TDP`` CSV; malformed TDPs (``27.29.5``) are skipped.

    With ``model``, only the lines that mention its model numbers (or, without any, its whole
    name): the rows :func:`match_tdp` could pick, parsed without the other ~4,900 (~15 ms).
    """
    keys = _keys(model) if model else {""}
    records = csv.reader(line for line in _lines(path) if any(key in line.lower() for key in keys))
    rows = []
    for record in records:
        try:
            tdp = float(record[1])
        except (IndexError, ValueError):
            continue
        if tdp > 0:
            rows.append((record[0], tdp))
    return rows


@functools.lru_cache(maxsize=4)
def _lines(path: Path) -> tuple[str, ...]:
    # Read once per process: trackers may be created many times.
    with open(path, newline="", encoding="utf-8-sig") as f:
        return tuple(f.read().splitlines())


def match_tdp(model: str, table: list[tuple[str, float]]) -> tuple[str, float] | None:
    """The table row for a CPU model name, or ``None`` if there is none or it is ambiguous.

    First an exact match of the normalised names; then the rows whose words all appear in the
    model's name and whose model-number words (those with a digit) are exactly the model's, the
    ones with most words winning. Without a model number nothing matches: "AMD EPYC" alone
    must not borrow the TDP of some 280 W EPYC. Several winners with different TDPs: ``None``.
    """
    wanted = normalise(model)
    words = set(wanted.split())
    numbers = _model_numbers(words)
    mentions = re.compile("|".join(re.escape(k) for k in sorted(_keys(model)))).search
    near = [(name, tdp) for name, tdp in table if mentions(name.lower())]
    if not numbers:
        near = [(name, tdp) for name, tdp in near if _may_lose_digits(name.lower())]
    rows = [(normalise(name).split(), name, tdp) for name, tdp in near]
    exact = [(name, tdp) for row, name, tdp in rows if " ".join(row) == wanted]
    if exact:
        return _unique(exact)
    if not numbers:
        return None
    candidates = [
        (len(row), name, tdp) for row, name, tdp in rows if set(row) <= words and _model_numbers(row) == numbers
    ]
    best = max((size for size, _, _ in candidates), default=0)
    return _unique([(name, tdp) for size, name, tdp in candidates if size == best])


def _keys(model: str) -> set[str]:
    """What a row's raw name must contain to match ``model``: its model numbers, or without any its whole name.

    Filtering the raw text first spares normalising all ~4,900 rows (~50 ms).
    """
    wanted = normalise(model)
    return _model_numbers(wanted.split()) or {wanted}


def _may_lose_digits(lower: str) -> bool:
    """Whether a lower-cased row name could normalise to a name without digits.

    Only the clock speed (after ``@``), a ``with ...`` tail, ``11th gen`` and ``16-core`` take
    digits away; a row with a digit before any ``@`` and none of those words keeps one, so it
    cannot be a model without a number (over a thousand rows for a bare "Intel Xeon").
    """
    return not any(c.isdigit() for c in lower.partition("@")[0]) or any(w in lower for w in ("with", "gen", "core"))


def _model_numbers(words: Iterable[str]) -> set[str]:
    return {w for w in words if any(c.isdigit() for c in w)}


def _unique(rows: list[tuple[str, float]]) -> tuple[str, float] | None:
    return rows[0] if rows and len({tdp for _, tdp in rows}) == 1 else None


def usable_cpus(*, cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> float:
    """The logical CPUs this process may use: its affinity mask, capped by a cgroup quota."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cpu_quota(cgroup_root=cgroup_root, proc_cgroup=proc_cgroup)
    return float(affinity) if quota is None else min(float(affinity), quota)


def load_factor(u: float) -> float:
    """The CPU-load curve of codecarbon: the fraction of ``P_max`` drawn at busy fraction ``u``."""
    return 0.1 + 0.9 * u**3


def busy_fraction(before: Any, after: Any) -> float:
    """The busy fraction of all CPUs between two ``cpu_times()`` results, in [0, 1] (:func:`busy_and_total_s`)."""
    return _fraction(busy_and_total_s(before), busy_and_total_s(after))


def _fraction(before: tuple[float, float], after: tuple[float, float]) -> float:
    """The busy fraction between two ``(busy, total)`` CPU seconds, in [0, 1]."""
    if after[1] - before[1] <= 0:
        return 0.0
    return min(1.0, max(0.0, (after[0] - before[0]) / (after[1] - before[1])))


def resolve_tdp(user_tdp: float | None, cpu: CpuInfo, table: Path | None, usable: float) -> tuple[float, str, dict]:
    """``(P_max in W, method, how it was found)`` for the rules in the module docstring."""
    if user_tdp is not None:
        return user_tdp, TDP_USER, {"tdp_source": "user (tdp_w)"}
    table = table or codecarbon_table()
    row = match_tdp(cpu.model, load_table(table, cpu.model)) if cpu.model and table else None
    if row is not None:
        share = min(1.0, usable / cpu.processors) if cpu.processors else 1.0
        source = f"codecarbon cpu_power.csv row {row[0]!r}: {row[1]:g} W per socket x {cpu.sockets} socket(s)"
        return row[1] * cpu.sockets * share, TDP_ESTIMATE, {"tdp_source": source, "cpu_share": share}
    source = f"default {DEFAULT_W_PER_CPU:g} W per logical CPU x {usable:g} ({_why_default(cpu.model, table)})"
    return DEFAULT_W_PER_CPU * usable, TDP_DEFAULT, {"tdp_source": source}


def _why_default(model: str, table: Path | None) -> str:
    if table is None:
        return "codecarbon's cpu_power.csv not found"
    if not model:
        return "no model name in /proc/cpuinfo"
    if not _model_numbers(normalise(model).split()):
        return f"no model number in {model!r}"
    return f"{model!r} is not in {table.name}, or matches rows with different TDPs"


class CpuEstimateSensor:
    """CPU power estimated from system-wide utilisation and a TDP; see the module docstring.

    Readings: ``energy_j`` is the estimated energy in J since the first read, a counter that
    never wraps (``E += P·Δt`` per read); ``power_w`` is ``P`` in W over the last interval.
    The first read primes the utilisation and returns ``energy_j=0.0``, ``power_w=None``.
    Utilisation comes from this instance's own ``cpu_times()`` deltas, so the user's own
    ``psutil.cpu_percent()`` calls are left undisturbed. It is machine-wide: other processes'
    load counts too.

    Args:
        tdp_w: the CPU power at full load in W, all sockets, used instead of the lookup.
        clock: monotonic clock in seconds.
        cpuinfo_path: the ``/proc/cpuinfo`` to read the model and sockets from.
        cpu_table: a CSV ``Name,TDP`` to use instead of codecarbon's ``cpu_power.csv``.
        cpu_times: returns cumulative CPU times in s; ``None``: ``/proc/stat`` as ``psutil.cpu_times`` reads it
            (psutil itself off Linux), or a script in tests.
        logical_cpus: the logical CPUs this process may use; from affinity and cgroup quota when ``None``.
        cgroup_root: the cgroup filesystem, for the CPU quota.
        proc_cgroup: the file naming the process's cgroups.

    Raises:
        ConfigurationError: ``tdp_w`` or ``logical_cpus`` is not a positive finite number, or
            ``cpu_table`` is not a file.

    Example:
        >>> sensor = CpuEstimateSensor(tdp_w=100.0)
        >>> sensor.method, sensor.read().energy_j
        ('tdp_user', 0.0)
    """

    def __init__(
        self,
        tdp_w: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        cpuinfo_path: Path = Path("/proc/cpuinfo"),
        cpu_table: Path | None = None,
        cpu_times: Callable[[], Any] | None = None,
        logical_cpus: int | None = None,
        cgroup_root: Path = CGROUP_ROOT,
        proc_cgroup: Path = PROC_SELF_CGROUP,
    ) -> None:
        user_tdp = None if tdp_w is None else positive_watts(tdp_w, "tdp_w")
        if cpu_table is not None and not Path(cpu_table).is_file():
            raise ConfigurationError(f"cpu_table={str(cpu_table)!r} is not a file: give a CSV with columns Name,TDP")
        usable = _check_cpus(logical_cpus) or usable_cpus(cgroup_root=Path(cgroup_root), proc_cgroup=Path(proc_cgroup))
        cpu = read_cpuinfo(cpuinfo_path)
        self.tdp_w, self.method, found = resolve_tdp(user_tdp, cpu, cpu_table and Path(cpu_table), usable)
        self.name, self.kind = "cpu", CPU
        self.info = {
            "model": cpu.model or "unknown",
            "tdp_w": self.tdp_w,
            **found,
            "sockets": cpu.sockets,
            "logical_cpus": usable,
            "model_formula": MODEL_FORMULA,
        }
        self._clock, self._cpu_times = clock, cpu_times or cpu_times_reader()
        self._lock = threading.Lock()
        self._last: tuple[float, tuple[float, float]] | None = None
        self._energy_j = 0.0

    def read(self) -> Reading:
        """Advance the estimate to now and return it."""
        with self._lock:
            now, times = self._clock(), busy_and_total_s(self._cpu_times())
            if self._last is None:
                self._last = (now, times)
                return Reading(self.name, self.kind, now, energy_j=0.0)
            before_s, before = self._last
            power = self.tdp_w * load_factor(_fraction(before, times))
            self._energy_j += power * max(0.0, now - before_s)
            self._last = (now, times)  # busy and total CPU seconds: each read reduces its cpu_times() once
            return Reading(self.name, self.kind, now, energy_j=self._energy_j, power_w=power)

    def close(self) -> None:
        """Nothing to release."""


def _check_cpus(logical_cpus: object) -> float | None:
    if logical_cpus is not None and not is_positive_number(logical_cpus):
        raise ConfigurationError(
            f"logical_cpus={logical_cpus!r} is not valid: give the number of CPUs this process may use, e.g. 4"
        )
    return None if logical_cpus is None else float(logical_cpus)
