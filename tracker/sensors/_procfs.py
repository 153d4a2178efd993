"""System-wide CPU times and physical memory from Linux's ``/proc``, as psutil reads them.

``import psutil`` costs more than the rest of a tracker's construction (it loads ``socket``,
``subprocess`` and ``select``). On Linux the two figures the estimates need are one line of
``/proc/stat`` and one of ``/proc/meminfo``, read here exactly as psutil's ``cpu_times()`` and
``virtual_memory().total`` read them; elsewhere, or when ``/proc`` is missing, psutil is used.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "CPU_TIME_FIELDS",
    "busy_and_total_s",
    "cpu_times_reader",
    "machine_busy_s",
    "physical_memory_bytes",
    "read_cpu_times",
    "read_mem_total",
]

#: The fields of the ``cpu`` line of ``/proc/stat``, in order (psutil's ``scputimes``); older
#: kernels give fewer.
CPU_TIME_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")
PROC_STAT = "/proc/stat"
PROC_MEMINFO = "/proc/meminfo"


class CpuTimes(dict):
    """Cumulative CPU times in s by field name; ``_asdict()`` as on psutil's named tuple."""

    def _asdict(self) -> dict[str, float]:
        return dict(self)

    def __getattr__(self, name: str) -> float:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def read_cpu_times(path: str = PROC_STAT) -> CpuTimes:
    """All CPUs' cumulative times in s from the first line of ``/proc/stat`` (ticks / ``SC_CLK_TCK``)."""
    if path == PROC_STAT:
        line = os.pread(_kept_fd(path), 512, 0).split(b"\n", 1)[0]  # the "cpu" line: ten numbers, < 250 bytes
    else:
        with open(path, "rb") as f:
            line = f.readline()
    ticks = _clock_ticks()
    return CpuTimes(zip(CPU_TIME_FIELDS, (float(v) / ticks for v in line.split()[1 : len(CPU_TIME_FIELDS) + 1]),
                        strict=False))  # fmt: skip


_KEPT: dict[str, int] = {}
_KEPT_LOCK = threading.Lock()


def _kept_fd(path: str) -> int:
    """A descriptor of ``path`` opened once per process and kept (and inherited by forks, closed on exec).

    The CPU estimate reads ``/proc/stat`` every second on the sampler's thread: a read at offset 0 of a kept
    descriptor makes the kernel generate the file afresh, as an ``open`` does, for half the CPU time.
    """
    fd = _KEPT.get(path)
    if fd is None:
        with _KEPT_LOCK:
            fd = _KEPT.get(path)
            if fd is None:
                fd = _KEPT[path] = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    return fd


@functools.cache
def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def read_mem_total(path: str = PROC_MEMINFO) -> int:
    """Physical memory in bytes: ``MemTotal`` of ``/proc/meminfo`` (given in KiB)."""
    with open(path, "rb") as f:
        for line in f:
            if line.startswith(b"MemTotal:"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no MemTotal in {path}")


def cpu_times_reader() -> Callable[[], Any]:
    """``read_cpu_times`` where ``/proc/stat`` is readable on Linux, else ``psutil.cpu_times``."""
    if sys.platform.startswith("linux"):
        try:
            read_cpu_times()
            return read_cpu_times
        except (OSError, ValueError):
            pass
    import psutil

    return psutil.cpu_times


def busy_and_total_s(times: Any) -> tuple[float, float]:
    """Busy and total CPU seconds in one cumulative ``cpu_times()`` result (all CPUs since boot).

    As psutil's ``cpu_percent`` counts them: guest time is already in user time on Linux, so it is
    left out of the total; idle and iowait are not busy. The CPU estimate takes the busy fraction of
    an interval from two of them, ``cpu_scope`` the busy seconds the process tree's share is of.
    """
    fields = times._asdict()
    total = sum(fields.values()) - fields.get("guest", 0.0) - fields.get("guest_nice", 0.0)
    return total - fields.get("idle", 0.0) - fields.get("iowait", 0.0), total


def machine_busy_s() -> float:
    """Busy CPU seconds of all CPUs together since boot, s (:func:`busy_and_total_s` of the times now)."""
    return busy_and_total_s(_reader()())[0]


@functools.cache
def _reader() -> Callable[[], Any]:
    return cpu_times_reader()  # chosen once per process


def physical_memory_bytes() -> int:
    """Physical memory in bytes: ``/proc/meminfo`` on Linux, else ``psutil.virtual_memory().total``."""
    if sys.platform.startswith("linux"):
        try:
            return read_mem_total()
        except (OSError, ValueError, IndexError):
            pass
    import psutil

    return psutil.virtual_memory().total
