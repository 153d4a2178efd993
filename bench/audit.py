"""What a tracker does behind the user's back: subprocesses, sockets, log records, memory.

Installed first thing in every bench worker (:mod:`bench.worker`), before any tracker is imported.
The audit hook counts subprocess and socket events and *blocks* the network: a connection or a
name lookup raises ``OSError`` inside the hook, so no tool reaches out (each then takes its own
offline path, as it would on an air-gapped cluster node). Log records at INFO and above are counted
per logger, whatever handlers the tool installed, with the root logger at INFO as a user's
``logging.basicConfig(level=logging.INFO)`` would set it.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from typing import Any

SUBPROCESS_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.startfile")
BLOCKED_EVENTS = (
    "socket.connect",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyaddr",
    "socket.sendto",
    "socket.sendmsg",
)
events: Counter[str] = Counter()
commands: list[str] = []
log_records: Counter[str] = Counter()
_installed = False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event.startswith(SUBPROCESS_EVENTS):
        events["subprocess"] += 1
        commands.append(_command(event, args))
    elif event.startswith("socket."):
        events["socket"] += 1
        if event in BLOCKED_EVENTS:
            events["network_blocked"] += 1
            raise OSError(f"network blocked by the benchmark's audit hook ({event})")


def _command(event: str, args: tuple[Any, ...]) -> str:
    if event == "subprocess.Popen" and len(args) > 1:
        argv = args[1]
        return " ".join(map(str, argv))[:80] if isinstance(argv, (list, tuple)) else str(argv)[:80]
    return event


def _count_records() -> None:
    original = logging.Logger.callHandlers

    def call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
        if record.levelno >= logging.INFO and not record.name.startswith("bench"):
            log_records[logging.getLevelName(record.levelno)] += 1
            log_records[f"logger:{record.name.split('.')[0]}"] += 1
        original(self, record)

    logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign]
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(logging.NullHandler())  # records end here instead of in logging.lastResort


def install() -> None:
    """Install the audit hook and the log counter (once per process; a hook cannot be removed)."""
    global _installed
    if _installed:
        return
    _installed = True
    sys.addaudithook(_hook)
    _count_records()


def reset() -> None:
    """Forget what was counted so far."""
    events.clear()
    commands.clear()
    log_records.clear()


def snapshot() -> dict[str, Any]:
    """What was counted: subprocesses (and their commands), socket events, blocked calls, log records."""
    lines = sum(n for key, n in log_records.items() if not key.startswith("logger:"))
    return {
        "subprocesses": events["subprocess"],
        "subprocess_commands": list(commands),
        "socket_events": events["socket"],
        "network_blocked": events["network_blocked"],
        "log_lines": lines,
        "log_by_level": {k: n for k, n in log_records.items() if not k.startswith("logger:")},
        "log_by_logger": {k.removeprefix("logger:"): n for k, n in log_records.items() if k.startswith("logger:")},
    }


def rss_bytes() -> int:
    """Resident set size of this process now, bytes (from ``/proc/self/statm``)."""
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far, bytes."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
