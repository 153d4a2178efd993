"""Kills and interrupts of a real training process (``train_script.py``, run as a subprocess).

SIGKILL twenty times at seeded random moments: every finished epoch is on disk, the files parse,
no row is half-written, and the next run in the same ``log_dir`` starts cleanly. Ctrl-C (SIGINT)
writes the interrupted epoch and still ends the process as Python would; SIGTERM ends it exactly as
it would end without the tracker, whose finished epochs are on disk all the same.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import PATIENT
from tracker import EnergyTracker, cli, load_runs
from tracker.testing import FakeSensor, steady

pytestmark = pytest.mark.slow  # real processes: they still run in CI

SCRIPT = Path(__file__).with_name("train_script.py")
EPOCH_S = 0.06


def launch(log_dir: Path, *args: str) -> subprocess.Popen:
    command = [sys.executable, str(SCRIPT), str(log_dir), *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_line(process: subprocess.Popen, wanted: str) -> list[str]:
    """Read the child's lines until ``wanted``; returns every line read."""
    lines = []
    for line in process.stdout:
        lines.append(line.strip())
        if lines[-1] == wanted:
            return lines
    raise AssertionError(f"the child ended before printing {wanted!r}: {lines}, {process.stderr.read()}")


def finish(process: subprocess.Popen, lines: list[str]) -> list[str]:
    out, _ = process.communicate(timeout=60)
    return lines + out.split("\n")


def printed(lines: list[str], word: str) -> list[int]:
    return [int(line.split()[1]) for line in lines if line.startswith(word + " ")]


def run_dir_of(log_dir: Path, process: subprocess.Popen) -> Path:
    (found,) = [p for p in log_dir.iterdir() if p.name.endswith(f"-{process.pid}")]
    return found


def whole_csv(path: Path) -> pd.DataFrame:
    """The file's rows, after proving that none is half-written."""
    text = path.read_text()
    assert text.endswith("\n"), f"{path.name} ends in half a row: {text[-80:]!r}"
    rows = list(csv.reader(io.StringIO(text)))
    assert all(len(row) == len(rows[0]) for row in rows), f"{path.name} has a row of the wrong width"
    return pd.read_csv(path)


def assert_finished_epochs_on_disk(run_dir: Path, lines: list[str]) -> None:
    begun, ended = printed(lines, "begin"), printed(lines, "end")
    if not (run_dir / "epochs.csv").exists():
        assert ended == []
        return
    frame = whole_csv(run_dir / "epochs.csv")
    train = list(frame[frame["phase"] == "train"]["epoch"])
    assert train == list(range(len(train)))  # epochs 0..m-1, in order, none twice
    assert set(ended) <= set(train) <= set(begun)  # every finished epoch; nothing from the future
    assert set(frame["status"]) <= {"complete"}  # a killed process writes no interrupted row
    assert not frame[["energy_kwh", "duration_s", "co2_kg"]].isna().any().any()
    # Two device rows per epoch, written after the epoch's row: a kill between the two files can
    # only leave the last epoch's device rows missing, never device rows of an unwritten epoch.
    devices = whole_csv(run_dir / "devices.csv") if (run_dir / "devices.csv").exists() else None
    device_epochs = [] if devices is None else sorted(devices[devices["phase"] == "train"]["epoch"])
    assert device_epochs in (sorted(train * 2), sorted(train * 2)[:-1], sorted(train * 2)[:-2])
    json.loads((run_dir / "run.json").read_text())  # rewritten atomically: always whole


def test_sigkill_twenty_times_at_random_moments(tmp_path):
    rng = random.Random(20240607)
    log_dir = tmp_path / "energy"
    killed_in = []
    for _ in range(20):
        epoch, delay = rng.randrange(0, 6), rng.uniform(0.0, EPOCH_S * 1.2)
        process = launch(log_dir, "--epoch-s", str(EPOCH_S))
        lines = wait_for_line(process, f"begin {epoch}")
        time.sleep(delay)
        process.kill()
        lines = finish(process, lines)
        assert process.returncode == -signal.SIGKILL
        assert_finished_epochs_on_disk(run_dir_of(log_dir, process), lines)
        killed_in.append(max(printed(lines, "begin")))
    assert len(set(killed_in)) >= 4  # the kills really landed in different epochs
    # The next run in the same log_dir starts and finishes cleanly, and every run reads back.
    process = launch(log_dir, "--epochs", "3", "--epoch-s", "0.01")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0 and printed(out.split("\n"), "end") == [0, 1, 2]
    assert err == ""  # not one warning about what the killed runs left behind
    last = run_dir_of(log_dir, process)
    assert json.loads((last / "run.json").read_text())["status"] == "complete"
    assert list(whole_csv(last / "epochs.csv").query("phase == 'train'")["epoch"]) == [0, 1, 2]
    assert len(load_runs(log_dir)) == 21
    assert cli.main(["report", str(log_dir), "--format", "csv"]) == 0


def interrupt(tmp_path: Path, sig: int, *args: str) -> tuple[subprocess.Popen, list[str], str]:
    process = launch(tmp_path, "--epoch-s", "0.25", *args)
    lines = wait_for_line(process, "begin 2")
    time.sleep(0.08)  # well inside epoch 2's work
    process.send_signal(sig)
    out, err = process.communicate(timeout=60)
    return process, lines + out.split("\n"), err


def test_ctrl_c_writes_the_interrupted_epoch_and_propagates(tmp_path):
    plain, _, plain_err = interrupt(tmp_path / "plain", signal.SIGINT, "--no-tracker")
    process, lines, err = interrupt(tmp_path / "energy", signal.SIGINT)
    assert process.returncode == plain.returncode == -signal.SIGINT  # Python's own exit for Ctrl-C
    assert "KeyboardInterrupt" in err and "KeyboardInterrupt" in plain_err
    run_dir = run_dir_of(tmp_path / "energy", process)
    frame = whole_csv(run_dir / "epochs.csv")
    train = frame[frame["phase"] == "train"]
    statuses = list(zip(train["epoch"], train["status"], strict=True))
    assert statuses == [(0, "complete"), (1, "complete"), (2, "interrupted")]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "interrupted" and info["end_utc"]
    assert printed(lines, "end") == [0, 1]


def test_sigterm_ends_the_process_as_without_the_tracker(tmp_path):
    plain, _, _ = interrupt(tmp_path / "plain", signal.SIGTERM, "--no-tracker")
    process, lines, err = interrupt(tmp_path / "energy", signal.SIGTERM)
    assert process.returncode == plain.returncode == -signal.SIGTERM  # the default action: no handler of ours
    run_dir = run_dir_of(tmp_path / "energy", process)
    frame = whole_csv(run_dir / "epochs.csv")
    assert list(frame[frame["phase"] == "train"]["epoch"]) == [0, 1]  # every finished epoch, all the same
    assert set(frame["status"]) == {"complete"}
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"  # no cleanup ran, as without us
    assert printed(lines, "end") == [0, 1] and err == ""


def signal_handlers() -> dict[int, object]:
    return {s: signal.getsignal(s) for s in signal.valid_signals()}


@pytest.mark.parametrize("log_dir", ["dir", None])
def test_no_signal_handler_installed_behind_the_users_back(tmp_path, log_dir):
    from integrations.loop import EnergyLoopCallback

    before = signal_handlers()
    energy = EnergyTracker(
        tmp_path if log_dir else None,
        sensors=[FakeSensor("gpu:0", "gpu", steady(100.0))],
        interval_s=0.01,
        carbon_intensity_g_per_kwh=300.0,
        **PATIENT,
    )
    assert signal_handlers() == before
    with energy:
        with energy.epoch(0):
            assert signal_handlers() == before
    assert signal_handlers() == before
    callback = EnergyLoopCallback(
        log_dir=tmp_path if log_dir else None,
        carbon_intensity_g_per_kwh=300.0,
        sensors=[FakeSensor("gpu:0", "gpu", steady(100.0))],
        **PATIENT,
    )
    callback.on_train_begin()
    callback.on_epoch_begin(0)
    assert signal_handlers() == before
    callback.on_epoch_end(0, logs={"loss": 0.5})
    callback.on_train_end()
    assert signal_handlers() == before


def test_ctrl_c_in_a_lightning_fit(tmp_path):
    script = Path(__file__).with_name("lightning_script.py")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["tracked"] == outcome["plain"] == ["SystemExit", 1]  # Lightning's own ending, unchanged
    (run_dir,) = [p for p in (tmp_path / "energy").iterdir() if p.is_dir()]
    frame = whole_csv(run_dir / "epochs.csv")
    train = frame[frame["phase"] == "train"]
    statuses = list(zip(train["epoch"], train["status"], strict=True))
    assert statuses == [(0, "complete"), (1, "interrupted")]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "interrupted" and info["end_utc"]
