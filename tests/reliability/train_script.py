"""A tiny training loop under ``EnergyTracker``, for the kill and interrupt tests (run as a subprocess).

Usage: ``python train_script.py LOG_DIR [--epochs N] [--epoch-s S] [--no-tracker] [--state FILE [--first-epoch K]]``

``--state FILE`` checkpoints ``EnergyTracker.state()`` to FILE when measuring starts and after each
epoch, and resumes from FILE when it exists (a restarted job), from epoch ``--first-epoch``.

Prints ``begin K`` once epoch K is open and ``end K`` once its row is on disk, flushed, so that the
parent knows where a signal lands. Sensors are fakes on the real monotonic clock. Odd epochs hold a
``validation`` phase; a metric column appears at epoch 2, which rewrites the header.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for `tracker`

from tracker import EnergyTracker  # noqa: E402
from tracker.testing import FakeSensor, steady  # noqa: E402


class NoTracker:
    """What the loop does without the tracker, to compare exit statuses with."""

    def __enter__(self) -> NoTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def epoch(self, index: int) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    phase = epoch

    def log_metrics(self, metrics: dict) -> None:
        return None


def work(seconds: float) -> None:
    """A training step's worth of busy time, in small sleeps so that signals land in the user's code."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.002)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("log_dir")
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--epoch-s", type=float, default=0.05)
    parser.add_argument("--no-tracker", action="store_true")
    parser.add_argument("--state", type=Path)
    parser.add_argument("--first-epoch", type=int, default=0)
    args = parser.parse_args()
    sensors = [FakeSensor("gpu:0", "gpu", steady(250.0)), FakeSensor("cpu", "cpu", steady(25.0), method="rapl")]
    energy = (
        NoTracker()
        if args.no_tracker
        else EnergyTracker(
            args.log_dir, sensors=sensors, interval_s=0.01, carbon_intensity_g_per_kwh=300.0, epochs=args.epochs
        )
    )
    if args.state is not None and args.state.exists():
        energy.resume(json.loads(args.state.read_text()))
    with energy:
        checkpoint(energy, args.state)
        for epoch in range(args.first_epoch, args.epochs):
            with energy.epoch(epoch):
                print(f"begin {epoch}", flush=True)
                work(args.epoch_s)
                if epoch % 2:
                    with energy.phase("validation"):
                        work(args.epoch_s / 4)
                energy.log_metrics({"loss": 1.0 / (epoch + 1), **({"accuracy": 0.5} if epoch >= 2 else {})})
            checkpoint(energy, args.state)
            print(f"end {epoch}", flush=True)


def checkpoint(energy: EnergyTracker, path: Path | None) -> None:
    """Save the tracker's state as a training checkpoint would (written whole, then renamed)."""
    if path is not None:
        path.with_suffix(".tmp").write_text(json.dumps(energy.state()))
        os.replace(path.with_suffix(".tmp"), path)


if __name__ == "__main__":
    main()
