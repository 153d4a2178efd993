"""Faults: an NVML outage, a hung sensor at the edges, and costs over 10,000 epochs (issue #12).

Each part runs in a fresh process (``bench.worker``), on the real monotonic clock:

- ``outage``: one fake GPU (square wave 50↔350 W at 0.3 s) whose NVML reads fail for 2 s in the
  middle of a 6 s epoch (``NVML_ERROR_UNKNOWN``, as under load or during Xid recovery). With the
  energy counter, the energy lost (goal 0 %); with polled power, the epoch's error and whether the
  truth is inside the row's band.
- ``hang``: a sensor whose read hangs for 10 s, first in ``start()``, then at an epoch edge; the
  wall time each call takes (goal ≤ 50 ms).
- ``growth``: 8 fake GPUs with counters, the sampler at 1 s, zero-length epochs back to back with a
  metric each and a new metric key every 500 epochs; per epoch (two edges, one row and its device
  rows written and synced) the median µs around epochs 10, 1,000 and 10,000, the slowest epoch
  that added a column, and the process's RSS at each checkpoint.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

OUTAGE_S, EPOCH_S = 2.0, 6.0
HANG_S = 10.0
CHECKPOINTS = {"smoke": [10, 50], "quick": [10, 1000, 2000], "full": [10, 1000, 10000]}
NEW_KEY_EVERY = 500
WINDOW = 10  # epochs timed around each checkpoint


def run(ctx: Any) -> dict[str, Any]:
    from bench.runner import Job, run_jobs

    jobs = [
        Job("faults", {"kind": "outage", "counter": True}),
        Job("faults", {"kind": "outage", "counter": False}),
        Job("faults", {"kind": "hang"}),
        Job("faults", {"kind": "growth", "checkpoints": CHECKPOINTS[ctx.mode]}, timeout_s=3600.0),
    ]
    results = run_jobs(jobs, parallel=1, progress=ctx.progress)
    return {"outage_counter": results[0], "outage_polling": results[1], "hang": results[2], "growth": results[3]}


def work(params: dict[str, Any]) -> dict[str, Any]:
    """One part, in the worker process."""
    return {"outage": _outage, "hang": _hang, "growth": _growth}[params["kind"]](params)


def _outage(params: dict[str, Any]) -> dict[str, Any]:
    from tracker import EnergyTracker, load_run
    from tracker.testing import FakeGpu, FakeNvml, square_wave

    counter = bool(params["counter"])
    nvml = FakeNvml([FakeGpu(trace=square_wave(50.0, 350.0, 0.3), has_counter=counter)])
    function = "nvmlDeviceGetTotalEnergyConsumption" if counter else "nvmlDeviceGetPowerUsage"
    edges = _record_edge_reads(nvml, function)
    with tempfile.TemporaryDirectory() as tmp:
        energy = EnergyTracker(tmp, nvml=nvml, measure=("gpu",), carbon_intensity_g_per_kwh=400.0)
        with energy:
            time.sleep(0.5)
            t0 = time.monotonic()
            with energy.epoch(0):
                time.sleep((EPOCH_S - OUTAGE_S) / 2)
                nvml.fail(function, nvml.NVML_ERROR_UNKNOWN)
                time.sleep(OUTAGE_S)
                nvml.clear_failures()
                time.sleep((EPOCH_S - OUTAGE_S) / 2)
            t1 = time.monotonic()
        (row,) = [r for r in load_run(energy.run_dir).epochs if r["phase"] == "train"]
    # The epoch's truth runs between its two edge readings (made on the edge thread, just after t0
    # and just before t1), which is what a perfect meter would book.
    opened = min(t for t in edges if t >= t0)
    closed = max(t for t in edges if t <= t1)
    true_kwh = nvml.true_energy_j(0, opened, closed) / 3_600_000
    return {
        "method": row["gpu_method"], "interval_s": energy.interval_s, "true_kwh": true_kwh,
        "measured_kwh": row["gpu_kwh"], "epoch_error": row["gpu_kwh"] / true_kwh - 1,
        "band": [row["energy_kwh_low"], row["energy_kwh_high"]],
        "band_contains": row["energy_kwh_low"] <= true_kwh <= row["energy_kwh_high"],
        "gap_s": row["gap_s"], "covered_fraction": row["covered_fraction"], "notes": row["notes"],
    }  # fmt: skip


def _record_edge_reads(nvml: Any, function: str) -> list[float]:
    """Wrap ``nvml.<function>``: the clock time of every successful call made on an edge thread."""
    real, times = getattr(nvml, function), []

    def call(*args: Any) -> Any:
        result = real(*args)
        if threading.current_thread().name == "energy-tracker.edge":
            times.append(nvml.clock())
        return result

    setattr(nvml, function, call)
    return times


class _Hanging:
    """A sensor (the :class:`~tracker.testing.FakeSensor` protocol) whose reads hang 10 s while ``hang`` is set."""

    def __init__(self) -> None:
        from tracker.testing import FakeSensor, steady

        self._inner = FakeSensor("gpu:0", "gpu", steady(300.0))
        self.name, self.kind, self.method, self.info = "gpu:0", "gpu", "energy_counter", {"name": "hanging"}
        self.hang = threading.Event()
        self.release = threading.Event()

    def read(self) -> Any:
        if self.hang.is_set():
            self.release.wait(HANG_S)
        return self._inner.read()

    def close(self) -> None:
        self.release.set()


def _hang(params: dict[str, Any]) -> dict[str, Any]:
    from tracker import EnergyTracker

    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sensor = _Hanging()
        energy = EnergyTracker(tmp, sensors=[sensor], interval_s=3600.0, carbon_intensity_g_per_kwh=400.0)
        sensor.hang.set()  # the first read, in start(), hangs
        times["start_ms"] = _ms(energy.start)
        sensor.release.set()  # that read returns (late); the sensor is now known slow: give it a fresh start
        energy.stop()
        sensor = _Hanging()
        energy = EnergyTracker(tmp, sensors=[sensor], interval_s=3600.0, carbon_intensity_g_per_kwh=400.0)
        times["healthy_start_ms"] = _ms(energy.start)
        context = energy.epoch(0)
        times["healthy_edge_ms"] = _ms(context.__enter__)
        sensor.hang.set()  # the hang strikes at the closing edge
        times["epoch_edge_ms"] = _ms(lambda: context.__exit__(None, None, None))
        sensor.release.set()
        energy.stop()
    return {**times, "hang_s": HANG_S}


def _ms(action: Any) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _growth(params: dict[str, Any]) -> dict[str, Any]:
    from tracker import EnergyTracker
    from tracker.testing import FakeGpu, FakeNvml, steady

    checkpoints = list(params["checkpoints"])
    nvml = FakeNvml([FakeGpu(trace=steady(300.0)) for _ in range(8)])
    per_epoch_us: list[float] = []
    new_key_us: list[tuple[int, float]] = []
    rss: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        energy = EnergyTracker(tmp, nvml=nvml, measure=("gpu",), carbon_intensity_g_per_kwh=400.0)
        with energy:
            for epoch in range(1, checkpoints[-1] + 1):
                key = f"metric_{epoch // NEW_KEY_EVERY}"
                started = time.perf_counter()
                with energy.epoch(epoch):
                    energy.log_metrics({"loss": 1.0 / epoch, key: float(epoch)})
                elapsed = (time.perf_counter() - started) * 1e6
                per_epoch_us.append(elapsed)
                if epoch % NEW_KEY_EVERY == 0:
                    new_key_us.append((epoch, elapsed))
                if epoch in checkpoints:
                    rss[epoch] = _rss_mib()
        size_mib = (Path(energy.run_dir) / "epochs.csv").stat().st_size / 2**20
    return {
        "edge_us": {c: statistics.median(per_epoch_us[max(0, c - WINDOW) : c]) for c in checkpoints},
        "rss_mib": rss,
        "new_key_us": new_key_us,
        "epochs_csv_mib": size_mib,
        "gpus": 8,
    }


def markdown(result: dict[str, Any]) -> str:
    from bench.report import table

    lines = []
    rows = []
    for name in ("outage_counter", "outage_polling"):
        r = result[name]
        if "error" in r:
            rows.append([name, f"error: {r['error']}", "", "", ""])
            continue
        band = f"{r['band'][0] / r['true_kwh'] - 1:+.1%} … {r['band'][1] / r['true_kwh'] - 1:+.1%}"
        rows.append([r["method"], f"{r['interval_s']:g} s", f"{r['epoch_error']:+.3%}", band,
                     "yes" if r["band_contains"] else "NO"])  # fmt: skip
    lines += [
        f"**NVML outage**: one fake GPU, square wave 50↔350 W at 0.3 s; its reads fail for {OUTAGE_S:g} s "
        f"in the middle of a {EPOCH_S:g} s epoch. Error of that epoch against the true energy:",
        "",
        table(["method", "interval", "epoch error", "band (vs truth)", "truth in band"], rows),
        "",
    ]
    h = result["hang"]
    if "start_ms" in h:
        lines += [
            f"**Hung sensor** (a read that blocks {h['hang_s']:g} s): `start()` took {h['start_ms']:.1f} ms with "
            f"the hang in its first read; an epoch edge {h['epoch_edge_ms']:.1f} ms with the hang at that edge "
            f"(healthy: start {h['healthy_start_ms']:.1f} ms, edge {h['healthy_edge_ms']:.2f} ms). Goal ≤ 50 ms.",
            "",
        ]
    g = result["growth"]
    if "edge_us" in g:
        head = ["", *[f"epoch {int(c):,}" for c in g["edge_us"]]]
        body = [
            ["µs per epoch (2 edges + row), median of 10", *[f"{v:,.0f}" for v in g["edge_us"].values()]],
            ["RSS, MiB", *[f"{v:.1f}" for v in g["rss_mib"].values()]],
        ]
        slowest = max(g["new_key_us"], key=lambda p: p[1], default=(0, 0.0))
        lines += [
            f"**Growth**: {g['gpus']} fake GPUs with counters, zero-length epochs back to back, a new metric key "
            f"every {NEW_KEY_EVERY} epochs (epochs.csv {g['epochs_csv_mib']:.1f} MiB at the end).",
            "",
            table(head, body),
            "",
            f"An epoch that adds a column (the header rewritten, the body copied as bytes): slowest "
            f"{slowest[1] / 1000:,.1f} ms, at epoch {slowest[0]:,}.",
        ]
    return "\n".join(lines)
