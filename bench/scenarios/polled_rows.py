"""Per-row accuracy of polled GPU power (no energy counter, no sample buffer) on a fake clock.

``python -m bench.scenarios.polled_rows [--seeds N]``: one fake GPU whose driver refreshes its power reading
as a Pascal card does (every 20 ms, each refresh the mean of the 10 ms before it, anywhere in its slot; Yang
et al., docs/measurement.md §1.2), polled in its fast lane as a tracker polls it; epochs of 1, 2, 3 and 10 s
with 0.5 s idle at 60 W between them, the load inside each epoch a 50↔350 W square wave at 0.3 s (at a
different phase in each epoch) or a steady 350 W (every edge a 290 W step). Each row's ``gpu_kwh`` is
compared with the trace's exact integral between the epoch's edges: mean |error|, worst |error|, mean signed
error (the bias) and the rows whose band missed the truth, over 8 epochs × ``--seeds`` runs. A fake clock:
the figures are the arithmetic's and the driver's, not this machine's timing. To compare with an older tree:
``PYTHONPATH=<its checkout> python -m bench.scenarios.polled_rows``.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path
from typing import Any

from tracker.testing import PowerTrace, square_wave, steady

DRIVER = {"power_update_s": 0.02, "power_window_s": 0.01, "sample_jitter_s": 0.02}  # bench.scenarios.accuracy's
IDLE_W, GAP_S, EPOCHS, PERIOD_S = 60.0, 0.5, 8, 0.3
LENGTHS = (1.0, 2.0, 3.0, 10.0)


def _layout(load: str, epoch_s: float, seed: int) -> PowerTrace:
    """Idle until 1 s, then ``EPOCHS`` epochs of ``load`` with idle gaps; the square wave's phase differs per epoch."""
    from bench.traces import compose

    segments, t, rng = [(0.0, steady(IDLE_W))], 1.0, random.Random(seed)
    for _ in range(EPOCHS):
        segments += [(t, steady(350.0) if load == "steady" else _phased(rng.random() * PERIOD_S)),
                     (t + epoch_s, steady(IDLE_W))]  # fmt: skip
        t += epoch_s + GAP_S
    return compose(segments)


def _phased(offset_s: float) -> PowerTrace:
    wave, before_j = square_wave(50.0, 350.0, PERIOD_S), square_wave(50.0, 350.0, PERIOD_S).energy_j(offset_s)
    return PowerTrace(lambda t: wave.power_w(t + offset_s), lambda t: wave.energy_j(t + offset_s) - before_j)


def _lanes(energy: Any, clock: Any, seconds: float, rng: random.Random) -> None:
    """Read each lane once per slot of its own at a random moment of the slot, as the samplers do."""
    start, events = clock(), []
    for order, (h, names) in enumerate(energy.sampling.lanes):
        events += [(start + (k + rng.random()) * h, order, names) for k in range(round(seconds / h))]
    for when, _, names in sorted(events, key=lambda e: e[:2]):
        clock.advance(max(0.0, when - clock()))
        energy.sample(names)
    clock.advance(max(0.0, start + seconds - clock()))


def row_errors(load: str, epoch_s: float, seed: int) -> list[tuple[float, bool]]:
    """Each epoch's signed relative error of ``gpu_kwh`` and whether its band held the truth."""
    from tracker import EnergyTracker, load_run
    from tracker.testing import FakeClock, FakeGpu, FakeNvml

    clock = FakeClock()
    nvml = FakeNvml([FakeGpu(trace=_layout(load, epoch_s, seed), has_counter=False, **DRIVER)], clock=clock)
    rng, spans = random.Random(seed), []
    with tempfile.TemporaryDirectory() as tmp:
        energy = EnergyTracker(Path(tmp), nvml=nvml, measure=("gpu",), clock=clock, sampling="manual",
                               carbon_intensity_g_per_kwh=100.0, edge_deadline_s=2.0)  # fmt: skip
        with energy:
            _lanes(energy, clock, 1.0, rng)
            for epoch in range(EPOCHS):
                start = clock()
                with energy.epoch(epoch):
                    _lanes(energy, clock, epoch_s, rng)
                spans.append((start, clock()))
                _lanes(energy, clock, GAP_S, rng)
        rows = [r for r in load_run(energy.run_dir).epochs if r["phase"] == "train"]
    result = []
    for row, span in zip(rows, spans, strict=True):
        truth = nvml.true_energy_j(0, *span) / 3.6e6
        result.append((row["gpu_kwh"] / truth - 1, row["energy_kwh_low"] <= truth <= row["energy_kwh_high"]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6, help="runs of 8 epochs per case (default 6)")
    seeds = parser.parse_args().seeds
    print("| load in epochs | epoch | mean abs error | worst | mean signed | band missed |")
    print("| --- | --- | --- | --- | --- | --- |")
    for load, shape in (("square 50/350 W, 0.3 s", "square"), ("steady 350 W", "steady")):
        for epoch_s in LENGTHS:
            found = [r for seed in range(seeds) for r in row_errors(shape, epoch_s, seed)]
            errors = [e for e, _ in found]
            print(f"| {load} | {epoch_s:g} s | {100 * sum(map(abs, errors)) / len(errors):.2f} % | "
                  f"{100 * max(map(abs, errors)):.2f} % | {100 * sum(errors) / len(errors):+.2f} % | "
                  f"{sum(not ok for _, ok in found)} of {len(found)} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
