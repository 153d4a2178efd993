"""Steps: what ``energy.step()`` costs on the training thread, and a row cut every 100 steps over 10⁶ steps (issue 21).

One fresh process, the real monotonic clock, 8 fake GPUs with energy counters, the sampler at its
default interval; one epoch of ``steps`` optimizer steps back to back (no work between them), with
``row_every_n_steps=100`` and ``total_steps`` given (so every row also carries the forecast), rows
written and synced:

- per step (the 99 of every 100 that cut nothing): ns of ``energy.step(samples=512)``, median of
  the 10,000 such steps before each checkpoint;
- per cut (every 100th step: the edge read as an epoch's, the row and its 8 device rows written
  and synced): µs, median of the 100 cuts before each checkpoint;
- the process's RSS at each checkpoint.

Beside the per-epoch figures of ``faults`` (growth over 10,000 epochs): a cut is an epoch's edge.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

CHECKPOINTS = {"smoke": [1_000, 5_000], "quick": [1_000, 100_000, 200_000], "full": [1_000, 100_000, 1_000_000]}
ROW_EVERY = 100
STEP_WINDOW, CUT_WINDOW = 10_000, 100


def run(ctx: Any) -> dict[str, Any]:
    from bench.runner import Job, run_jobs

    (result,) = run_jobs([Job("steps", {"checkpoints": CHECKPOINTS[ctx.mode]}, timeout_s=3600.0)], parallel=1,
                         progress=ctx.progress)  # fmt: skip
    return {"steps": result}


def work(params: dict[str, Any]) -> dict[str, Any]:
    """The run, in the worker process."""
    from tracker import EnergyTracker
    from tracker.testing import FakeGpu, FakeNvml, steady

    checkpoints = list(params["checkpoints"])
    last = checkpoints[-1]
    nvml = FakeNvml([FakeGpu(trace=steady(300.0)) for _ in range(8)])
    step_ns = array("d", bytes(8 * last))  # allocated before the first checkpoint: RSS shows the tracker alone
    cut_us = array("d", bytes(8 * (last // ROW_EVERY + 1)))
    rss: dict[int, float] = {}
    now = time.perf_counter_ns
    with tempfile.TemporaryDirectory() as tmp:
        energy = EnergyTracker(tmp, nvml=nvml, measure=("gpu",), carbon_intensity_g_per_kwh=400.0,
                               row_every_n_steps=ROW_EVERY, total_steps=last)  # fmt: skip
        with energy, energy.epoch(0):
            for step in range(1, last + 1):
                started = now()
                energy.step(samples=512)
                elapsed = now() - started
                if step % ROW_EVERY:
                    step_ns[step - 1] = elapsed
                else:
                    cut_us[step // ROW_EVERY] = elapsed / 1000
                if step in checkpoints:
                    rss[step] = _rss_mib()
        size_mib = (Path(energy.run_dir) / "epochs.csv").stat().st_size / 2**20
        rows = energy.summary().rows
    return {
        "step_ns": {c: statistics.median(_plain(step_ns, c, STEP_WINDOW)) for c in checkpoints},
        "cut_us": {
            c: statistics.median(cut_us[max(1, c // ROW_EVERY - CUT_WINDOW + 1) : c // ROW_EVERY + 1])
            for c in checkpoints
        },  # fmt: skip
        "rss_mib": rss,
        "rows": rows,
        "epochs_csv_mib": size_mib,
        "gpus": 8,
    }


def _plain(step_ns: array, checkpoint: int, window: int) -> list[float]:
    """The last ``window`` steps up to ``checkpoint`` that cut no row."""
    return [v for i, v in enumerate(step_ns[max(0, checkpoint - window - window // ROW_EVERY) : checkpoint]) if v]


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def markdown(result: dict[str, Any]) -> str:
    from bench.report import table

    s = result["steps"]
    if "step_ns" not in s:
        return f"steps: error: {s.get('error')}"
    head = ["", *[f"step {int(c):,}" for c in s["step_ns"]]]
    body = [
        ["ns per step() that cuts nothing (median of 10,000)", *[f"{v:,.0f}" for v in s["step_ns"].values()]],
        [
            f"µs per cut, a row every {ROW_EVERY} steps, written and synced (median of {CUT_WINDOW})",
            *[f"{v:,.0f}" for v in s["cut_us"].values()],
        ],  # fmt: skip
        ["RSS, MiB", *[f"{v:.1f}" for v in s["rss_mib"].values()]],
    ]
    return "\n".join([
        f"**Steps**: {s['gpus']} fake GPUs with counters, one epoch of steps back to back, "
        f"`row_every_n_steps={ROW_EVERY}` and `total_steps` given ({s['rows']:,} rows, epochs.csv "
        f"{s['epochs_csv_mib']:.1f} MiB at the end).",
        "",
        table(head, body),
    ])  # fmt: skip
