"""Writes the golden run sets that hold several grids and PUEs (``python tests/data/golden/make_runs.py``).

Each set is a directory of finished runs written by ``EnergyTracker`` with fake sensors of known power
on a fake clock; ``tests/test_golden.py`` renders their paper paragraphs. Written once and committed:
re-running it rewrites the runs (their timestamps change, their figures do not).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tracker import EnergyTracker
from tracker.testing import FakeClock, FakeSensor, steady

HERE = Path(__file__).parent
SETS = {
    # A grid per place: two runs in France, one in California, one on the world average, one the authors' own.
    "grids-mixed": [("fra-1", {"country": "FRA"}), ("fra-2", {"country": "FRA"}),
                    ("us-ca", {"region": "US-CA"}), ("world", {}), ("own", {"carbon_intensity_g_per_kwh": 120.0})],
    "grids-world": [(f"seed-{i}", {}) for i in range(4)],
    "pue-mixed": [("pue-1.1", {"country": "DEU", "pue": 1.1}), ("pue-1.5", {"country": "DEU", "pue": 1.5}),
                  ("pue-1.1-again", {"country": "DEU", "pue": 1.1})],
}  # fmt: skip


def make_run(log_dir: Path, name: str, options: dict) -> None:
    """Two epochs of 36 s at 250 W of GPU (counter) and 50 W of CPU (estimated)."""
    clock = FakeClock()
    sensors = [
        FakeSensor("gpu:0", "gpu", steady(250.0), clock, info={"name": "NVIDIA A100-SXM4-40GB"}),
        FakeSensor("cpu", "cpu", steady(50.0), clock, method="tdp_estimate",
                   info={"model": "Intel Xeon Gold 6248", "tdp_w": 150.0}),
    ]  # fmt: skip
    options = {"pue": 1.2, **options}
    with EnergyTracker(log_dir, run_name=name, epochs=2, sensors=sensors, clock=clock, **options) as energy:
        for i in range(2):
            with energy.epoch(i, samples=1000):
                clock.advance(36.0)
                energy.log_metrics({"loss": 1.0 / (i + 1)})


def main() -> None:
    os.environ["TZ"] = "UTC"  # no country from the time zone: the world average where none is given
    os.environ.pop("ENERGY_TRACKER_COUNTRY", None)
    for name, runs in SETS.items():
        shutil.rmtree(HERE / name, ignore_errors=True)
        for run, options in runs:
            make_run(HERE / name, run, options)


if __name__ == "__main__":
    main()
