"""``energy-tracker watch`` against a run that another thread is writing."""

from __future__ import annotations

import io
import threading
from pathlib import Path

from tests.helpers import PATIENT
from tracker import EnergyTracker
from tracker.report.watch import CLEAR, watch
from tracker.testing import FakeClock, FakeSensor, steady


def train_in_a_thread(log_dir: Path, epochs: int, step: threading.Semaphore, done: threading.Event):
    """A run of ``epochs`` 10 s epochs at 300 W, one epoch each time the watcher releases ``step``."""
    clock = FakeClock()
    sensors = [FakeSensor("gpu:0", "gpu", steady(300.0), clock, info={"name": "A"})]
    energy = EnergyTracker(log_dir, run_name="live", sensors=sensors, clock=clock, epochs=epochs,
                           carbon_intensity_g_per_kwh=400.0, sampling="manual", **PATIENT)  # fmt: skip

    def train() -> None:
        with energy:
            for i in range(epochs):
                step.acquire()
                with energy.epoch(i):
                    clock.advance(10.0)
        done.set()

    return threading.Thread(target=train, name="training")


def test_watch_follows_rows_and_the_forecast_and_ends_with_the_run(tmp_path: Path) -> None:
    step, done, out = threading.Semaphore(0), threading.Event(), io.StringIO()
    trainer = train_in_a_thread(tmp_path, 3, step, done)
    trainer.start()
    polls = []

    def sleep(_: float) -> None:  # the watcher lets training go one epoch per refresh
        polls.append(out.getvalue())
        step.release()
        done.wait(timeout=0.2)

    try:
        for _ in range(1000):  # the run starts in the other thread
            if (tmp_path / "live" / "run.json").exists():
                break
            threading.Event().wait(0.01)
        status = watch(tmp_path, out, interval_s=0.0, sleep=sleep)
    finally:
        for _ in range(3):
            step.release()
        trainer.join(timeout=10)
    text = out.getvalue()
    assert status == "complete"
    assert [line.split()[:3] for line in text.splitlines() if line.startswith("  epoch")] == [
        ["epoch", "0", "train"],
        ["epoch", "1", "train"],
        ["epoch", "2", "train"],
    ]  # each row once, in order
    assert "forecast for the whole run: 2.50 Wh, 1.00 g CO2e" in text
    assert text.rstrip().endswith("(complete)") or "(complete)" in text.splitlines()[-2]
    assert len(polls) >= 2 and CLEAR not in text  # refreshed while the run was written; not a terminal


def test_watch_redraws_on_a_terminal(tmp_path: Path) -> None:
    step, done, out = threading.Semaphore(3), threading.Event(), io.StringIO()
    trainer = train_in_a_thread(tmp_path, 3, step, done)
    trainer.start()
    trainer.join(timeout=10)
    assert watch(tmp_path / "live", out, redraw=True, sleep=lambda _: None) == "complete"
    assert out.getvalue().startswith(CLEAR) and "epoch 2" in out.getvalue()


def finished_run(log_dir: Path, node: bool = True, **options) -> Path:
    """One hour-long epoch of a 300 W GPU (an H100, whose footprint is in the table), beside a 500 W node meter."""
    clock = FakeClock()
    sensors = [FakeSensor("gpu:0", "gpu", steady(300.0), clock, info={"name": "NVIDIA H100 80GB HBM3"})]
    sensors += [FakeSensor("node", "node", steady(500.0), clock)] if node else []
    with EnergyTracker(log_dir, run_name="done", sensors=sensors, clock=clock, carbon_intensity_g_per_kwh=400.0,
                       sampling="manual", **options, **PATIENT) as energy:  # fmt: skip
        with energy.epoch(0):
            clock.advance(3600.0)
    return energy.run_dir


def test_watch_shows_each_counted_term_on_a_line_labelled_and_none_when_off(tmp_path: Path) -> None:
    out = io.StringIO()
    assert watch(finished_run(tmp_path / "on", embodied=True, wue_l_per_kwh=0.5), out, sleep=lambda _: None)
    lines = out.getvalue().splitlines()
    assert (
        "  node meter: 500 Wh whole node [energy_counter], not added; 200 Wh (40.0 %) more than the components" in lines
    )
    (embodied,) = [line for line in lines if line.startswith("  embodied CO2e: ")]
    assert "estimated" in embodied and "not in the CO2e" in embodied
    assert any(line.startswith("  water (estimated): 150 mL (") for line in lines)  # 300 Wh at 0.5 L/kWh
    assert "on-site 0.5 L/kWh" in out.getvalue()
    off = io.StringIO()
    assert watch(finished_run(tmp_path / "off", node=False), off, sleep=lambda _: None) == "complete"
    assert "so far: 300 Wh" in off.getvalue()
    assert not [line for line in off.getvalue().splitlines() if line.startswith(("  node", "  embodied", "  water"))]
