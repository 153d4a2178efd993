"""Run the benchmarks: ``python bench/run.py [--quick | --smoke] [--only NAME[,NAME]] [--trackers NAME[,NAME]]``.

Scenarios (``bench/scenarios/``): ``startup``, ``overhead``, ``micro``, ``accuracy``, ``boundaries``, ``faults``,
``job_scale``, ``steps``, ``prometheus``.
Every measurement runs in a fresh process (``bench/runner.py``). Writes
``bench/results/<date>-<host>[-quick].json`` and its PNG chart, prints the markdown, and (full runs
of every scenario, or ``--readme``) puts it into ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import compileall
import importlib
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import chart, report  # noqa: E402
from bench.runner import Context  # noqa: E402

SCENARIOS = ("startup", "overhead", "micro", "accuracy", "boundaries", "faults", "job_scale", "steps", "prometheus")
TITLES = {
    "startup": "Start-up and shutdown (fresh process each, this machine as it is: no GPU, no RAPL)",
    "overhead": "Training overhead and idle cost (CPU-bound torch loop, one thread)",
    "micro": "Our costs: one tick per sensor kind, one epoch, memory over many readings",
    "accuracy": "Accuracy on a fake GPU of known energy (per-epoch and run total)",
    "boundaries": "Epoch boundaries: short epochs",
    "faults": "Faults: an NVML outage, a hung sensor, costs over 10,000 epochs",
    "job_scale": "A distributed job at scale: report of 256 ranks x 1,000 rows; following a job after each row",
    "steps": "Steps: step() on the training thread, a row every 100 steps over 10^6 steps",
    "prometheus": "Prometheus: an endpoint scraped every 100 ms, against none, per training step",
}


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="short epochs and one repetition (about 2 minutes)")
    size.add_argument("--smoke", action="store_true", help="tiny sizes, to check that the bench still runs")
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma list of {', '.join(SCENARIOS)}")
    parser.add_argument("--trackers", default=None, help="comma list of trackers (e.g. none,ours); default all")
    parser.add_argument("--parallel", type=int, default=10, help="accuracy jobs (which sleep) run at once")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="directory for JSON and PNG")
    parser.add_argument("--readme", action=argparse.BooleanOptionalAction, default=None, help="update bench/README.md")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"--only: unknown scenario(s) {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
    return args


def _versions() -> dict[str, str]:
    from importlib import metadata

    found = {"python": platform.python_version()}
    for dist in ("training-energy-tracker", "codecarbon", "carbontracker", "torch", "nvidia-ml-py", "psutil"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def _machine() -> dict[str, Any]:
    import os

    cpuinfo = _lines("/proc/cpuinfo")
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    mem = next((line.split()[1] for line in _lines("/proc/meminfo") if line.startswith("MemTotal")), "0")
    return {
        "host": platform.node(),
        "cpu": model,
        "logical_cpus": os.cpu_count(),
        "memory_gib": round(int(mem) / 2**20, 1),
        "kernel": platform.release(),
        "gpu": "none (accuracy uses the fake NVML of tracker.testing)",
    }


def _lines(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


def _run_all(names: list[str], ctx: Context) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        ctx.log(f"[{name}] {TITLES[name]}")
        t0 = time.perf_counter()
        module = importlib.import_module(f"bench.scenarios.{name}")
        results[name] = module.run(ctx)
        results[name]["seconds"] = time.perf_counter() - t0
        ctx.log(f"[{name}] done in {results[name]['seconds']:.0f} s")
    return results


def _markdown(meta: dict[str, Any], results: dict[str, Any], png: Path | None) -> str:
    m, v = meta["machine"], meta["versions"]
    lines = [
        f"### Results of `{meta['command']}` — {meta['date']}",
        "",
        f"Machine: {m['host']}, {m['cpu']}, {m['logical_cpus']} logical CPUs, {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}; GPU: {m['gpu']}. Total time {meta['seconds']:.0f} s.",
        "",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
        "#### Goals",
        "",
        report.goals_markdown(results["goals"]),
        "",
        "#### Ours against the others",
        "",
        report.versus_markdown(results),
    ]
    if png is not None:
        lines += ["", f"![overhead and accuracy](results/{png.name})"]
    for name in SCENARIOS:
        if name in results:
            module = importlib.import_module(f"bench.scenarios.{name}")
            lines += ["", f"#### {TITLES[name]}", "", module.markdown(results[name])]
    return "\n".join(lines) + "\n"


def _compile_our_bytecode() -> None:
    """Compile ``tracker`` and ``integrations`` to ``.pyc`` first, as pip does for the installed tools.

    An editable install leaves our sources uncompiled (and ``PYTHONDONTWRITEBYTECODE`` may keep it
    so): every import would then compile them again, a cost the other tools, installed from wheels
    with their bytecode, never pay.
    """
    for package in ("tracker", "integrations"):
        compileall.compile_dir(ROOT / package, quiet=1)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(sys.argv[1:] if argv is None else argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    names = [n for n in SCENARIOS if n in args.only.split(",")]
    trackers = args.trackers.split(",") if args.trackers else None
    ctx = Context(mode=mode, trackers=trackers, parallel=args.parallel, log=lambda s: print(s, flush=True))
    _compile_our_bytecode()
    started = time.perf_counter()
    results = _run_all(names, ctx)
    results["goals"] = report.goals(results)
    now = datetime.now(timezone.utc)
    stem = f"{now:%Y-%m-%d}-{platform.node()}" + ("" if mode == "full" else f"-{mode}")
    meta = {
        "command": " ".join(["python bench/run.py", *(sys.argv[1:] if argv is None else argv)]),
        "date": now.isoformat(timespec="seconds"),
        "mode": mode,
        "machine": _machine(),
        "versions": _versions(),
        "seconds": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    png = chart.draw(results, args.out / f"{stem}.png")
    text = _markdown(meta, results, png)
    print(text)
    if args.readme or (args.readme is None and mode == "full" and names == list(SCENARIOS)):
        report.replace_section(ROOT / "bench" / "README.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
