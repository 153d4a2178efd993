"""Is the process that writes a run still alive? And what had it measured of its open epoch?

A run's ``run.json`` says ``"running"`` until ``stop()`` rewrites it, so a process killed by
SIGKILL, SIGTERM (SLURM, ``docker stop``, Kubernetes) or the OOM killer leaves it ``running``
forever. The writing process names itself (:func:`this_process`: host, pid and the kernel's start
time of the pid, which tells a reused pid apart) and, every few seconds, writes ``heartbeat.json``
(:data:`HEARTBEAT_JSON`): the time and the energy so far of each open epoch and phase. A reader
that finds a ``running`` run whose process is gone (:func:`is_gone`) shows it as ``killed``, the
open epoch as an ``interrupted`` row (:func:`interrupted_rows`). No signal handler is involved.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HEARTBEAT_JSON = "heartbeat.json"
# A heartbeat older than this, from another host, means the process is gone (it writes every 5 s).
STALE_HEARTBEAT_S = 60.0
KILLED = "killed"


def start_ticks(pid: int, proc: Path = Path("/proc")) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux ``/proc/<pid>/stat``); None if unknown."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the name, in parentheses, may hold spaces
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


def this_process() -> dict[str, Any]:
    """Who writes the run: ``host``, ``pid`` and ``start_ticks`` (None off Linux)."""
    return {"host": os.uname().nodename, "pid": os.getpid(), "start_ticks": start_ticks(os.getpid())}


def is_gone(process: Any, heartbeat_utc: str | None, now: datetime | None = None) -> bool:
    """Whether the process described by ``process`` (see :func:`this_process`) has ended.

    On this host: its pid is gone, or now belongs to a process started at another time. On another
    host: its last heartbeat is older than ``STALE_HEARTBEAT_S``. Unknown: not gone.
    """
    if not isinstance(process, dict) or not isinstance(process.get("pid"), int):
        return False
    if process.get("host") != os.uname().nodename:
        return _stale(heartbeat_utc, now or datetime.now(timezone.utc))
    pid = process["pid"]
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the pid exists
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, under another user
    recorded = process.get("start_ticks")
    return recorded is not None and start_ticks(pid) not in (None, recorded)


def _stale(heartbeat_utc: str | None, now: datetime) -> bool:
    try:
        beat = datetime.fromisoformat(heartbeat_utc) if heartbeat_utc else None
    except ValueError:
        return False
    return beat is not None and (now - beat).total_seconds() > STALE_HEARTBEAT_S


def interrupted_rows(run: str, heartbeat: dict[str, Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The open epochs and phases of a heartbeat as ``interrupted`` rows, leaving out those ``rows`` already hold."""
    written = {(r.get("epoch"), r.get("phase")) for r in rows}
    result = []
    for segment in heartbeat.get("open") or []:
        if not isinstance(segment, dict) or (segment.get("epoch"), segment.get("phase")) in written:
            continue
        result.append({"run": run, **segment, "status": "interrupted", "end_utc": heartbeat.get("time_utc"),
                       "notes": "killed: the energy up to the last heartbeat"})  # fmt: skip
    return result
