"""Our own costs, measured directly: one tick per sensor kind, epoch boundaries, memory over many readings.

``ticks``: for each sensor kind, the cost of ``sensor.read()`` and of one ``Sampler.tick()`` whose
sink folds the readings into a ``Meter`` under a lock (what the session does), in µs. NVML is the
fake one (its own cost per call is reported beside, to be subtracted for a real driver), RAPL a
fake powercap tree on disk, the CPU estimate and the RAM model are this machine's. Also: one epoch
opened and closed on this machine's sensors, with and without writing the logs.

``memory``: ``Sampler.tick()`` driven by hand with a :class:`~tracker.testing.FakeClock` and a
:class:`~tracker.testing.FakeSensor` (counter, or power only), the readings folded into a ``Meter``:
growth of the resident set from the first tenth of the readings to the last must stay ≤ 2 MB.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SIZES = {
    "smoke": {"readings": 10_000, "calls": 200, "epochs": 10},
    "quick": {"readings": 200_000, "calls": 2_000, "epochs": 50},
    "full": {"readings": 1_000_000, "calls": 10_000, "epochs": 200},
}


def per_call_us(call: Callable[[], Any], calls: int, batches: int = 5) -> float:
    """Median over batches of the mean time per call, µs."""
    call()
    means = []
    for _ in range(batches):
        t0 = time.perf_counter()
        for _ in range(calls):
            call()
        means.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(means)


def _sensors(tmp: Path) -> dict[str, Any]:
    from tracker.sensors import cpu_estimate, nvml, ram, rapl
    from tracker.testing import FakeGpu, FakeNvml, build_powercap_tree

    counter = nvml.find_gpus(nvml=FakeNvml([FakeGpu(has_counter=True)]), visible_devices=None)[0][0]
    polling = nvml.find_gpus(nvml=FakeNvml([FakeGpu(has_counter=False)]), visible_devices=None)[0][0]
    zones, _ = rapl.find_rapl(root=build_powercap_tree(tmp / "powercap").root)
    package = next(s for s in zones if s.kind == "cpu")
    dram = next(s for s in zones if s.kind == "ram")
    return {
        "nvml counter (fake NVML)": counter,
        "nvml polling (fake NVML)": polling,
        "rapl package (fake powercap)": package,
        "rapl dram (fake powercap)": dram,
        "cpu estimate (psutil)": cpu_estimate.CpuEstimateSensor(),
        "ram model": ram.RamModelSensor(),
    }


def _meter_sampler(sensors: list[Any], interval_s: float = 1.0, clock: Any = time.monotonic) -> Any:
    from tracker.measure.meter import Meter
    from tracker.measure.sampler import Sampler

    meter, lock = Meter(interval_s), threading.Lock()

    def sink(readings: list[Any]) -> None:
        with lock:
            meter.add_all(readings)

    return Sampler(sensors, sink, interval_s=interval_s, clock=clock)


def _ticks(calls: int, epochs: int) -> dict[str, Any]:
    from tracker.testing import FakeNvml

    with tempfile.TemporaryDirectory() as tmp:
        sensors = _sensors(Path(tmp))
        kinds = {
            name: {"read_us": per_call_us(s.read, calls), "tick_us": per_call_us(_meter_sampler([s]).tick, calls)}
            for name, s in sensors.items()
        }
        machine = [sensors["cpu estimate (psutil)"], sensors["ram model"]]
        kinds["this machine (cpu estimate + ram model)"] = {
            "read_us": None,
            "tick_us": per_call_us(_meter_sampler(machine).tick, calls),
        }
        for s in sensors.values():
            s.close()
        fake = FakeNvml(1)
        fake.nvmlInit()
        handle = fake.nvmlDeviceGetHandleByIndex(0)
        fake_call = per_call_us(lambda: fake.nvmlDeviceGetPowerUsage(handle), calls)
        epoch = _epoch_cost(Path(tmp), epochs)
        lane = _lane_cpu()
        return {
            "kinds": kinds, "fake_nvml_call_us": fake_call, "epoch": epoch, "stop_ms": _stop_ms(Path(tmp)),
            "lane_cpu": lane,
        }  # fmt: skip


def _lane_cpu(seconds: float = 3.0) -> dict[str, float]:
    """Share of one core (%) taken by a polled GPU's fast lane (its thread, the fake NVML read, the meter), by rate.

    0.01 s is the floor a 20 ms driver refresh calls for, 0.05 s the ceiling (the lane before it followed the driver).
    """
    from tracker.sensors import nvml
    from tracker.testing import FakeGpu, FakeNvml, sine

    shares = {}
    for interval_s in (0.01, 0.02, 0.05):
        gpu = FakeGpu(trace=sine(200.0, 100.0, 1.3), has_counter=False)
        (sensor,), _ = nvml.find_gpus(nvml=FakeNvml([gpu]), visible_devices=None)
        sampler = _meter_sampler([sensor], interval_s=interval_s)
        sampler.start()
        cpu, wall = time.process_time(), time.perf_counter()
        threading.Event().wait(seconds)
        shares[f"{interval_s:g}"] = 100 * (time.process_time() - cpu) / (time.perf_counter() - wall)
        sampler.stop()
        sensor.close()
    return shares


def _stop_ms(tmp: Path, interval_s: float = 0.01, repeats: int = 5) -> dict[str, float]:
    """Ms of ``stop()`` (the sampler's thread joined, run.json written), 8 fake GPUs read every 10 ms, no epoch open."""
    from tracker import EnergyTracker
    from tracker.testing import FakeGpu, FakeNvml, steady

    took = []
    for i in range(repeats):
        nvml = FakeNvml([FakeGpu(trace=steady(100.0 + 10 * g)) for g in range(8)])
        energy = EnergyTracker(tmp / f"stop-{i}", nvml=nvml, measure=("gpu",), interval_s=interval_s, country="DEU")
        energy.start()
        while energy.sampling.ticks < 30:
            threading.Event().wait(interval_s)
        t0 = time.perf_counter()
        energy.stop()
        took.append((time.perf_counter() - t0) * 1e3)
    return {"interval_ms": interval_s * 1e3, "median_ms": statistics.median(took), "max_ms": max(took)}


def _epoch_cost(tmp: Path, epochs: int) -> dict[str, float]:
    """µs to open and close one epoch on this machine's sensors, writing logs or not."""
    from tracker import EnergyTracker

    cost = {}
    for label, log_dir in (("with_logs_us", tmp / "logs"), ("no_logs_us", None)):
        tracker = EnergyTracker(log_dir=log_dir, country="DEU", interval_s=1.0).start()
        t0 = time.perf_counter()
        for i in range(epochs):
            tracker.begin_epoch(i)
            tracker.end()
        cost[label] = (time.perf_counter() - t0) / epochs * 1e6
        tracker.stop()
    return cost


def _memory(readings: int, method: str) -> dict[str, Any]:
    from bench import audit
    from tracker.testing import FakeClock, FakeSensor, square_wave

    clock = FakeClock()
    sensor = FakeSensor(trace=square_wave(50.0, 350.0, 0.3), clock=clock, method=method)
    sampler = _meter_sampler([sensor], interval_s=0.1, clock=clock)
    warm = readings // 10
    t0 = time.perf_counter()
    for i in range(readings):
        if i == warm:
            rss_warm = audit.rss_bytes()
        clock.advance(0.1)
        sampler.tick()
    elapsed = time.perf_counter() - t0
    return {
        "readings": readings,
        "method": method,
        "rss_after_warmup_mib": rss_warm / 2**20,
        "growth_bytes": audit.rss_bytes() - rss_warm,
        "us_per_tick": elapsed / readings * 1e6,
    }


def work(params: dict[str, Any]) -> dict[str, Any]:
    if params["kind"] == "ticks":
        return _ticks(params["calls"], params["epochs"])
    return _memory(params["readings"], params["method"])


def run(ctx: Any) -> dict[str, Any]:
    from bench.runner import Job, run_jobs

    size = SIZES[ctx.mode]
    memory = [
        Job("micro", {"kind": "memory", "readings": size["readings"], "method": m}, timeout_s=600)
        for m in ("energy_counter", "power_polling")
    ]
    growth = run_jobs(memory, parallel=2, progress=ctx.progress)
    ticks = run_jobs([Job("micro", {"kind": "ticks", **size}, timeout_s=300)], progress=ctx.progress)[0]
    return {"size": size, "ticks": ticks, "memory": growth}


def markdown(result: dict[str, Any]) -> str:
    from bench.report import table

    ticks = result["ticks"]
    if "error" in ticks:
        tick_md = f"tick benchmark failed: {ticks['error']}"
    else:
        rows = [
            [name, "–" if k["read_us"] is None else f"{k['read_us']:.1f}", f"{k['tick_us']:.1f}"]
            for name, k in ticks["kinds"].items()
        ]
        tick_md = table(["sensor", "read µs", "tick µs (sampler + meter)"], rows)
        epoch = ticks["epoch"]
        tick_md += (
            f"\n\nThe fake NVML itself costs {ticks['fake_nvml_call_us']:.1f} µs per call (counter path: two "
            f"calls per read). One epoch opened and closed on this machine's sensors: "
            f"{epoch['with_logs_us']:.0f} µs writing the logs, {epoch['no_logs_us']:.0f} µs with `log_dir=None`."
        )
        lane = ticks.get("lane_cpu")
        if lane:
            shares = ", ".join(f"{share:.2f} % every {rate} s" for rate, share in lane.items())
            tick_md += f" A polled GPU's fast lane takes {shares} of one core (the fake NVML's cost included)."
        stop = ticks.get("stop_ms")
        if stop:
            tick_md += (
                f" A tracker's `stop()` with 8 fake GPUs read every {stop['interval_ms']:g} ms (its sampler's thread "
                f"joined, run.json written) takes {stop['median_ms']:.2f} ms (median; worst {stop['max_ms']:.2f} ms)."
            )
    rows = [
        [
            m.get("method", "?"),
            f"{m.get('readings', 0):,}",
            "failed" if "error" in m else f"{m['growth_bytes'] / 1e6:+.3f}",
            "–" if "error" in m else f"{m['us_per_tick']:.1f}",
        ]
        for m in result["memory"]
    ]
    mem_md = table(["FakeSensor", "readings", "RSS growth MB (goal ≤ 2)", "µs per tick"], rows)
    return tick_md + "\n\nMemory, `Sampler.tick()` + `Meter` driven by hand:\n\n" + mem_md
