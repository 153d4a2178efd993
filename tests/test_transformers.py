"""``EnergyTrainerCallback`` under the Hugging Face ``Trainer``: in this process, and under ``torchrun`` DDP."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from tracker import ConfigurationError, load_run  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "distributed"))
import hf_script  # noqa: E402
from launch import finish, torchrun  # noqa: E402

pytestmark = pytest.mark.slow
GPU_TOTAL_W = sum(hf_script.GPU_W)


def check_rows(run, measuring, epochs=2):
    labels = [(r["epoch"], r["phase"], r["status"]) for r in run.epochs if r["phase"] != "other"]
    assert labels == [(e, p, "complete") for e in range(epochs) for p in ("train", "validation")]
    # steady fake GPUs: their energy is their power over every second the measuring rank measured, counted once
    # (counting a GPU twice or not at all errs by 37 % or more). A row's clock and its counter reads are taken
    # a few instructions apart: under load the thread may be descheduled between them, hence 1 ms per row.
    seconds = sum(r["duration_s"] for r in measuring.epochs)
    slack_j = GPU_TOTAL_W * 1e-3 * len(measuring.epochs)
    assert sum(r["gpu_kwh"] for r in run.epochs) * 3.6e6 == pytest.approx(GPU_TOTAL_W * seconds, rel=5e-3, abs=slack_j)


def check_logs(run, history, recorded):
    epoch_logs = [h for h in history if "loss" in h]
    eval_logs = [h for h in history if "eval_loss" in h]
    trains = [r for r in run.epochs if r["phase"] == "train"]
    evaluations = [r for r in run.epochs if r["phase"] == "validation"]
    assert [h["energy/epoch_kwh"] for h in epoch_logs] == pytest.approx([r["energy_kwh"] for r in trains])
    assert [h["energy/eval_kwh"] for h in eval_logs] == pytest.approx([r["energy_kwh"] for r in evaluations])
    done = [r for r in run.epochs if r["end_utc"] <= evaluations[-1]["end_utc"]]
    # the job so far: every row written, and what is open (between rows, here) as it stands; never beyond the end
    assert (
        sum(r["energy_kwh"] for r in done)
        <= eval_logs[-1]["energy/total_kwh"]
        <= sum(r["energy_kwh"] for r in run.epochs)
    )
    # attach() put the callback ahead of the others: a reporter's on_log sees the figures in the same log
    assert [r.get("energy/epoch_kwh") for r in recorded if "loss" in r] == [h["energy/epoch_kwh"] for h in epoch_logs]


def test_single_process_rows_per_epoch_and_evaluation_and_figures_in_the_logs(tmp_path):
    nvml = hf_script.fake_nvml()
    recorder = hf_script.Recorder()
    callback = hf_script.energy_callback(tmp_path, nvml)
    trainer = hf_script.tiny_trainer(tmp_path, 2, [recorder])
    callback.attach(trainer)
    trainer.train()
    (run_dir,) = (tmp_path / "logs").iterdir()
    run = load_run(run_dir)
    check_rows(run, run)
    check_logs(run, trainer.state.log_history, recorder.logs)
    assert run.info["status"] == "complete" and callback.summary().epochs == 2
    check_metrics(run, trainer.state.log_history)


def test_the_counted_terms_are_in_the_logs_with_the_rows_figures_only_when_counted(tmp_path):
    callback = hf_script.energy_callback(tmp_path, hf_script.fake_nvml("NVIDIA H100 80GB HBM3"), embodied=True,
                                         wue_l_per_kwh=0.5)  # fmt: skip
    trainer = hf_script.tiny_trainer(tmp_path, 2, [])
    callback.attach(trainer)
    trainer.train()
    (run_dir,) = (tmp_path / "logs").iterdir()
    rows = load_run(run_dir).epochs
    epoch_logs = [h for h in trainer.state.log_history if "loss" in h]
    for column in ("embodied_co2_kg", "water_l"):
        expected = [sum(r[column] for r in rows if r["epoch"] == e and r["phase"] == "train") for e in (0, 1)]
        assert [h[f"energy/epoch_{column}"] for h in epoch_logs] == pytest.approx(expected) and min(expected) > 0
        assert 0 < trainer.state.log_history[-1][f"energy/total_{column}"] <= sum(r[column] for r in rows) * 1.000001
    assert not any("node" in key for h in trainer.state.log_history for key in h)  # no meter: no key, never a 0


def check_metrics(run, history):
    """Each row holds the metrics the Trainer logged while it was open: an epoch its loss, an evaluation eval_*."""
    trains = [r for r in run.epochs if r["phase"] == "train"]
    evaluations = [r for r in run.epochs if r["phase"] == "validation"]
    assert [r["loss"] for r in trains] == pytest.approx([h["loss"] for h in history if "loss" in h])
    assert [r["eval_loss"] for r in evaluations] == pytest.approx([h["eval_loss"] for h in history if "eval_loss" in h])
    assert all(r.get("eval_loss") is None for r in trains) and all(r.get("loss") is None for r in evaluations)
    assert "user_epoch" not in run.epochs[0] and not any(k.startswith("energy/") for k in run.epochs[0])
    assert not any("water" in key or "embodied" in key for h in history for key in h)  # not counted: not logged


def test_two_processes_under_the_trainers_ddp_one_job_each_gpu_once(tmp_path):
    script = Path(hf_script.__file__)
    finish(torchrun(tmp_path, "--standalone", "--nproc-per-node=2", script=script, script_args=("--epochs", "2")), 240)
    (job,) = (tmp_path / "logs").iterdir()
    run = load_run(job)
    assert [s["rank"] for s in run.info["shards"]] == [0, 1] and run.info["status"] == "complete"
    check_rows(run, load_run(job / "ranks" / "node-a-r0"))  # rank 0's rows of the GPUs are kept
    for row in run.epochs:
        devices = [d for d in run.devices if (d["epoch"], d["phase"]) == (row["epoch"], row["phase"])]
        assert sorted((d["kind"], d["rank"]) for d in devices) == [("cpu", 0), ("gpu", 0), ("gpu", 0), ("ram", 0)]
    history = json.loads((tmp_path / "log_history.json").read_text())
    check_logs(run, history, json.loads((tmp_path / "recorded.json").read_text()))
    check_metrics(run, history)  # the Trainer's values, reduced across ranks; the merged rows rank 0's


def test_a_bad_option_is_named_before_training():
    from integrations.transformers import EnergyTrainerCallback

    with pytest.raises(ConfigurationError, match="EnergyTrainerCallback\\(epoch=...\\) is not an option"):
        EnergyTrainerCallback(epoch=3)
    with pytest.raises(ConfigurationError, match="pue=0.5"):
        EnergyTrainerCallback(pue=0.5)


def test_the_example_runs_and_puts_the_figures_in_the_last_log(tmp_path):
    import subprocess

    from launch import ROOT, environment

    command = [sys.executable, str(ROOT / "examples" / "hf_trainer.py"), "--epochs", "1", "--log-dir", str(tmp_path)]
    done = subprocess.run(command, env=environment(), capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "'energy/total_kwh'" in done.stdout and "per-epoch CSV" in done.stdout
    (run_dir,) = tmp_path.glob("*/epochs.csv")
    phases = [(r["epoch"], r["phase"]) for r in load_run(run_dir.parent).epochs if r["phase"] != "other"]
    assert phases == [(0, "train"), (0, "validation")]


def test_no_gpu_power_is_logged_without_a_gpu():
    from types import SimpleNamespace

    from integrations._vocabulary import epoch_metrics, epoch_metrics_from_rows

    start = SimpleNamespace(duration_s=0.0, energy_kwh=0.0, co2_kg=0.0, gpu_kwh=0.0)
    end = SimpleNamespace(duration_s=10.0, energy_kwh=1e-4, co2_kg=4e-5, gpu_kwh=0.0, gpu_method="absent",
                          forecast_total_kwh=None, forecast_total_co2_kg=None)  # fmt: skip
    assert "energy/gpu_power_w" not in epoch_metrics(start, end)
    row = {"phase": "train", "epoch": 0, "energy_kwh": 1e-4, "co2_kg": 4e-5, "gpu_power_mean_w": None}
    assert "energy/gpu_power_w" not in epoch_metrics_from_rows([row])
