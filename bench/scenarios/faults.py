"""Faults: an NVML outage, a hung sensor at the edges, and costs over 10,000 epochs (issue #12).

Each part runs in a fresh process (``bench.worker``), on the real monotonic clock:

- ``outage``: one fake GPU (square wave 50↔350 W at 0.3 s) whose NVML reads fail for 2 s in the
  middle of a 6 s epoch (``NVML_ERROR_UNKNOWN``, as under load or during Xid recovery). With the
  energy counter, the energy lost (goal 0 %); with polled power, the epoch's error and whether the
  truth is inside the row's band.
- ``hang``: a sensor whose read hangs for 10 s, in ``start()`` and at an epoch's opening edge (then
  the closing edge while that read still hangs); the wall time of each call, without a log
  directory (the edges alone) and with one (each closing edge also writes and syncs its rows).
  Goal ≤ 50 ms.
- ``growth``: 8 fake GPUs with counters, the sampler at 1 s, zero-length epochs back to back with a
  metric each and a new metric key every 500 epochs; per epoch (two edges, one row and its device
  rows written and synced) the median µs of the epochs up to 10, 1,000 and 10,000, the slowest epoch
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
WINDOW = 100  # epochs timed before each checkpoint (fewer before the first)


def run(ctx: Any) -> dict[str, Any]:
    from bench.runner import Job, run_jobs

    jobs = [
        Job("faults", {"kind": "outage", "counter": True}),
        Job("faults", {"kind": "outage", "counter": False}),
        Job("faults", {"kind": "hang"}),
        Job("faults", {"kind": "growth", "checkpoints": CHECKPOINTS[ctx.mode], "write": True}, timeout_s=3600.0),
        Job("faults", {"kind": "growth", "checkpoints": CHECKPOINTS[ctx.mode], "write": False}, timeout_s=3600.0),
    ]
    results = run_jobs(jobs, parallel=1, progress=ctx.progress)
    names = ("outage_counter", "outage_polling", "hang", "growth", "growth_edges_only")
    return dict(zip(names, results, strict=True))


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
    with tempfile.TemporaryDirectory() as tmp:
        return {"no_log_dir": _hang_case(None), "log_dir": _hang_case(tmp), "hang_s": HANG_S}


def _hang_case(log_dir: str | None) -> dict[str, float]:
    """Milliseconds of start() and of epoch edges, healthy and with a read hung for 10 s."""
    from tracker import EnergyTracker

    def tracker(sensor: _Hanging) -> Any:
        return EnergyTracker(log_dir, sensors=[sensor], interval_s=3600.0, carbon_intensity_g_per_kwh=400.0)

    times: dict[str, float] = {}
    sensor = _Hanging()
    energy = tracker(sensor)
    times["start"] = _ms(energy.start)
    context = energy.epoch(0)
    times["open"] = _ms(context.__enter__)
    times["close"] = _ms(lambda: context.__exit__(None, None, None))
    sensor.hang.set()  # the next read hangs: the one at epoch 1's opening edge
    context = energy.epoch(1)
    times["hung_open"] = _ms(context.__enter__)
    times["close_while_hung"] = _ms(lambda: context.__exit__(None, None, None))
    sensor.release.set()
    energy.stop()
    sensor = _Hanging()
    sensor.hang.set()  # the first read, in start(), hangs
    energy = tracker(sensor)
    times["hung_start"] = _ms(energy.start)
    sensor.release.set()
    energy.stop()
    return times


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
        log_dir = tmp if params["write"] else None
        energy = EnergyTracker(log_dir, nvml=nvml, measure=("gpu",), carbon_intensity_g_per_kwh=400.0)
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
        size_mib = (Path(energy.run_dir) / "epochs.csv").stat().st_size / 2**20 if log_dir else 0.0
    return {
        "edge_us": {c: statistics.median(per_epoch_us[max(0, c - WINDOW) : c]) for c in checkpoints},
        "rss_mib": rss,
        "new_key_us": new_key_us,
        "epochs_csv_mib": size_mib,
        "gpus": 8,
    }


def _us(growth: dict[str, Any]) -> list[str]:
    return [f"{v:,.0f}" for v in growth["edge_us"].values()]


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
    if "log_dir" in h:
        keys = ["start", "hung_start", "open", "hung_open", "close", "close_while_hung"]
        names = ["start()", "start(), first read hung", "epoch opens", "epoch opens, read hung",
                 "epoch closes", "epoch closes, read still hung"]  # fmt: skip
        body = [[n, f"{h['no_log_dir'][k]:.1f}", f"{h['log_dir'][k]:.1f}"] for n, k in zip(names, keys, strict=True)]
        lines += [
            f"**Hung sensor** (its read blocks {h['hang_s']:g} s), wall ms of each call. Goal ≤ 50 ms:",
            "",
            table(["call", "log_dir=None", "with a log_dir (rows synced)"], body),
            "",
        ]
    g, bare = result["growth"], result.get("growth_edges_only") or {}
    if "edge_us" in g:
        head = ["", *[f"epoch {int(c):,}" for c in g["edge_us"]]]
        body = [
            [f"µs per epoch, rows written and synced (median of {WINDOW})", *_us(g)],
            ["RSS, MiB, rows written", *[f"{v:.1f}" for v in g["rss_mib"].values()]],
        ]
        if "edge_us" in bare:
            body += [
                ["µs per epoch, log_dir=None: the 2 edges alone", *_us(bare)],
                ["RSS, MiB, log_dir=None", *[f"{v:.1f}" for v in bare["rss_mib"].values()]],
            ]
        slowest = max(g["new_key_us"], key=lambda p: p[1], default=(0, 0.0))
        lines += [
            f"**Growth**: {g['gpus']} fake GPUs with counters, zero-length epochs back to back, a metric each and a "
            f"new metric key every {NEW_KEY_EVERY} epochs (epochs.csv {g['epochs_csv_mib']:.1f} MiB at the end).",
            "",
            table(head, body),
            "",
            f"An epoch that adds a column (the header rewritten, the body copied as bytes): slowest "
            f"{slowest[1] / 1000:,.1f} ms, at epoch {slowest[0]:,}.",
        ]
    return "\n".join(lines)
