"""Runs each measurement in a fresh Python process and gathers what it prints.

A job is ``(scenario, params)``; :func:`run_job` starts ``python -m bench.worker`` in an empty
temporary directory (so no tool finds a config file or litters the repository) and parses the one
result line the worker prints. :func:`run_jobs` runs jobs serially (timings) or a few at a time
(accuracy runs, which mostly sleep). :func:`abba` orders repetitions A B C … C B A so that drift
in the machine's speed hits every tracker alike.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MARK = "BENCH-RESULT "
FAKE_NVIDIA_SMI = "#!/bin/sh\nexit 0\n"


@dataclass
class Job:
    """One measurement in one fresh process.

    Attributes:
        scenario: the module under ``bench.scenarios`` whose ``work(params)`` runs in the worker.
        params: JSON-able parameters; ``params["tracker"]`` names the tracker, if any.
        fake_gpu_tools: put a dummy ``nvidia-smi`` first on ``PATH`` (codecarbon looks for a GPU
            only when ``nvidia-smi --help`` succeeds; the GPU itself is the fake NVML).
        timeout_s: the process is killed after this long.
        env: variables set last (``CUDA_VISIBLE_DEVICES`` is otherwise removed).
    """

    scenario: str
    params: dict[str, Any] = field(default_factory=dict)
    fake_gpu_tools: bool = False
    timeout_s: float = 300.0
    env: dict[str, str] = field(default_factory=dict)


def _env(workdir: Path, fake_gpu_tools: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "ENERGY_TRACKER_COUNTRY")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if fake_gpu_tools:
        bin_dir = workdir / "bin"
        bin_dir.mkdir()
        smi = bin_dir / "nvidia-smi"
        smi.write_text(FAKE_NVIDIA_SMI)
        smi.chmod(0o755)
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_job(job: Job) -> dict[str, Any]:
    """Run one job; its result dict, or ``{"error": ...}`` with the end of its output."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        payload = json.dumps({"scenario": job.scenario, "params": job.params})
        try:
            done = subprocess.run(
                [sys.executable, "-m", "bench.worker", payload],
                cwd=workdir,
                env={**_env(workdir, job.fake_gpu_tools), **job.env},
                capture_output=True,
                text=True,
                timeout=job.timeout_s,
            )
        except subprocess.TimeoutExpired as e:
            return {"error": f"timed out after {job.timeout_s:g} s", "output": _tail(e.stdout, e.stderr)}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(MARK):
            result = json.loads(line[len(MARK) :])
            result["console_lines"] = _console_lines(done.stdout, done.stderr)
            return result
    return {"error": f"exit status {done.returncode}, no result", "output": _tail(done.stdout, done.stderr)}


def _console_lines(stdout: str, stderr: str) -> int:
    lines = [line for line in (stdout + "\n" + stderr).splitlines() if line.strip() and not line.startswith(MARK)]
    return len(lines)


def _tail(stdout: Any, stderr: Any, chars: int = 2000) -> str:
    text = "".join(s.decode() if isinstance(s, bytes) else (s or "") for s in (stdout, stderr))
    return text[-chars:]


def run_jobs(
    jobs: Sequence[Job], parallel: int = 1, progress: Callable[[Job, dict[str, Any]], None] | None = None
) -> list[dict[str, Any]]:
    """Run jobs, ``parallel`` at a time (1: one after the other); results in the jobs' order."""

    def one(job: Job) -> dict[str, Any]:
        result = run_job(job)
        if progress is not None:
            progress(job, result)
        return result

    if parallel <= 1:
        return [one(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(pool.map(one, jobs))


def abba(names: Sequence[str], repeats: int) -> list[tuple[int, str]]:
    """``(repeat, name)`` in the order A B C, C B A, A B C, …: each tracker sees the same drift."""
    order: list[tuple[int, str]] = []
    for r in range(repeats):
        order.extend((r, n) for n in (names if r % 2 == 0 else list(reversed(names))))
    return order


def spread(values: Iterable[float | None]) -> dict[str, Any]:
    """Median, min, max, interquartile range and count of the values that are numbers."""
    xs = sorted(v for v in values if v is not None and v == v)
    if not xs:
        return {"median": None, "min": None, "max": None, "iqr": None, "n": 0}
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1], "iqr": q[2] - q[0], "n": len(xs)}


@dataclass
class Context:
    """What the orchestrator hands every scenario.

    Attributes:
        mode: ``"smoke"``, ``"quick"`` or ``"full"``; each scenario sizes itself from it.
        trackers: the tracker names to run (``None``: each scenario's own list).
        parallel: how many mostly-sleeping jobs may run at once.
        log: prints a progress line.
    """

    mode: str = "full"
    trackers: Sequence[str] | None = None
    parallel: int = 8
    log: Callable[[str], None] = print

    def pick(self, names: Sequence[str]) -> list[str]:
        """The scenario's trackers, filtered by ``trackers``; a name also matches its variants (``ours``)."""
        if self.trackers is None:
            return list(names)
        return [n for n in names if any(n == t or n.startswith(f"{t}-") for t in self.trackers)]

    def progress(self, job: Job, result: dict[str, Any]) -> None:
        """Log one finished job, and its error if it failed."""
        what = ", ".join(f"{k}={v}" for k, v in job.params.items() if k in ("tracker", "case", "epoch_s", "kind"))
        self.log(f"  {job.scenario}: {what}" + (f"  ERROR {result['error']}" if "error" in result else ""))
