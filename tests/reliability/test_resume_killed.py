"""Resuming a run whose process was SIGKILLed mid-epoch keeps the killed epoch's energy (issue #20, item 6).

``train_script.py`` checkpoints ``EnergyTracker.state()`` and is killed (SIGKILL: no handler, no
cleanup) a second or more into epoch 0; its ``heartbeat.json`` holds that epoch's energy so far. The
job restarts from the checkpoint: before the new process writes anything, the dead run's open epoch
is written back as an ``interrupted`` row (the same rows the reader recovers for a killed run), once,
and the new process appends after it. bf1c16a overwrote the heartbeat and lost the epoch.
"""

from __future__ import annotations

import pytest

from tests.reliability.test_killed_runs import CPU_W, GPU_W, wait_for_heartbeat_inside
from tests.reliability.test_kills import launch, printed, run_dir_of, wait_for_line, whole_csv
from tracker import load_run
from tracker.energy import J_PER_KWH
from tracker.logs import liveness

pytestmark = pytest.mark.slow


def test_resuming_a_sigkilled_run_keeps_the_killed_epochs_energy(tmp_path):
    state = tmp_path / "state.json"
    killed = launch(tmp_path / "energy", "--epoch-s", "60", "--state", str(state))
    wait_for_line(killed, "begin 0")
    run_dir = run_dir_of(tmp_path / "energy", killed)
    beat = wait_for_heartbeat_inside(run_dir, 0)
    killed.kill()
    killed.communicate(timeout=60)
    (seen,) = [r for r in beat["open"] if r["phase"] == "train"]

    resumed = launch(tmp_path / "energy", "--epochs", "2", "--epoch-s", "0.05", "--state", str(state))
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0 and printed(out.split("\n"), "end") == [0, 1], err
    assert [p.name for p in (tmp_path / "energy").iterdir()] == [run_dir.name]  # the same run directory

    run = load_run(run_dir)
    train = [(r["epoch"], r["status"]) for r in run.epochs if r["phase"] == "train"]
    assert train == [(0, "interrupted"), (0, "complete"), (1, "complete")]  # bf1c16a: the killed epoch 0 missing
    (recovered,) = [r for r in run.epochs if r["status"] == "interrupted"]
    assert "killed" in recovered["notes"] and "heartbeat" in recovered["notes"]
    assert recovered["energy_kwh"] >= seen["energy_kwh"] > 0  # at least what the heartbeat we saw held
    # steady fakes: the recovered energy is their power over the seconds the heartbeat covered
    assert recovered["energy_kwh"] * J_PER_KWH == pytest.approx((GPU_W + CPU_W) * recovered["duration_s"], rel=0.1)
    assert recovered["energy_kwh"] * J_PER_KWH > (GPU_W + CPU_W) * 0.9  # a second or more of 275 W
    # the run's total holds it: every row's energy, the killed epoch's included, is the fakes' power over its time
    total_j = sum(r["energy_kwh"] for r in run.epochs) * J_PER_KWH
    assert total_j == pytest.approx((GPU_W + CPU_W) * sum(r["duration_s"] for r in run.epochs), rel=0.1)
    assert run.epochs[-1]["cumulative_energy_kwh"] == pytest.approx(total_j / J_PER_KWH, rel=1e-6)
    assert run.info["status"] == "complete"
    # written once: on disk (not only recovered by the reader), and the dead run's heartbeat is gone
    assert (whole_csv(run_dir / "epochs.csv")["status"] == "interrupted").sum() == 1
    assert not (run_dir / liveness.HEARTBEAT_JSON).exists()


def test_a_second_resume_recovers_nothing_twice(tmp_path):
    state = tmp_path / "state.json"
    first = launch(tmp_path / "energy", "--epoch-s", "60", "--state", str(state))
    wait_for_line(first, "begin 0")
    run_dir = run_dir_of(tmp_path / "energy", first)
    wait_for_heartbeat_inside(run_dir, 0)
    first.kill()
    first.communicate(timeout=60)
    for _ in range(2):  # the restarted job is killed too, once its own epoch 0 is open and beating
        again = launch(tmp_path / "energy", "--epoch-s", "60", "--state", str(state))
        wait_for_line(again, "begin 0")
        wait_for_heartbeat_inside(run_dir, 0)
        again.kill()
        again.communicate(timeout=60)
    assert (whole_csv(run_dir / "epochs.csv")["status"] == "interrupted").sum() == 2  # the two before, on resume
    run = load_run(run_dir)  # the last kill is recovered by the reader, and written back by it
    starts = [r["start_utc"] for r in run.epochs if r["status"] == "interrupted"]
    assert len(starts) == len(set(starts)) == 3  # three killed tries of epoch 0, each once
    assert (whole_csv(run_dir / "epochs.csv")["status"] == "interrupted").sum() == 3
    assert len(load_run(run_dir).epochs) == len(run.epochs)  # read again: nothing written twice
