"""Is the process that writes a run still alive? And what had it measured of its open epoch?

A run's ``run.json`` says ``"running"`` until ``stop()`` rewrites it, so a process killed by
SIGKILL, SIGTERM (SLURM, ``docker stop``, Kubernetes) or the OOM killer leaves it ``running``
forever. The writing process names itself (:func:`this_process`): its host, the kernel it runs on
(``boot_id``, random at each boot, so two nodes sharing a hostname are told apart), its pid and the
kernel's start time of the pid (a reused pid is another process), its parent (the launcher, shared by
the ranks of one node), and a random id of its own (``uuid``). Every few seconds it writes
``heartbeat.json`` (:data:`HEARTBEAT_JSON`): a count that only grows (``seq``), the time and the
energy so far of each open epoch and phase; a process with no sensor heartbeats too.

A reader that finds a ``running`` run whose process is gone (:func:`is_gone`) shows it as
``killed``, the open epoch as an ``interrupted`` row (:func:`interrupted_rows`). On the reader's own
kernel the pid says it. On another machine no wall clock is compared with the reader's (hosts
disagree by minutes): the process is gone when the reader has seen its heartbeat stand still for
``STALE_HEARTBEAT_S`` on the reader's own monotonic clock (:class:`Observer`); a reader that looks
once cannot tell, and leaves it ``running``. No signal handler is involved.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HEARTBEAT_JSON = "heartbeat.json"
# A heartbeat that the reader has seen standing still this long (its own clock, s) means the process is gone;
# writers beat every 2 s, so a live one never stands still for a minute.
STALE_HEARTBEAT_S = 60.0
KILLED = "killed"
# The note of a killed run's open epoch recovered from its heartbeat (energy up to then; its samples,
# given when the epoch opened, are a plan the process did not finish).
RECOVERED = "killed: the energy up to the last heartbeat"
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_MACHINE_ID = Path("/etc/machine-id")


def start_ticks(pid: int, proc: Path = Path("/proc")) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux ``/proc/<pid>/stat``); None if unknown."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the name, in parentheses, may hold spaces
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def _first_line(*paths: Path) -> str:
    for path in paths:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text:
            return text
    return ""


_KERNEL: list[str] = []


def kernel_id() -> str:
    """This kernel's identity: its ``boot_id`` (random at each boot), else ``/etc/machine-id``; read once."""
    if not _KERNEL:
        _KERNEL.append(_first_line(_BOOT_ID, _MACHINE_ID))
    return _KERNEL[0]


def this_process() -> dict[str, Any]:
    """Who writes the run: ``host``, ``kernel``, ``pid``, ``start_ticks`` (None off Linux), ``ppid``, ``uuid``."""
    pid, ppid = os.getpid(), os.getppid()
    return {
        "host": os.uname().nodename,
        "kernel": kernel_id(),
        "pid": pid,
        "start_ticks": start_ticks(pid),
        "ppid": ppid,
        "ppid_start_ticks": start_ticks(ppid),
        "uuid": os.urandom(16).hex(),
    }


def machine_of(process: Any, host: str = "") -> str:
    """The machine a process ran on: ``host`` and its kernel id (two nodes may share a hostname), or ``host``."""
    kernel = process.get("kernel") if isinstance(process, dict) else None
    host = host or (process.get("host") if isinstance(process, dict) else "") or ""
    return f"{host}/{kernel}" if kernel else host


def on_this_machine(process: dict[str, Any]) -> bool:
    """Whether ``process`` ran on the reader's kernel: the same host, and the same kernel id where it has one."""
    if process.get("host") != os.uname().nodename:
        return False
    kernel = process.get("kernel")
    return not kernel or kernel == kernel_id()


class Observer:
    """What a reader has seen of other machines' heartbeats: each one's value and since when (its own clock).

    Args:
        clock: the reader's monotonic clock, s.
        stale_s: how long a heartbeat must stand still to mean its process is gone, s.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, stale_s: float = STALE_HEARTBEAT_S) -> None:
        self.clock, self.stale_s = clock, stale_s
        self._seen: dict[Any, tuple[Any, float]] = {}
        self._lock = threading.Lock()

    def standing_still(self, who: Any, beat: Any) -> bool:
        """Whether ``who``'s heartbeat ``beat`` has not changed for ``stale_s`` since this reader first saw it."""
        now = self.clock()
        with self._lock:
            seen = self._seen.get(who)
            if seen is None or seen[0] != beat:
                self._seen[who] = (beat, now)
                return False
            return now - seen[1] >= self.stale_s


OBSERVER = Observer()


def is_gone(process: Any, heartbeat: dict[str, Any] | None = None, observer: Observer | None = None) -> bool:
    """Whether the process described by ``process`` (see :func:`this_process`) has ended.

    On this machine: its pid is gone, or now belongs to a process started at another time. On
    another: ``observer`` (default :data:`OBSERVER`) has seen its ``heartbeat`` stand still for
    ``STALE_HEARTBEAT_S``. Unknown: not gone.
    """
    if not isinstance(process, dict) or not isinstance(process.get("pid"), int):
        return False
    if not on_this_machine(process):
        who = process.get("uuid") or (machine_of(process), process["pid"], process.get("start_ticks"))
        beat = (heartbeat or {}).get("seq"), (heartbeat or {}).get("time_utc")
        return (observer or OBSERVER).standing_still(who, beat)
    pid = process["pid"]
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the pid exists
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, under another user
    recorded = process.get("start_ticks")
    return recorded is not None and start_ticks(pid) not in (None, recorded)


def _row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return row.get("epoch"), row.get("phase"), row.get("start_utc"), row.get("first_step")


def interrupted_rows(run: str, heartbeat: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The open epochs and phases of a heartbeat as ``interrupted`` rows, leaving out those ``rows`` already hold."""
    return [
        {**row, "status": "interrupted", "end_utc": heartbeat.get("time_utc"),
         "notes": RECOVERED}
        for row in open_rows(run, heartbeat, rows)
    ]  # fmt: skip


def open_rows(run: str, heartbeat: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The open epochs and phases of a heartbeat as rows of status ``running`` (their energy so far).

    Those ``rows`` already hold (written after the heartbeat) are left out.
    """
    # An epoch cut into rows (row_every_n_steps) has several of one epoch and phase: its start tells them apart.
    written = {_row_key(r) for r in rows}
    return [
        {"run": run, **segment, "status": "running"}
        for segment in heartbeat.get("open") or []
        if isinstance(segment, dict) and _row_key(segment) not in written
    ]
