"""Start-up and shutdown: import, construct+start, stop; subprocesses, sockets, log lines, memory.

Each repetition is a fresh interpreter on this machine as it is (no GPU, no RAPL, no fakes), so each
tool takes the path a user of a CPU machine gets; one untimed run of each tool comes first (warm
bytecode and page caches). Times are wall-clock on the calling thread;
``cpu_s`` is the process's CPU time from before the import to after ``stop()``, background threads
included; ``peak_rss_mib`` is the peak resident set above the bare worker's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

TRACKERS = ("none", "ours-1s", "ours-0.1s", "codecarbon-15s", "codecarbon-1s", "carbontracker")
REPEATS = {"smoke": 1, "quick": 2, "full": 5}
MIB = 2**20


def work(params: dict[str, Any]) -> dict[str, Any]:
    from bench import adapters, audit

    adapter = adapters.make(params["tracker"])
    rss0, cpu0 = audit.rss_bytes(), time.process_time()
    audit.reset()
    t0 = time.perf_counter()
    adapter.import_tool()
    t1 = time.perf_counter()
    adapter.start(epochs=1, workdir=Path.cwd())
    t2 = time.perf_counter()
    rss_running = audit.rss_bytes()
    adapter.stop()
    t3 = time.perf_counter()
    return {
        "import_s": t1 - t0,
        "start_s": t2 - t1,
        "stop_s": t3 - t2,
        "start_stop_s": t3 - t1,
        "cpu_s": time.process_time() - cpu0,
        "rss_running_mib": (rss_running - rss0) / MIB,
        "peak_rss_mib": (audit.peak_rss_bytes() - rss0) / MIB,
        **audit.snapshot(),
    }


METRICS = ("import_s", "start_s", "stop_s", "start_stop_s", "cpu_s", "rss_running_mib", "peak_rss_mib")
COUNTS = ("subprocesses", "socket_events", "network_blocked", "log_lines", "console_lines")


def run(ctx: Any) -> dict[str, Any]:
    from bench.runner import Job, abba, run_jobs, spread

    names = ctx.pick(TRACKERS)
    # One untimed run each first: bytecode caches written, files in the page cache, for every tool alike.
    run_jobs([Job("startup", {"tracker": name}, timeout_s=120) for name in names])
    order = abba(names, REPEATS[ctx.mode])
    jobs = [Job("startup", {"tracker": name}, timeout_s=120) for _, name in order]
    results = run_jobs(jobs, parallel=1, progress=ctx.progress)
    tagged = [(n, r) for (_, n), r in zip(order, results, strict=True)]
    summary: dict[str, Any] = {}
    for name in names:
        mine = [r for n, r in tagged if n == name and "error" not in r]
        errors = [r["error"] for n, r in tagged if n == name and "error" in r]
        summary[name] = {m: spread(r[m] for r in mine) for m in METRICS}
        summary[name].update({c: max((r.get(c, 0) for r in mine), default=None) for c in COUNTS})
        summary[name]["subprocess_commands"] = mine[0]["subprocess_commands"] if mine else []
        summary[name]["errors"] = errors
    return {"summary": summary, "raw": [{"tracker": n, **r} for n, r in tagged]}


def markdown(result: dict[str, Any]) -> str:
    from bench.report import fmt, table

    rows = []
    for name, s in result["summary"].items():
        rows.append(
            [
                name,
                fmt(s["import_s"], 1000, 1),
                fmt(s["start_s"], 1000, 1),
                fmt(s["stop_s"], 1000, 1),
                fmt(s["start_stop_s"], 1000, 1),
                fmt(s["cpu_s"], 1000, 0),
                fmt(s["peak_rss_mib"], 1, 1),
                str(s["subprocesses"]),
                f"{s['socket_events']} ({s['network_blocked']} blocked)",
                f"{s['log_lines']} / {s['console_lines']}",
            ]
        )
    header = [
        "tracker",
        "import ms",
        "construct+start ms",
        "stop ms",
        "start+stop ms",
        "CPU ms (all threads)",
        "+peak RSS MiB",
        "subprocesses",
        "socket events",
        "log records ≥INFO / console lines",
    ]
    commands = {n: s["subprocess_commands"] for n, s in result["summary"].items() if s["subprocess_commands"]}
    notes = "".join(f"\n- {n} runs: `{'`, `'.join(c)}`" for n, c in commands.items())
    return table(header, rows) + ("\n\nSubprocesses per start:" + notes if notes else "")
