"""Accuracy on a GPU of known energy: the fake NVML of ``tracker.testing`` as ``pynvml`` for every tool.

Each job installs ``fake_pynvml(...)`` as ``sys.modules["pynvml"]`` before the tool is imported, so
every tool reads the same fake GPUs (with or without the energy counter) whose power follows a
trace laid out on the run's schedule (:mod:`bench.traces`). Epochs are real time on the main thread
(asleep, so jobs run a few at a time). Each tool measures every kind it knows; only its GPU figure
is compared. Ours runs at its default interval with ``measure=("gpu",)`` so that its band is the GPU's.

The truth of an epoch is the trace's exact integral between the tool's own boundary readings: the
last NVML energy (else power) read that the tool made *on the calling thread* during the call that
opens or closes the epoch (the bench wraps the fake's read functions to log them; ours reads on an
edge thread while the caller waits, and those reads count as the caller's), or, for a tool
that reads nothing there, the call's start (carbontracker stamps ``time.time()`` first thing). A
boundary call's own duration therefore does not blur the truth.

The issue's table (#15) is re-measured beside: GPUs without an energy counter whose driver keeps a
power sample buffer as a Pascal card does (a sample every 20 ms, each the mean of the last 10 ms,
each anywhere in its slot), 3 s epochs, ours at ``interval_s`` 0.05, 0.1 and 1 s against
carbontracker (1 s); and once more without the buffer (``no-buffer``: the same driver's power reading,
refreshed every 20 ms, polled in the fast lane at the rate inferred from it).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

TRACKERS = ("ours", "codecarbon-15s", "codecarbon-1s", "carbontracker")
SHAPES = ("steady", "square", "ramp", "gaps", "two-gpus")
SIZES = {
    "smoke": {"epochs": 2, "epoch_s": 0.6, "gap_s": 0.3},
    "quick": {"epochs": 3, "epoch_s": 2.0, "gap_s": 1.0},
    "full": {"epochs": 4, "epoch_s": 6.0, "gap_s": 2.0},
}
LEAD_S = 0.3
TABLE_SHAPES = ("square-0.3", "square-7", "sine-1.3", "two-gpus-0.3")
TABLE_TRACKERS = ("ours-0.05s", "ours-0.1s", "ours-1s", "carbontracker")
TABLE_SIZES = {
    "smoke": {"epochs": 2, "epoch_s": 0.6, "gap_s": 0.0},
    "quick": {"epochs": 3, "epoch_s": 3.0, "gap_s": 0.0},
    "full": {"epochs": 6, "epoch_s": 3.0, "gap_s": 0.0},
}
# A Pascal card's driver (Yang et al., docs/measurement.md §1.2): power refreshed every 20 ms, each refresh the
# mean of the 10 ms before it, anywhere in its slot (not in step with the load); BUFFER also keeps them.
DRIVER = {"power_update_s": 0.02, "power_window_s": 0.01, "sample_jitter_s": 0.02}
BUFFER = {**DRIVER, "sample_period_s": 0.02, "sample_window_s": 0.01}


def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _timed(call: Any, *args: Any) -> tuple[float, float]:
    before = time.monotonic()
    call(*args)
    return before, time.monotonic()


READS = ("nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetPowerUsage", "nvmlDeviceGetSamples",
         "nvmlDeviceGetFieldValues")  # fmt: skip


def _logged(module: Any, name: str, log: list[tuple[int, str, int, float]]) -> None:
    """Wrap ``module.<name>`` so that every call logs (thread, function, GPU, time)."""
    function = getattr(module, name)

    def call(handle: Any, *args: Any) -> Any:
        before = time.monotonic()
        try:
            return function(handle, *args)
        finally:
            # Our edge reads run on an edge thread for the calling one (tracker.measure.edge): they count as its own.
            edge = threading.current_thread().name == "energy-tracker.edge"
            log.append((EDGE if edge else threading.get_ident(), name, getattr(handle, "gpu", -1),
                        (before + time.monotonic()) / 2))  # fmt: skip

    setattr(module, name, call)


def _install_fake(shape: str, gpus: int, counter: bool, buffer: bool = False) -> tuple[Any, list[Any], list[Any]]:
    from bench.traces import LateTrace
    from tracker.testing import FakeGpu, fake_pynvml

    late = [LateTrace(shape, i) for i in range(gpus)]
    driver = BUFFER if buffer else DRIVER
    module = fake_pynvml([FakeGpu(trace=trace.as_trace(), has_counter=counter, **driver) for trace in late])
    log: list[tuple[int, str, int, float]] = []
    for name in READS:
        _logged(module, name, log)
    sys.modules["pynvml"] = module
    return module.fake, late, log


def work(params: dict[str, Any]) -> dict[str, Any]:
    from bench import adapters
    from bench.traces import Schedule

    fake, late, log = _install_fake(params["shape"], params["gpus"], params["counter"], params.get("buffer", False))
    adapter = adapters.make(params["tracker"])
    adapter.import_tool()
    started = _timed(adapter.start, params["epochs"], Path.cwd(), True)
    origin = fake.origin_s
    plan = Schedule(time.monotonic() - origin + LEAD_S, params["epoch_s"], params["gap_s"], params["epochs"])
    for trace in late:
        trace.schedule(plan)
    windows = []
    for k in range(plan.epochs):
        _sleep_until(origin + plan.epoch_start(k))
        opened = _timed(adapter.begin, k)
        _sleep_until(origin + plan.epoch_start(k) + plan.epoch_s)
        windows.append((opened, _timed(adapter.end, k)))
    _sleep_until(origin + plan.end_s + min(params["gap_s"], 0.5))
    stopped = _timed(adapter.stop)
    truth = Truth(fake, params["gpus"], log, threading.get_ident())
    return _score(adapter.results(), truth, windows, (started, stopped))


EDGE = -1  # the thread of a read made on an edge thread, on behalf of the calling one


class Truth:
    """The exact GPU energy between a tool's boundary readings (see the module docstring)."""

    def __init__(self, fake: Any, gpus: int, log: list[tuple[int, str, int, float]], thread: int) -> None:
        self.fake, self.gpus, self.thread = fake, gpus, thread
        self.log = [entry for entry in log if entry[0] in (thread, EDGE)]

    def moment(self, gpu: int, call: tuple[float, float]) -> tuple[float, str]:
        """When the tool read GPU ``gpu`` during the call, and how that was found."""
        for name in READS:
            reads = [t for _, fn, g, t in self.log if fn == name and g == gpu and call[0] <= t <= call[1]]
            if reads:
                return reads[-1], "read"
        return call[0], "call start"

    def between(self, a: tuple[float, float], b: tuple[float, float]) -> tuple[float, bool]:
        """Energy in J between two boundary calls, and whether both were found as reads."""
        energy, reads = 0.0, True
        for gpu in range(self.gpus):
            (t0, how0), (t1, how1) = self.moment(gpu, a), self.moment(gpu, b)
            energy += self.fake.true_energy_j(gpu, t0, t1)
            reads = reads and how0 == how1 == "read"
        return energy, reads


def _score(found: dict[str, Any], truth: Truth, windows: list, run: tuple) -> dict[str, Any]:
    truths = [truth.between(a, b)[0] for a, b in windows]
    epochs = found.get("epoch_gpu_j") or []
    errors = [(e - t) / t for e, t in zip(epochs, truths, strict=False)]  # a tool may miss epochs
    total_truth, _ = truth.between(*run)
    total = found.get("total_gpu_j")
    bands = found.get("epoch_band_j")
    calls = [w[1] - w[0] for pair in windows for w in pair]
    result = {
        "truth_j": truths,
        "estimate_j": epochs,
        "epoch_errors": errors,
        "missing_epochs": len(truths) - len(errors),
        "boundary_from_reads": all(truth.between(a, b)[1] for a, b in windows),
        "boundary_call_max_s": max(calls),
        "total_truth_j": total_truth,
        "total_j": total,
        "total_error": None if total is None else (total - total_truth) / total_truth,
        "interval_s": found.get("interval_s"),
    }
    if bands is not None:
        result["band_contains"] = [lo <= t <= hi for (lo, hi), t in zip(bands, truths, strict=False)]
        lo, hi = found["total_band_j"]
        result["total_band_contains"] = lo <= total_truth <= hi
        result["band_halfwidth"] = [(hi - lo) / 2 / t for (lo, hi), t in zip(bands, truths, strict=False)]
    return result


def case_params(shape: str, counter: bool, size: dict[str, Any]) -> dict[str, Any]:
    """A job's parameters: ``gaps`` has idle gaps between epochs, ``two-gpus`` is a square wave beside 200 W."""
    return {
        "case": f"{shape}/{'counter' if counter else 'polling'}",
        "shape": "square" if shape == "two-gpus" else shape,
        "gpus": 2 if shape == "two-gpus" else 1,
        "counter": counter,
        "epochs": size["epochs"],
        "epoch_s": size["epoch_s"],
        "gap_s": size["gap_s"] if shape == "gaps" else 0.0,
    }


def jobs_for(ctx: Any, cases: list[dict[str, Any]]) -> list[Any]:
    """One job per case and tracker, each in a fresh process with a dummy ``nvidia-smi`` on ``PATH``."""
    from bench.runner import Job

    run_s = max(c["epochs"] * (c["epoch_s"] + c["gap_s"]) for c in cases)
    return [
        Job("accuracy", {**case, "tracker": name}, fake_gpu_tools=True, timeout_s=run_s + 120)
        for case in cases
        for name in ctx.pick(TRACKERS)
    ]


def collect(jobs: list[Any], results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Results by case, then tracker, each with its error summary."""
    by_case: dict[str, dict[str, Any]] = {}
    for job, result in zip(jobs, results, strict=True):
        if "error" not in result:
            errors = [abs(e) for e in result["epoch_errors"]]
            result["epoch_abs_mean"] = sum(errors) / len(errors) if errors else None
            result["epoch_abs_max"] = max(errors) if errors else None
        by_case.setdefault(job.params["case"], {})[job.params["tracker"]] = result
    return by_case


def table_params(shape: str, buffer: bool, size: dict[str, Any]) -> dict[str, Any]:
    """A job of the issue's table: ``two-gpus-0.3`` is the 0.3 s square wave beside a steady 200 W GPU."""
    return {
        "case": f"{shape}/{'buffer' if buffer else 'no-buffer'}",
        "shape": "square-0.3" if shape.startswith("two-gpus") else shape,
        "gpus": 2 if shape.startswith("two-gpus") else 1,
        "counter": False,
        "buffer": buffer,
        "epochs": size["epochs"],
        "epoch_s": size["epoch_s"],
        "gap_s": size["gap_s"],
    }


def run(ctx: Any) -> dict[str, Any]:
    from bench.runner import Job, run_jobs

    size = SIZES[ctx.mode]
    cases = [case_params(shape, counter, size) for shape in SHAPES for counter in (True, False)]
    jobs = jobs_for(ctx, cases)
    table_size = TABLE_SIZES[ctx.mode]
    table_cases = [table_params(shape, buffer, table_size) for shape in TABLE_SHAPES for buffer in (True, False)]
    table_trackers = ctx.pick(TABLE_TRACKERS)
    if ctx.mode == "smoke":  # that it runs, not what it finds: one case, one tracker
        table_cases, table_trackers = table_cases[:1], table_trackers[-1:]
    run_s = table_size["epochs"] * table_size["epoch_s"]
    table_jobs = [
        Job("accuracy", {**case, "tracker": name}, fake_gpu_tools=True, timeout_s=run_s + 120)
        for case in table_cases
        for name in table_trackers
    ]
    results = run_jobs(jobs + table_jobs, parallel=ctx.parallel, progress=ctx.progress)
    return {
        "size": size,
        "cases": collect(jobs, results[: len(jobs)]),
        "table_size": table_size,
        "table": collect(table_jobs, results[len(jobs) :]),
    }


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else 0.5 * (ordered[middle - 1] + ordered[middle])


def table_cell(r: dict[str, Any] | None) -> str:
    """``median, worst`` |per-epoch error|, and whether our band held the truth in every epoch."""
    from bench.report import pct

    if r is None:
        return "–"
    if "error" in r:
        return "failed"
    errors = [abs(e) for e in r["epoch_errors"]]
    if not errors:
        return "no epochs"
    band = "" if "band_contains" not in r else (", band ✓" if all(r["band_contains"]) else ", band ✗")
    return f"{pct(_median(errors), 2, False)}, {pct(max(errors), 2, False)}{band}"


def table_markdown(result: dict[str, Any]) -> str:
    """The issue's table re-measured: rows are traces and drivers, columns the trackers."""
    from bench.report import table

    per_case = result.get("table") or {}
    names = [n for n in TABLE_TRACKERS if any(n in per for per in per_case.values())]
    rows = [[case, *[table_cell(per.get(n)) for n in names]] for case, per in per_case.items()]
    size = result["table_size"]
    head = (
        f"The issue's table: {size['epochs']} epochs of {size['epoch_s']:g} s on GPUs without an energy counter; "
        "`buffer`: the driver keeps power samples (every 20 ms, 10 ms windows), `no-buffer`: polled power only "
        "(the same driver's reading, refreshed every 20 ms). "
        "Per epoch: median, worst |error| against the exact integral; ✓ when our band held the truth in every "
        "epoch.\n\n"
    )
    return head + table(["trace / driver", *names], rows)


def cell(r: dict[str, Any] | None, what: str) -> str:
    """A table cell: mean and max |per-epoch error|, or the run total's error."""
    from bench.report import pct

    if r is None:
        return "–"
    if "error" in r:
        return "failed"
    if what == "total":
        return pct(r["total_error"], 2)
    missing = f", {r['missing_epochs']} epochs missing" if r["missing_epochs"] else ""
    return f"{pct(r['epoch_abs_mean'], 2, False)} ({pct(r['epoch_abs_max'], 2, False)}){missing}"


def markdown(result: dict[str, Any]) -> str:
    from bench.report import table

    cases = result["cases"]
    names = list(dict.fromkeys(n for per in cases.values() for n in per))
    epoch_rows, total_rows = [], []
    for case, per in cases.items():
        ours = per.get("ours", {})
        band = "–" if "band_contains" not in ours else ("yes" if all(ours["band_contains"]) else "NO")
        epoch_rows.append([case, *[cell(per.get(n), "epoch") for n in names], band])
        total_band = "–" if "total_band_contains" not in ours else ("yes" if ours["total_band_contains"] else "NO")
        total_rows.append([case, *[cell(per.get(n), "total") for n in names], total_band])
    size = result["size"]
    head = (
        f"{size['epochs']} epochs of {size['epoch_s']:g} s (the `gaps` case: {size['gap_s']:g} s idle at 60 W "
        "between them). Per epoch: mean |error| (max |error|) against the exact integral.\n\n"
    )
    epochs = table(["case", *names, "ours: band holds truth"], epoch_rows)
    totals = table(["case", *names, "ours: band holds truth"], total_rows)
    text = head + epochs + "\n\nRun total (from start to stop), error against the truth:\n\n" + totals
    return text + ("\n\n" + table_markdown(result) if result.get("table") else "")
