"""A killed run is recovered, not left ``running`` (issue #12, defect 7).

SIGTERM (what SLURM, ``docker stop`` and Kubernetes send) and SIGKILL end ``train_script.py``
mid-epoch with no handler of ours; ``heartbeat.json`` holds the open epoch's energy up to a
couple of seconds before, and the reader, finding the process gone, shows the run as ``killed``
with that epoch as an ``interrupted`` row. Under Lightning, its own SIGTERM handling reaches
``EnergyCallback.on_exception``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.reliability.test_kills import launch, printed, run_dir_of, wait_for_line
from tracker import cli, load_run, load_runs
from tracker.energy import J_PER_KWH
from tracker.logs import liveness
from tracker.report import render as report
from tracker.testing import FakeClock

GPU_W, CPU_W = 250.0, 25.0  # train_script.py's fake sensors


def wait_for_heartbeat_inside(run_dir: Path, epoch: int, timeout_s: float = 30.0) -> dict:
    """The first heartbeat that shows ``epoch`` open for 1 s or more."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            beat = json.loads((run_dir / liveness.HEARTBEAT_JSON).read_text())
        except (OSError, ValueError):
            beat = {}
        if any(r["epoch"] == epoch and r["phase"] == "train" and r["duration_s"] >= 1.0 for r in beat.get("open", [])):
            return beat
        time.sleep(0.05)
    raise AssertionError(f"no heartbeat showed epoch {epoch} open")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_run_killed_mid_epoch_reads_back_as_killed_with_the_epoch_so_far(tmp_path, sig, capsys):
    process = launch(tmp_path, "--epoch-s", "60")
    lines = wait_for_line(process, "begin 0")
    run_dir = run_dir_of(tmp_path, process)
    beat = wait_for_heartbeat_inside(run_dir, 0)
    process.send_signal(sig)
    process.communicate(timeout=60)
    assert process.returncode == -sig  # no handler of ours: the process ends as it would without us
    assert printed(lines, "end") == []
    run = load_run(run_dir)
    assert run.info["status"] == "killed"
    (row,) = [r for r in run.epochs if r["phase"] == "train"]
    assert (row["epoch"], row["status"]) == (0, "interrupted")
    (open_row,) = [r for r in beat["open"] if r["phase"] == "train"]
    assert row["energy_kwh"] >= open_row["energy_kwh"] > 0  # at least what the heartbeat we saw held
    # Steady fakes: the energy so far is the duration so far times their power (the readings lag the
    # heartbeat's clock by up to an interval and the scheduling delays of a loaded machine).
    assert row["energy_kwh"] * J_PER_KWH == pytest.approx((GPU_W + CPU_W) * row["duration_s"], rel=0.1)
    assert cli.main(["report", str(tmp_path)]) == 0
    assert "killed" in capsys.readouterr().out


READ_BACK = """
import sys
from tracker import load_run
run = load_run(sys.argv[1])
print(sum(r["status"] == "interrupted" for r in run.epochs))
"""


def test_the_first_reader_writes_the_killed_epoch_back_once_and_every_reader_agrees(tmp_path):
    process = launch(tmp_path, "--epoch-s", "60")
    wait_for_line(process, "begin 0")
    run_dir = run_dir_of(tmp_path, process)
    wait_for_heartbeat_inside(run_dir, 0)
    process.kill()
    process.communicate(timeout=60)
    assert not (run_dir / "epochs.csv").exists()  # killed in its first epoch: no row yet
    # Four readers at once, in processes of their own: one writes the row back, none twice.
    readers = [subprocess.Popen([sys.executable, "-c", READ_BACK, str(run_dir)], stdout=subprocess.PIPE, text=True)
               for _ in range(4)]  # fmt: skip
    assert [int(r.communicate(timeout=60)[0]) for r in readers] == [1, 1, 1, 1]
    table = pd.read_csv(run_dir / "epochs.csv")  # what the README recommends now holds it, with its band
    (row,) = table[table["status"] == "interrupted"].to_dict("records")
    assert row["epoch"] == 0 and "heartbeat" in row["notes"]
    assert 0 < row["energy_kwh_low"] <= row["energy_kwh"] <= row["energy_kwh_high"]
    assert not (run_dir / liveness.HEARTBEAT_JSON).exists()
    run = load_run(run_dir)
    assert run.info["status"] == "killed" and len(run.epochs) == len(table)
    (summary,) = report.load_summaries([str(run_dir)])
    assert summary.totals.energy_kwh_low == pytest.approx(table["energy_kwh_low"].sum(), rel=1e-12)
    assert summary.totals.energy_kwh_high == pytest.approx(table["energy_kwh_high"].sum(), rel=1e-12)


def test_a_running_run_whose_process_lives_stays_running(tmp_path):
    process = launch(tmp_path, "--epoch-s", "60")
    try:
        wait_for_line(process, "begin 0")
        run_dir = run_dir_of(tmp_path, process)
        wait_for_heartbeat_inside(run_dir, 0)
        run = load_run(run_dir)
        assert run.info["status"] == "running" and all(r["status"] == "complete" for r in run.epochs)
    finally:
        process.kill()
        process.communicate(timeout=60)


def test_a_reused_pid_or_a_silent_other_host_means_gone():
    me = liveness.this_process()
    assert not liveness.is_gone(me, None)
    if me["start_ticks"] is not None:  # Linux: the same pid started at another time is another process
        assert liveness.is_gone({**me, "start_ticks": me["start_ticks"] + 1}, None)
    elsewhere = {**me, "host": me["host"] + "-elsewhere"}
    clock = FakeClock()
    observer = liveness.Observer(clock)
    old = {"seq": 7, "time_utc": "2000-01-01T00:00:00+00:00"}  # its clock is not compared with ours
    assert not liveness.is_gone(elsewhere, old, observer)
    clock.advance(liveness.STALE_HEARTBEAT_S)
    assert liveness.is_gone(elsewhere, old, observer)  # it stood still as long as we watched
    assert not liveness.is_gone(elsewhere, {**old, "seq": 8}, observer)  # it beat again


def test_a_run_killed_before_its_first_heartbeat_is_killed_from_run_json(tmp_path):
    process = launch(tmp_path, "--epoch-s", "60")
    wait_for_line(process, "begin 0")
    process.kill()
    process.communicate(timeout=60)
    run_dir = run_dir_of(tmp_path, process)
    (run_dir / liveness.HEARTBEAT_JSON).unlink(missing_ok=True)
    assert load_runs(tmp_path)[0].info["status"] == "killed"


LIGHTNING_SIGTERM = """
import os, signal, sys, time
sys.path.insert(0, {repo!r})
import lightning.pytorch as pl
from lightning.pytorch.demos.boring_classes import BoringModel
from integrations.lightning import EnergyCallback
from tracker.testing import FakeSensor, steady

class Terminated(BoringModel):
    def training_step(self, batch, batch_idx):
        if self.current_epoch == 1 and batch_idx == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # as SLURM's scancel would
        return super().training_step(batch, batch_idx)

callback = EnergyCallback(log_dir={log_dir!r}, sensors=[FakeSensor("gpu:0", "gpu", steady(200.0))], interval_s=0.01,
                          carbon_intensity_g_per_kwh=300.0)
trainer = pl.Trainer(max_epochs=3, limit_train_batches=4, limit_val_batches=0, accelerator="cpu", devices=1,
                     logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     callbacks=[callback])
trainer.fit(Terminated())
"""


def test_lightning_sigterm_writes_the_interrupted_epoch_through_its_own_handling(tmp_path):
    pytest.importorskip("lightning")
    before = signal.getsignal(signal.SIGTERM)
    script = LIGHTNING_SIGTERM.format(repo=str(Path(__file__).resolve().parents[2]), log_dir=str(tmp_path / "energy"))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    # Lightning (2.x) runs the epoch's batches to the end, then raises SIGTERMException (a SystemExit
    # without a code) before the epoch-end hooks: EnergyCallback.on_exception writes the epoch as interrupted.
    assert "Received SIGTERM" in done.stderr and done.returncode == 0
    (run,) = load_runs(tmp_path / "energy")
    train = [(r["epoch"], r["status"]) for r in run.epochs if r["phase"] == "train"]
    assert train == [(0, "complete"), (1, "interrupted")], done.stderr[-2000:]
    assert run.info["status"] == "interrupted"  # not "running": the run was stopped, and says it did not finish
    assert signal.getsignal(signal.SIGTERM) is before  # and this process's handlers are untouched
