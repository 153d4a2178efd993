"""Shared helpers of the reliability suite: trackers on a fake clock, rows, warnings counted."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tests.helpers import PATIENT
from tracker import EnergyTracker, load_run
from tracker.energy import J_PER_KWH
from tracker.testing import FakeClock

# No background thread: the test reads the sensors itself (advance()), so every reading is the test's own.
QUIET = {"sampling": "manual", **PATIENT}


def tracker_warnings(caplog: Any) -> list[logging.LogRecord]:
    """WARNING (and worse) records of the project's loggers (``tracker.*``, ``integrations.*``)."""
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.split(".")[0] in ("tracker", "integrations")
    ]


def quiet_tracker(log_dir: Path | None, clock: FakeClock, **options: Any) -> EnergyTracker:
    """An ``EnergyTracker`` on a fake clock whose ticks the test drives with :func:`advance`."""
    options.setdefault("carbon_intensity_g_per_kwh", 400.0)
    return EnergyTracker(log_dir, clock=clock, **{**QUIET, **options})


def advance(energy: EnergyTracker, clock: FakeClock, seconds: int, between: Any = None) -> None:
    """Advance the fake clock one second at a time, reading the sensors after each.

    Args:
        energy: the tracker that samples.
        clock: its clock.
        seconds: how many one-second ticks.
        between: called with the tick number (1-based) before each tick, to change the hardware.
    """
    for second in range(1, seconds + 1):
        clock.advance(1.0)
        if between is not None:
            between(second)
        energy.sample()


def epochs(energy: EnergyTracker) -> list[dict[str, Any]]:
    """The rows of the tracker's ``epochs.csv``, read back from disk."""
    return load_run(energy.run_dir).epochs


def devices(energy: EnergyTracker) -> list[dict[str, Any]]:
    """The rows of the tracker's ``devices.csv``, read back from disk."""
    return load_run(energy.run_dir).devices


def joules(kwh: float) -> float:
    """kWh to J."""
    return kwh * J_PER_KWH


def train_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``train`` rows only."""
    return [r for r in rows if r["phase"] == "train"]
