"""Step-based runs in the integrations: Lightning and the Hugging Face Trainer with ``max_steps``, the loop callback.

Fake sensors of known power on a fake clock that only the training advances, so the truth at every
moment is known; public API only.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from tracker import load_run
from tracker.energy import J_PER_KWH
from tracker.testing import FakeClock, FakeSensor, steady

GPU_W, CPU_W = 300.0, 30.0


def sensors_on(clock):
    return [
        FakeSensor("gpu:0", "gpu", steady(GPU_W), clock, info={"name": "Fake A100"}),
        FakeSensor("cpu", "cpu", steady(CPU_W), clock),
    ]


def kwh(seconds, watts=GPU_W + CPU_W):
    return watts * seconds / J_PER_KWH


# ---- Lightning ---------------------------------------------------------------------------------------------------


@pytest.fixture
def lightning_parts():
    pytest.importorskip("lightning")
    from tests.test_lightning import TRAIN_STEP_S, WATTS, ClockedModel, callback_for, trainer_for

    return TRAIN_STEP_S, ClockedModel, callback_for, trainer_for, WATTS


def test_lightning_max_steps_in_one_epoch_with_val_check_interval(tmp_path, lightning_parts):
    step_s, model_class, callback_for, trainer_for, watts = lightning_parts
    clock = FakeClock()
    callback = callback_for(clock, log_dir=tmp_path / "energy", row_every_n_steps=5)
    trainer = trainer_for(tmp_path, callback, max_epochs=None, max_steps=12, limit_train_batches=None,
                          val_check_interval=4, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(model_class(clock))
    (run_dir,) = (tmp_path / "energy").iterdir()
    rows = [r for r in load_run(run_dir).epochs if r["phase"] != "other"]
    assert [(r["epoch"], r["phase"], r["status"], r["first_step"], r["last_step"]) for r in rows] == [
        (0, "validation", "complete", None, None),  # after step 4, inside the epoch: a row of its own
        (0, "train", "partial", 1, 5),
        (0, "validation", "complete", None, None),
        (0, "train", "partial", 6, 10),
        (0, "validation", "complete", None, None),
        (0, "train", "complete", 11, 12),
    ]
    trains = [r for r in rows if r["phase"] == "train"]
    assert [r["duration_s"] for r in trains] == pytest.approx([5 * step_s, 5 * step_s, 2 * step_s])
    assert [r["samples"] for r in trains] == [20, 20, 8]  # 4 a batch, one batch a step
    for row in rows:
        assert row["energy_kwh"] == pytest.approx(kwh(row["duration_s"], watts), rel=1e-6)
    # total_steps came from max_steps: a forecast from the step rate once the first window has passed
    assert trains[0]["forecast_total_kwh"] is None and trains[1]["forecast_total_kwh"] is not None
    truth = kwh(sum(r["duration_s"] for r in rows), watts)
    assert trains[-1]["forecast_total_kwh"] == pytest.approx(truth, rel=1e-6)
    assert callback.summary().epochs == 1 and callback.summary().steps == 12
    (metrics_csv,) = tmp_path.rglob("metrics.csv")
    logged = list(csv.DictReader(metrics_csv.open()))
    epoch_level = [r for r in logged if r["energy/epoch_kwh"]]
    assert len(epoch_level) == 1 and float(epoch_level[0]["energy/epoch_kwh"]) == pytest.approx(truth, rel=1e-6)
    assert float(epoch_level[0]["energy/epoch_co2_kg"]) == pytest.approx(truth * 0.4, rel=1e-6)


def test_lightning_resumes_from_a_checkpoint_taken_mid_epoch_with_step_rows(tmp_path, lightning_parts):
    from lightning.pytorch.callbacks import ModelCheckpoint

    _, model_class, callback_for, trainer_for, _ = lightning_parts
    clock = FakeClock()
    checkpoints = tmp_path / "checkpoints"
    saver = ModelCheckpoint(dirpath=checkpoints, every_n_train_steps=6, save_top_k=-1)
    first = trainer_for(tmp_path, callback_for(clock, log_dir=tmp_path / "energy", row_every_n_steps=4),
                        max_epochs=None, max_steps=10, limit_train_batches=None, num_sanity_val_steps=0,
                        limit_val_batches=0, enable_checkpointing=True)  # fmt: skip
    first.callbacks.append(saver)
    first.fit(model_class(clock))
    (mid_epoch,) = [p for p in checkpoints.iterdir() if "step=6" in p.name]
    second = trainer_for(tmp_path, callback_for(clock, log_dir=tmp_path / "energy", row_every_n_steps=4),
                         max_epochs=None, max_steps=14, limit_train_batches=None, num_sanity_val_steps=0,
                         limit_val_batches=0)  # fmt: skip
    second.fit(model_class(clock), ckpt_path=mid_epoch)
    (run_dir,) = (tmp_path / "energy").iterdir()  # the checkpoint's run goes on in its directory
    trains = [r for r in load_run(run_dir).epochs if r["phase"] == "train"]
    assert [(r["epoch"], r["first_step"], r["last_step"]) for r in trains] == [
        (0, 1, 4),
        (0, 5, 8),
        (0, 9, 10),  # the first fit stopped at max_steps=10
        (0, 7, 8),  # resumed after step 6: the steps are numbered as the Trainer numbers them
        (0, 9, 12),
        (0, 13, 14),
    ]
    run = load_run(run_dir)
    assert sum(r["energy_kwh"] for r in run.epochs) == pytest.approx(run.epochs[-1]["cumulative_energy_kwh"])


# ---- Hugging Face ------------------------------------------------------------------------------------------------


def test_hf_trainer_max_steps_logs_the_truth_so_far_at_every_log(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    sys.path.insert(0, str(Path(__file__).parent / "distributed"))
    import hf_script
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

    from integrations.transformers import EnergyTrainerCallback

    clock = FakeClock()
    sensors = sensors_on(clock)

    class Clocked(TrainerCallback):
        """Each training step takes 1 s of fake time, each evaluation batch 0.25 s; keeps every log and its truth."""

        def __init__(self):
            self.logs, self.started = [], None

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = clock()

        def on_step_begin(self, args, state, control, **kwargs):
            clock.advance(1.0)

        def on_prediction_step(self, args, state, control, **kwargs):
            clock.advance(0.25)

        def on_log(self, args, state, control, logs=None, **kwargs):
            truth = sum(s.true_energy_j(self.started, clock()) for s in sensors) / J_PER_KWH
            self.logs.append((dict(logs or {}), truth))

    clocked = Clocked()
    config = GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0)
    args = TrainingArguments(
        output_dir=str(tmp_path / "trainer"), max_steps=30, logging_steps=4, eval_strategy="steps", eval_steps=10,
        per_device_train_batch_size=4, per_device_eval_batch_size=4, save_strategy="no", report_to="none",
        use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
    )  # fmt: skip
    trainer = Trainer(model=GPT2LMHeadModel(config), args=args, train_dataset=hf_script.Sequences(200),
                      eval_dataset=hf_script.Sequences(8), callbacks=[clocked])  # fmt: skip
    energy = EnergyTrainerCallback(log_dir=tmp_path / "energy", sensors=sensors, clock=clock,
                                   carbon_intensity_g_per_kwh=400.0, row_every_n_steps=10)  # fmt: skip
    energy.attach(trainer)
    trainer.train()

    assert len(clocked.logs) >= 10
    for logs, truth in clocked.logs:  # every log: the job so far, the open epoch included
        assert logs["energy/total_kwh"] == pytest.approx(truth, rel=0.02)
    (run_dir,) = (tmp_path / "energy").iterdir()
    rows = [r for r in load_run(run_dir).epochs if r["phase"] != "other"]
    trains = [r for r in rows if r["phase"] == "train"]
    assert [(r["epoch"], r["first_step"], r["last_step"]) for r in trains][:3] == [(0, 1, 10), (0, 11, 20), (0, 21, 30)]
    assert [r["status"] for r in trains[:2]] == ["partial", "partial"]
    assert sum(r["phase"] == "validation" for r in rows) == 3
    assert trains[1]["forecast_total_kwh"] is not None  # total_steps from max_steps
    final = energy.summary()
    assert final.steps == 30 and final.forecast_basis == "30 steps"


# ---- the loop callback -------------------------------------------------------------------------------------------


def test_the_loop_callback_counts_steps_and_cuts_rows(tmp_path):
    from integrations.loop import EnergyLoopCallback

    clock = FakeClock()
    callback = EnergyLoopCallback(log_dir=tmp_path, sensors=sensors_on(clock), clock=clock,
                                  carbon_intensity_g_per_kwh=400.0, row_every_n_steps=3)  # fmt: skip
    callback.on_train_begin()
    callback.on_epoch_begin(0)
    for batch in range(7):
        clock.advance(1.0)
        callback.on_batch_end(batch, samples=2)
    callback.on_epoch_end(0)
    summary = callback.on_train_end()
    trains = [r for r in load_run(summary.run_dir).epochs if r["phase"] == "train"]
    assert [(r["first_step"], r["last_step"], r["samples"]) for r in trains] == [(1, 3, 6), (4, 6, 6), (7, 7, 2)]
    assert sum(r["energy_kwh"] for r in trains) == pytest.approx(kwh(7.0), rel=1e-6)


def test_the_step_based_example_writes_rows_every_n_steps_with_energy_per_token(tmp_path):
    pytest.importorskip("transformers")
    import subprocess

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, str(root / "examples" / "steps_language_model.py"), "--max-steps", "20",
                           "--row-every", "10", "--log-dir", str(tmp_path)], capture_output=True, text=True,
                          timeout=600, cwd=root)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = tmp_path.iterdir()
    trains = [r for r in load_run(run_dir).epochs if r["phase"] == "train" and r["first_step"] is not None]
    assert [(r["first_step"], r["last_step"], r["samples"]) for r in trains] == [(1, 10, 1280), (11, 20, 1280)]
    assert all(r["energy_per_sample_j"] > 0 for r in trains) and trains[1]["forecast_total_kwh"] > 0
    assert "mJ per token" in done.stdout
