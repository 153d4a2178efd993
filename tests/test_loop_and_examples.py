import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from integrations.loop import EnergyLoopCallback
from tests.helpers import PATIENT, run_for
from tracker import load_run
from tracker.energy import J_PER_KWH
from tracker.errors import ConfigurationError, UsageError
from tracker.testing import FakeSensor, steady

ROOT = Path(__file__).resolve().parents[1]


def test_loop_callbacks_write_one_row_per_epoch_with_logs(tmp_path, clock):
    gpu = FakeSensor("gpu:0", "gpu", steady(200.0), clock)
    cb = EnergyLoopCallback(
        log_dir=tmp_path, sensors=[gpu], clock=clock, carbon_intensity_g_per_kwh=500, epochs=2, **PATIENT
    )
    cb.on_train_begin()
    for epoch in range(2):
        cb.on_epoch_begin(epoch)
        run_for(cb.tracker, clock, 5.0)
        cb.on_phase_begin("validation")
        run_for(cb.tracker, clock, 1.0)
        cb.on_phase_end(logs={"val_loss": 0.3})
        cb.on_epoch_end(epoch, logs={"loss": 1.0 / (epoch + 1)}, samples=64)
    summary = cb.on_train_end()
    rows = load_run(summary.run_dir).epochs
    train = [r for r in rows if r["phase"] == "train"]
    assert [r["loss"] for r in train] == [1.0, 0.5]
    assert [r["samples"] for r in train] == [64, 64]
    assert train[0]["gpu_kwh"] == pytest.approx(200 * 5 / J_PER_KWH)
    assert [r["val_loss"] for r in rows if r["phase"] == "validation"] == [0.3, 0.3]
    assert summary.epochs == 2


def test_loop_callback_validates_options_before_training():
    with pytest.raises(ConfigurationError, match="pue=0.5"):
        EnergyLoopCallback(pue=0.5)


def test_loop_callback_hooks_out_of_order():
    cb = EnergyLoopCallback(log_dir=None, carbon_intensity_g_per_kwh=1, **PATIENT)
    with pytest.raises(UsageError, match="before on_train_begin"):
        cb.on_epoch_begin(0)


def test_loop_callback_on_exception_marks_the_epoch_interrupted(tmp_path, clock):
    gpu = FakeSensor("gpu:0", "gpu", steady(200.0), clock)
    cb = EnergyLoopCallback(log_dir=tmp_path, sensors=[gpu], clock=clock, carbon_intensity_g_per_kwh=1, **PATIENT)
    cb.on_train_begin()
    cb.on_epoch_begin(0)
    run_for(cb.tracker, clock, 2.0)
    summary = cb.on_exception(RuntimeError("nan loss"))
    assert [(r["epoch"], r["status"]) for r in load_run(summary.run_dir).epochs] == [(0, "interrupted")]


@pytest.mark.slow
@pytest.mark.parametrize("script", ["context_manager.py", "plain_loop.py"])
def test_examples_run_and_leave_a_csv_pandas_reads(tmp_path, script):
    env = {**os.environ, "ENERGY_TRACKER_COUNTRY": "FRA"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--epochs", "2", "--log-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard, not a speed check: a loaded 2-core machine has taken over 120 s
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    csv_path = next(tmp_path.glob("*/epochs.csv"))
    assert str(csv_path) in result.stdout
    frame = pd.read_csv(csv_path)
    train = frame[frame.phase == "train"]
    assert list(train.epoch) == [0, 1] and (train.status == "complete").all()
    assert (train.cpu_method == "tdp_default").all() and (train.gpu_method == "absent").all()
    assert (frame.intensity_method == "environment").all()
    assert "loss" in frame.columns and (train.energy_kwh > 0).all()


def test_import_tracker_is_light_and_does_no_io():
    code = (
        "import sys\n"
        "opened = []\n"
        "sys.addaudithook(lambda e, a: opened.append(a[0]) if e == 'open' and 'tracker' not in str(a[0]) "
        "and not str(a[0]).endswith(('.py', '.pyc')) and '__pycache__' not in str(a[0]) else None)\n"
        "import tracker, tracker.session.energy_tracker, integrations.loop\n"
        "heavy = [m for m in ('torch', 'lightning', 'codecarbon', 'matplotlib', 'pandas', 'pynvml')\n"
        "         if m in sys.modules]\n"
        "print(heavy, [p for p in opened if not str(p).startswith(sys.prefix)])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] []"
