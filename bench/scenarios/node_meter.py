"""Accuracy of the node's own meter (the ACPI power meter through hwmon) on a fake sysfs tree of known energy.

``python -m bench.scenarios.node_meter``: for each load shape, averaging window and reading interval, a
tracker on a fake clock reads a :func:`~tracker.testing.build_hwmon_tree` meter (which reports the trace's
mean over its trailing window, as the driver does) through five 60 s epochs with 10 s between them, and
the rows' ``node_kwh`` is compared with the trace's exact integral: the largest per-epoch error and the
run's total error, signed, in %. A fake clock: the figures are the arithmetic's, not this machine's timing.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

from tracker.testing import PowerTrace, ramp, sine, square_wave, steady

LOADS: dict[str, Callable[[], PowerTrace]] = {
    "steady 400 W": lambda: steady(400.0),
    "square 300/700 W, 20 s": lambda: square_wave(300.0, 700.0, 20.0),
    "square 250/650 W, 7 s": lambda: square_wave(250.0, 650.0, 7.0),
    "square 300/700 W, 0.3 s": lambda: square_wave(300.0, 700.0, 0.3),
    "sine 450 ± 200 W, 13 s": lambda: sine(450.0, 200.0, 13.0),
    "ramp 200 -> 800 W over 400 s": lambda: ramp(200.0, 800.0, 400.0),
}
EPOCHS, EPOCH_S, GAP_S = 5, 60.0, 10.0


def errors_pct(trace: PowerTrace, window_ms: int, interval_s: float) -> tuple[float, float]:
    """The largest per-epoch |error| and the total's signed error of ``node_kwh``, in %."""
    from tracker import EnergyTracker, load_run
    from tracker.sensors.hwmon import find_power_meters
    from tracker.testing import FakeClock, FakeSensor, build_hwmon_tree

    clock = FakeClock()
    with tempfile.TemporaryDirectory() as tmp:
        tree = build_hwmon_tree(Path(tmp) / "hwmon", trace, clock=clock, average_interval_ms=window_ms)
        meters, _ = find_power_meters(root=tree.root, clock=clock)
        gpu = FakeSensor("gpu:0", "gpu", steady(100.0), clock)
        energy = EnergyTracker(Path(tmp) / "logs", sensors=[gpu, *meters], clock=clock, sampling="manual",
                               carbon_intensity_g_per_kwh=100.0, edge_deadline_s=2.0).start()  # fmt: skip
        spans = []
        for epoch in range(EPOCHS):
            _run(energy, clock, tree, GAP_S, interval_s)
            with energy.epoch(epoch):
                started = clock()
                _run(energy, clock, tree, EPOCH_S, interval_s)
                spans.append((started, clock()))
        energy.stop()
        rows = load_run(energy.run_dir).epochs
        train = [r for r in rows if r["phase"] == "train"]
        per_epoch = [100 * (r["node_kwh"] * 3.6e6 / tree.true_energy_j(*span) - 1)
                     for r, span in zip(train, spans, strict=True)]  # fmt: skip
        total = sum(r["node_kwh"] for r in rows) * 3.6e6
        return max(abs(e) for e in per_epoch), 100 * (total / tree.true_energy_j(tree.origin_s, clock()) - 1)


def _run(energy, clock, tree, seconds: float, interval_s: float) -> None:
    for _ in range(round(seconds / interval_s)):
        clock.advance(interval_s)
        tree.update()
        energy.sample()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    print("| load | window | read every | worst epoch error | total error |")
    print("| --- | --- | --- | --- | --- |")
    for name, load in LOADS.items():
        for window_ms, interval_s in ((1000, 1.0), (1000, 0.7), (5000, 1.0), (5000, 2.3)):
            worst, total = errors_pct(load(), window_ms, interval_s)
            print(f"| {name} | {window_ms / 1000:g} s | {interval_s:g} s | {worst:.3f} % | {total:+.3f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
