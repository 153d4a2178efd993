"""Live figures: ``report`` and ``watch`` on a run that another process writes while an epoch is open."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import PATIENT
from tracker import EnergyTracker, load_run
from tracker.report.render import render, summarize
from tracker.report.watch import watch
from tracker.testing import FakeClock, FakeSensor, steady

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tracker import EnergyTracker
    from tracker.testing import FakeSensor, steady

    log_dir, go = Path(sys.argv[1]), Path(sys.argv[2])
    sensors = [FakeSensor("gpu:0", "gpu", steady(300.0), info={"name": "Fake A100"}),
               FakeSensor("cpu", "cpu", steady(30.0), method="rapl")]
    with EnergyTracker(log_dir, run_name="live", sensors=sensors, interval_s=0.05,
                       carbon_intensity_g_per_kwh=400.0, total_steps=1000, row_every_n_steps=1000) as energy:
        with energy.epoch(0):
            while not go.exists():
                energy.step()
                time.sleep(0.01)
    """
)


def wait_for(predicate, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("the other process did not get there in time")
        time.sleep(0.05)


def _open_energy_kwh(run_dir: Path) -> float:
    return sum(row["energy_kwh"] or 0.0 for row in load_run(run_dir).open)


@pytest.fixture
def other_process(tmp_path: Path):
    go = tmp_path / "go"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "runs"), str(go)])
    run_dir = tmp_path / "runs" / "live"
    try:
        # a heartbeat written as the epoch opened holds 0 J so far: wait for one with time in the epoch
        wait_for(lambda: (run_dir / "heartbeat.json").exists() and _open_energy_kwh(run_dir) > 0)
        yield run_dir, go, child
    finally:
        go.touch()
        child.wait(timeout=60)


def test_report_on_a_running_run_shows_the_energy_so_far_and_what_is_measured(other_process) -> None:
    run_dir, _, _ = other_process
    run = load_run(run_dir)
    assert run.info["status"] == "running" and all(r["phase"] == "other" for r in run.epochs)
    (still,) = run.open
    assert (still["epoch"], still["phase"], still["status"]) == (0, "train", "running")
    assert still["energy_kwh"] > 0 and still["gpu_method"] == "energy_counter" and still["cpu_method"] == "rapl"
    summary = summarize(run)
    assert summary.totals.energy_kwh >= still["energy_kwh"] > 0
    assert summary.methods["gpu"] == "energy_counter" and summary.methods["cpu"] == "rapl"
    text = render([summary])
    assert "0 kWh" not in text and "not measured [absent]" not in text.split("RAM")[0]
    assert "still open, counted so far" in text


def test_watch_on_a_running_run_shows_the_open_epoch_so_far_and_ends_with_it(other_process) -> None:
    run_dir, go, _ = other_process
    out, polls = io.StringIO(), []

    def sleep(_: float) -> None:
        polls.append(out.getvalue())
        go.touch()  # the other process closes its epoch and stops
        time.sleep(0.2)

    status = watch(run_dir, out, interval_s=0.0, sleep=sleep)
    assert status == "complete"
    first = polls[0]
    assert "no row written yet" not in first and "the open row counted as it stands" in first
    assert "so far: 0 " not in first


def test_watch_waits_for_a_run_that_has_not_started(tmp_path: Path) -> None:
    clock, out = FakeClock(), io.StringIO()
    log_dir = tmp_path / "not-yet"

    def sleep(_: float) -> None:
        if not log_dir.exists():  # the training starts after the watcher
            sensors = [FakeSensor("gpu:0", "gpu", steady(300.0), clock)]
            with EnergyTracker(
                log_dir, sensors=sensors, clock=clock, carbon_intensity_g_per_kwh=400.0, **PATIENT
            ) as energy:
                with energy.epoch(0):
                    clock.advance(10.0)

    assert watch(log_dir, out, interval_s=0.0, sleep=sleep) == "complete"
    text = out.getvalue()
    assert text.startswith(f"waiting for a run to start writing in {log_dir}")
    assert text.count("waiting for a run") == 1 and "epoch 0" in text
