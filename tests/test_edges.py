"""An epoch's edges are the instants control returns to the user's code and leaves it.

The fake clock moves only inside the tracker's own work (a slow sensor read, a slow row write), so any
of that work counted inside the epoch shows as energy beyond ``P × (time in the user's code)``.
"""

from __future__ import annotations

import pytest

from tests.helpers import PATIENT
from tracker import EnergyTracker, load_run
from tracker.energy import J_PER_KWH
from tracker.logs.writer import RunWriter
from tracker.testing import FakeSensor, steady

GPU_W, READ_S, WRITE_S, USER_S = 300.0, 0.01, 0.05, 5.0


def slow_read(clock):
    """A ``fail`` script that takes READ_S of the fake clock and fails nothing."""

    def script(call):
        clock.advance(READ_S)

    return script


def tracker(tmp_path, clock, **options):
    gpu = FakeSensor("gpu:0", trace=steady(GPU_W), clock=clock)
    cpu = FakeSensor("cpu", kind="cpu", trace=steady(50.0), clock=clock, method="rapl", fail=slow_read(clock))
    return EnergyTracker(
        tmp_path, sensors=[cpu, gpu], clock=clock, carbon_intensity_g_per_kwh=1.0, **options, **PATIENT
    )


def train_rows(energy):
    return [r for r in load_run(energy.run_dir).epochs if r["phase"] == "train"]


def test_the_gpu_is_read_last_on_entry_and_first_on_exit(tmp_path, clock):
    energy = tracker(tmp_path, clock)
    with energy:
        for epoch in range(2):
            with energy.epoch(epoch):
                clock.advance(USER_S)  # the user's code
    for row in train_rows(energy):
        assert row["gpu_kwh"] * J_PER_KWH == GPU_W * USER_S  # not a joule of the CPU's slow reads


def test_the_row_written_on_entry_is_not_counted_in_the_epoch(tmp_path, clock, monkeypatch):
    energy = tracker(tmp_path, clock)
    with energy:
        clock.advance(2.0)  # setup: an ``other`` row is due when the first epoch opens
        write = RunWriter.write_epoch

        def slow_write(*args, **kwargs):
            clock.advance(WRITE_S)
            return write(*args, **kwargs)

        monkeypatch.setattr(RunWriter, "write_epoch", slow_write)
        with energy.epoch(0):
            clock.advance(USER_S)
    rows = load_run(energy.run_dir).epochs
    (train,) = [r for r in rows if r["phase"] == "train"]
    assert train["gpu_kwh"] * J_PER_KWH == GPU_W * USER_S
    others_j = sum(r["gpu_kwh"] for r in rows if r["phase"] == "other") * J_PER_KWH
    # Every second of the run is in some row: the slow write's time went to ``other``.
    assert others_j + GPU_W * USER_S == pytest.approx(energy.summary().gpu_kwh * J_PER_KWH)
    assert others_j >= GPU_W * (2.0 + WRITE_S)
