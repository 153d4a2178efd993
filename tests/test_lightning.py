"""EnergyCallback in a real Lightning Trainer on CPU, with fake sensors on a fake clock.

Every training step takes 0.5 s and every evaluation step 0.25 s of fake time (the model advances
the clock), and nothing else does, so each row's duration and energy are known exactly.
"""

from __future__ import annotations

import csv
import logging
from types import SimpleNamespace

import lightning.pytorch as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel, RandomDataset
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from integrations._distributed import placement
from integrations.lightning import PROGRESS_BAR_KEY, EnergyCallback, batch_size
from tests.helpers import PATIENT
from tracker import EnergyTracker, load_run, units
from tracker.energy import J_PER_KWH
from tracker.errors import ConfigurationError
from tracker.testing import FakeGpu, FakeNvml, FakeSensor, steady

GPU_W, CPU_W, RAM_W = 300.0, 30.0, 6.0
WATTS = GPU_W + CPU_W + RAM_W
TRAIN_STEP_S, EVAL_STEP_S = 0.5, 0.25
TRAIN_BATCHES, EVAL_BATCHES, BATCH = 4, 2, 4
TRAIN_S, EVAL_S = TRAIN_BATCHES * TRAIN_STEP_S, EVAL_BATCHES * EVAL_STEP_S
INTENSITY = 400.0


class ClockedModel(BoringModel):
    """BoringModel whose steps take fixed fake time, and which can fail in one training step."""

    def __init__(self, clock, fail_at=None):
        super().__init__()
        self.clock, self.fail_at, self.train_steps = clock, fail_at, 0

    def training_step(self, batch, batch_idx):
        self.clock.advance(TRAIN_STEP_S)
        self.train_steps += 1
        if (self.current_epoch, batch_idx) == self.fail_at:
            raise RuntimeError("boom")
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        self.clock.advance(EVAL_STEP_S)
        return super().validation_step(batch, batch_idx)

    def test_step(self, batch, batch_idx):
        self.clock.advance(EVAL_STEP_S)
        return super().test_step(batch, batch_idx)

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        self.clock.advance(EVAL_STEP_S)
        return super().predict_step(batch, batch_idx, dataloader_idx)

    def train_dataloader(self):
        return DataLoader(RandomDataset(32, 64), batch_size=BATCH)

    val_dataloader = test_dataloader = predict_dataloader = train_dataloader


def fake_sensors(clock):
    return [
        FakeSensor("gpu:0", "gpu", steady(GPU_W), clock, info={"name": "Fake A100", "uuid": "GPU-1"}),
        FakeSensor("cpu", "cpu", steady(CPU_W), clock, method="tdp_estimate"),
        FakeSensor("ram", "ram", steady(RAM_W), clock, method="ram_model"),
    ]


def callback_for(clock, **options):
    return EnergyCallback(
        sensors=fake_sensors(clock), clock=clock, carbon_intensity_g_per_kwh=INTENSITY, **options, **PATIENT
    )


def trainer_for(tmp_path, callback, **options):
    settings = dict(
        default_root_dir=tmp_path,
        logger=CSVLogger(tmp_path),
        max_epochs=2,
        limit_train_batches=TRAIN_BATCHES,
        limit_val_batches=EVAL_BATCHES,
        limit_test_batches=EVAL_BATCHES,
        limit_predict_batches=EVAL_BATCHES,
        num_sanity_val_steps=EVAL_BATCHES,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        log_every_n_steps=1,
        callbacks=[callback],
    )
    return L.Trainer(**{**settings, **options})


def kwh(seconds, watts=WATTS):
    return watts * seconds / J_PER_KWH


def only_run(tmp_path):
    (epochs_csv,) = tmp_path.rglob("epochs.csv")
    return load_run(epochs_csv.parent)


def keys(run):
    return [(r["epoch"], r["phase"], r["status"]) for r in run.epochs]


FIT_ROWS = [
    (None, "sanity_check", "complete"),
    (0, "validation", "complete"),
    (0, "train", "complete"),
    (1, "validation", "complete"),
    (1, "train", "complete"),
]


def test_rows_per_epoch_and_phase_with_exact_energy_in_the_default_directory(tmp_path, clock):
    trainer = trainer_for(tmp_path, callback_for(clock))
    trainer.fit(ClockedModel(clock))
    run = only_run(tmp_path)
    assert run.path.parent == tmp_path / "lightning_logs" / "version_0" / "energy"
    assert keys(run) == FIT_ROWS
    seconds = [EVAL_S, EVAL_S, TRAIN_S, EVAL_S, TRAIN_S]
    assert [r["duration_s"] for r in run.epochs] == seconds
    ev, tr = EVAL_BATCHES * BATCH, TRAIN_BATCHES * BATCH
    assert [r["samples"] for r in run.epochs] == [ev, ev, tr, ev, tr]
    for row, s in zip(run.epochs, seconds, strict=True):
        assert row["gpu_kwh"] == pytest.approx(kwh(s, GPU_W))
        assert row["cpu_kwh"] == pytest.approx(kwh(s, CPU_W))
        assert row["ram_kwh"] == pytest.approx(kwh(s, RAM_W))
        assert row["co2_kg"] == pytest.approx(kwh(s) * INTENSITY / 1000)
        assert row["energy_per_sample_j"] == pytest.approx(WATTS * s / row["samples"])
    assert run.epochs[-1]["cumulative_energy_kwh"] == pytest.approx(sum(r["energy_kwh"] for r in run.epochs))
    assert run.epochs[-1]["cumulative_energy_kwh"] == pytest.approx(kwh(sum(seconds)))
    # The forecast uses trainer.max_epochs: after epoch 0, twice what was spent so far.
    assert run.epochs[2]["forecast_total_kwh"] == pytest.approx(2 * kwh(2 * EVAL_S + TRAIN_S))
    assert run.info["epochs_planned"] == 2 and run.info["status"] == "complete"


def test_energy_reaches_the_csv_logger_and_the_progress_bar(tmp_path, clock):
    trainer = trainer_for(tmp_path, callback_for(clock))
    trainer.fit(ClockedModel(clock))
    run = only_run(tmp_path)
    (metrics_csv,) = tmp_path.rglob("metrics.csv")
    rows = list(csv.DictReader(metrics_csv.open()))
    logged = [r for r in rows if r["energy/epoch_kwh"]]
    assert [int(r["epoch"]) for r in logged] == [0, 1]
    # every step (log_every_n_steps=1): the run so far, the open epoch included (sanity check 0.5 s first)
    steps = [float(r["energy/total_kwh"]) for r in rows if r["energy/total_kwh"] and not r["energy/epoch_kwh"]]
    truth = [kwh(0.5 + TRAIN_STEP_S * k) for k in range(1, 5)] + [kwh(3.0 + TRAIN_STEP_S * k) for k in range(1, 5)]
    assert steps == pytest.approx(truth, rel=1e-6)
    for epoch, row in enumerate(logged):
        train = next(r for r in run.epochs if (r["epoch"], r["phase"]) == (epoch, "train"))
        expected = {  # the epoch includes its validation; logged as float32
            "energy/epoch_kwh": kwh(TRAIN_S + EVAL_S),
            "energy/epoch_co2_kg": kwh(TRAIN_S + EVAL_S) * INTENSITY / 1000,
            "energy/total_kwh": train["cumulative_energy_kwh"],
            "energy/total_co2_kg": train["cumulative_co2_kg"],
            "energy/gpu_power_w": GPU_W,
        }
        assert {k: float(row[k]) for k in expected} == pytest.approx(expected, rel=1e-6)
    assert PROGRESS_BAR_KEY not in trainer.progress_bar_metrics  # shown as text by the bar, not logged
    assert not {k for k in rows[0] if "embodied" in k or "water" in k or "node" in k}  # not counted: never a 0


TERMS = {"embodied_co2_kg": ("energy/total_embodied_co2_kg", "energy/epoch_embodied_co2_kg"),
         "water_l": ("energy/total_water_l", "energy/epoch_water_l"),
         "node_kwh": ("energy/total_node_kwh", "energy/epoch_node_kwh")}  # fmt: skip


def test_the_counted_terms_reach_the_logger_with_the_rows_figures(tmp_path, clock):
    sensors = [FakeSensor("gpu:0", "gpu", steady(GPU_W), clock, info={"name": "NVIDIA H100 80GB HBM3"}),
               FakeSensor("node", "node", steady(2 * WATTS), clock)]  # fmt: skip
    callback = EnergyCallback(sensors=sensors, clock=clock, carbon_intensity_g_per_kwh=INTENSITY, embodied=True,
                              wue_l_per_kwh=0.5, **PATIENT)  # fmt: skip
    trainer_for(tmp_path, callback).fit(ClockedModel(clock))
    run = only_run(tmp_path)
    (metrics_csv,) = tmp_path.rglob("metrics.csv")
    logged = [r for r in csv.DictReader(metrics_csv.open()) if r["energy/epoch_kwh"]]
    assert len(logged) == 2
    ends = [i for i, r in enumerate(run.epochs) if r["phase"] == "train"]
    for epoch, row in enumerate(logged):
        through = run.epochs[: ends[epoch] + 1]  # the rows written when the epoch's figures were logged
        for column, (total, per_epoch) in TERMS.items():
            expected = sum(r[column] for r in run.epochs if r["epoch"] == epoch)  # its train row and validation
            assert float(row[per_epoch]) == pytest.approx(expected, rel=1e-6) and expected > 0
            assert float(row[total]) == pytest.approx(sum(r[column] for r in through), rel=1e-6)
    assert float(logged[-1]["energy/total_node_kwh"]) > float(logged[-1]["energy/total_kwh"])  # beside, not added


def test_the_progress_bar_shows_a_co2_figure_that_moves(tmp_path, clock):
    callback = callback_for(clock)
    trainer = trainer_for(tmp_path, callback, enable_progress_bar=True)
    model = ClockedModel(clock)
    trainer.fit(model)
    shown = trainer.progress_bar_callback.get_metrics(trainer, model)[PROGRESS_BAR_KEY]
    total = only_run(tmp_path).epochs[-1]["cumulative_co2_kg"]
    assert shown == units.co2(total) == "205 mg"  # Lightning's own {:.3f} kg would read 0.000


class LoggingModel(ClockedModel):
    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        self.log("loss", out["loss"], on_step=False, on_epoch=True)
        return out

    def validation_step(self, batch, batch_idx):
        out = super().validation_step(batch, batch_idx)
        self.log("val_accuracy", torch.tensor(0.5 + self.current_epoch))
        return out


def test_the_users_logged_metrics_reach_epochs_csv_as_numbers(tmp_path, clock):
    trainer = trainer_for(tmp_path, callback_for(clock), num_sanity_val_steps=0)
    trainer.fit(LoggingModel(clock))
    run = only_run(tmp_path)
    train = [r for r in run.epochs if r["phase"] == "train"]
    validation = [r for r in run.epochs if r["phase"] == "validation"]
    assert [r["val_accuracy"] for r in validation] == [0.5, 1.5]
    assert all(isinstance(r["loss"], float) for r in train) and train[0]["loss"] != train[1]["loss"]
    assert not any(key.startswith("energy/") for key in run.epochs[0])
    # each row the metrics logged while it was open: a validation row not the last epoch's training loss,
    # an epoch's row not the validation's accuracy (the validation runs inside the epoch)
    assert all(r.get("loss") is None for r in validation)
    assert all(r.get("val_accuracy") is None for r in train)


def test_no_gpu_power_is_logged_without_a_gpu(tmp_path, clock):
    sensors = [s for s in fake_sensors(clock) if s.kind != "gpu"]
    callback = EnergyCallback(sensors=sensors, clock=clock, carbon_intensity_g_per_kwh=INTENSITY, **PATIENT)
    trainer_for(tmp_path, callback).fit(ClockedModel(clock))
    (metrics_csv,) = tmp_path.rglob("metrics.csv")
    header = next(csv.reader(metrics_csv.open()))
    assert "energy/total_kwh" in header and "energy/gpu_power_w" not in header


def test_a_second_fit_with_the_same_callback_starts_a_run_of_its_own(tmp_path, clock):
    callback = callback_for(clock, log_dir=str(tmp_path / "energy"))
    trainer_for(tmp_path, callback).fit(ClockedModel(clock))
    trainer_for(tmp_path, callback).fit(ClockedModel(clock))
    runs = sorted(p.parent for p in (tmp_path / "energy").rglob("epochs.csv"))
    assert len(runs) == 2
    assert [keys(load_run(r)) for r in runs] == [FIT_ROWS, FIT_ROWS]


def test_resume_from_checkpoint_continues_totals_and_epochs_in_the_same_run_directory(tmp_path, clock):
    first = trainer_for(tmp_path, callback_for(clock), enable_checkpointing=True)
    first.fit(ClockedModel(clock))
    checkpoint = first.checkpoint_callback.best_model_path
    run_dir = only_run(tmp_path).path
    saved = torch.load(checkpoint, weights_only=False)["callbacks"]["EnergyCallback"]
    assert saved["tracker"]["run_dir"] == str(run_dir)
    second = trainer_for(tmp_path, callback_for(clock), max_epochs=4, enable_checkpointing=True)
    second.fit(ClockedModel(clock), ckpt_path=checkpoint)
    run = only_run(tmp_path)  # still one run directory: the same one
    assert run.path == run_dir
    assert (run_dir / "epochs.csv").read_text().count("run,job_id,epoch,phase") == 1
    resumed = [
        (2, "validation", "complete"),
        (2, "train", "complete"),
        (3, "validation", "complete"),
        (3, "train", "complete"),
    ]
    assert keys(run) == FIT_ROWS + [(None, "sanity_check", "complete")] + resumed  # Lightning checks again
    assert [r["epoch"] for r in run.epochs if r["phase"] == "train"] == [0, 1, 2, 3]
    cumulative = 0.0
    for row in run.epochs:
        cumulative += row["energy_kwh"]
        assert row["cumulative_energy_kwh"] == pytest.approx(cumulative)
    logged = [r for r in csv.DictReader(next(tmp_path.glob("lightning_logs/version_1/metrics.csv")).open())]
    assert float(logged[-1]["energy/total_kwh"]) == pytest.approx(cumulative, rel=1e-6)


def test_exception_in_epoch_2_leaves_earlier_epochs_complete_and_epoch_2_interrupted(tmp_path, clock):
    model = ClockedModel(clock, fail_at=(2, 1))
    with pytest.raises(RuntimeError, match="boom"):
        trainer_for(tmp_path, callback_for(clock), max_epochs=3).fit(model)
    run = only_run(tmp_path)
    assert keys(run) == FIT_ROWS + [(2, "train", "interrupted")]
    assert run.epochs[-1]["duration_s"] == 2 * TRAIN_STEP_S
    assert run.epochs[-1]["samples"] == BATCH  # the failing batch never finished
    assert run.info["status"] == "interrupted"


def test_validate_test_and_predict_are_phases_of_the_same_run(tmp_path, clock):
    trainer = trainer_for(tmp_path, callback_for(clock), max_epochs=1, num_sanity_val_steps=0)
    model = ClockedModel(clock)
    trainer.fit(model)
    trainer.validate(model)
    trainer.test(model)
    trainer.predict(model)
    run = only_run(tmp_path)
    assert keys(run) == [
        (0, "validation", "complete"),
        (0, "train", "complete"),
        (None, "validation", "complete"),
        (None, "test", "complete"),
        (None, "predict", "complete"),
    ]
    assert [r["samples"] for r in run.epochs[2:]] == [EVAL_BATCHES * BATCH] * 3
    assert run.epochs[-1]["cumulative_energy_kwh"] == pytest.approx(kwh(TRAIN_S + 4 * EVAL_S))


@pytest.mark.parametrize(
    "options",
    [
        {"pue": 0.5},
        {"interval_s": 0.0},
        {"measure": ("disk",)},
        {"epochs": 0},
        {"gpu_devices": [-1]},
        {"jitter": 2.0},
        {"run_name": "a/b"},
    ],
)
def test_invalid_options_fail_in_the_constructor_with_the_trackers_message(tmp_path, options):
    with pytest.raises(ConfigurationError) as from_tracker:
        EnergyTracker(tmp_path, sensors=[], **options)
    with pytest.raises(ConfigurationError) as from_callback:
        EnergyCallback(**options)
    assert str(from_callback.value) == str(from_tracker.value)


def test_unknown_option_is_named():
    with pytest.raises(ConfigurationError, match="colour"):
        EnergyCallback(colour="green")


def test_unwritable_log_dir_fails_at_setup_before_the_first_batch(tmp_path, clock):
    (tmp_path / "a-file").write_text("")
    model = ClockedModel(clock)
    trainer = trainer_for(tmp_path, callback_for(clock, log_dir=tmp_path / "a-file" / "energy"))
    with pytest.raises(ConfigurationError, match="a-file"):
        trainer.fit(model)
    assert model.train_steps == 0


def test_a_rank_whose_gpu_is_not_in_nvml_measures_without_it(tmp_path, caplog):
    # Local rank 1 of 2 training on cuda:1, where NVML shows one GPU only.
    trainer = SimpleNamespace(
        world_size=1,
        is_global_zero=True,
        local_rank=1,
        global_rank=1,
        num_devices=2,
        max_epochs=3,
        strategy=SimpleNamespace(root_device=torch.device("cuda", 1)),
        log_dir=str(tmp_path),
    )
    callback = EnergyCallback(nvml=FakeNvml([FakeGpu()]), carbon_intensity_g_per_kwh=INTENSITY, **PATIENT)
    with caplog.at_level(logging.WARNING):
        callback.setup(trainer, None, "fit")
    assert callback.tracker.discovery.sensors == []
    assert "rank 1 measures without its GPU" in caplog.text
    callback.teardown(trainer, None, "fit")


@pytest.mark.parametrize(
    ("device", "local_rank", "processes", "gpu_devices", "expected"),
    [
        (torch.device("cpu"), 0, 1, None, (("gpu", "cpu", "ram"), None, False)),  # alone: every visible GPU
        (torch.device("cuda", 1), 0, 1, None, (("gpu", "cpu", "ram"), None, False)),
        (torch.device("cpu"), 0, 2, None, (("gpu", "cpu", "ram"), None, False)),  # CPU DDP: node-level GPUs
        (torch.device("cpu"), 1, 2, None, (("gpu",), None, False)),  # every GPU it sees; duplicates dropped
        (torch.device("cuda", 3), 0, 4, None, (("gpu", "cpu", "ram"), [3], True)),  # each rank its own GPU
        (torch.device("cuda", 3), 3, 4, None, (("gpu",), [3], True)),
        (torch.device("cuda", 1), 1, 2, [0, 1], (("gpu",), [0, 1], False)),  # GPUs named: the lowest rank's kept
        (torch.device("cuda", 1), 0, 2, [0, 1], (("gpu", "cpu", "ram"), [0, 1], False)),
    ],
)
def test_placement(device, local_rank, processes, gpu_devices, expected):
    assert placement(device, local_rank, processes, gpu_devices, ("gpu", "cpu", "ram")) == expected


@pytest.mark.parametrize(
    ("batch", "size"),
    [
        (torch.zeros(5, 3), 5),
        ((torch.zeros(7), torch.zeros(2)), 7),
        ({"x": [torch.zeros(3, 1)]}, 3),
        (["text", torch.zeros(4)], 4),
        (torch.tensor(1.0), 1),
        (["no tensor"], None),
    ],
)
def test_batch_size(batch, size):
    assert batch_size(batch) == size


def test_pytorch_lightning_users_get_the_same_callback(tmp_path, clock):
    import pytorch_lightning
    from pytorch_lightning.demos.boring_classes import BoringModel as PLBoringModel

    from integrations.lightning import PLEnergyCallback

    callback = PLEnergyCallback(
        sensors=fake_sensors(clock), clock=clock, carbon_intensity_g_per_kwh=INTENSITY, **PATIENT
    )
    assert isinstance(callback, pytorch_lightning.Callback) and PLEnergyCallback.__doc__ == EnergyCallback.__doc__

    class Model(PLBoringModel):
        def training_step(self, batch, batch_idx):
            clock.advance(TRAIN_STEP_S)
            return super().training_step(batch, batch_idx)

    trainer = pytorch_lightning.Trainer(
        default_root_dir=tmp_path,
        max_epochs=1,
        limit_train_batches=TRAIN_BATCHES,
        limit_val_batches=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    trainer.fit(Model())
    assert keys(only_run(tmp_path)) == [(0, "train", "complete")]
    assert only_run(tmp_path).epochs[0]["duration_s"] == TRAIN_S


@pytest.mark.gpu
def test_real_cuda_trainer_with_real_nvml(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here")
    uuid = str(torch.cuda.get_device_properties(0).uuid)
    trainer = L.Trainer(
        default_root_dir=tmp_path,
        accelerator="gpu",
        devices=1,
        max_epochs=2,
        limit_train_batches=50,
        limit_val_batches=10,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[EnergyCallback(carbon_intensity_g_per_kwh=INTENSITY, **PATIENT)],
    )
    trainer.fit(BoringModel())
    run = only_run(tmp_path)
    train = [r for r in run.epochs if r["phase"] == "train"]
    assert [r["epoch"] for r in train] == [0, 1]
    assert all(r["gpu_method"] in ("energy_counter", "power_polling") and r["gpu_kwh"] > 0 for r in train)
    assert any(d["kind"] == "gpu" and d["uuid"].removeprefix("GPU-") == uuid for d in run.devices)


def test_quickstart_example_prints_the_summary_and_a_csv_pandas_reads(tmp_path, monkeypatch, capsys):
    import runpy
    from pathlib import Path

    import pandas as pd

    script = Path(__file__).resolve().parents[1] / "examples" / "lightning_quickstart.py"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENERGY_TRACKER_COUNTRY", "FRA")
    monkeypatch.setattr("sys.argv", [str(script), "--epochs", "2", "--log-dir", str(tmp_path / "energy")])
    runpy.run_path(str(script), run_name="__main__")  # in this process: importing Lightning again costs seconds
    (csv_path,) = (tmp_path / "energy").glob("*/epochs.csv")
    out = capsys.readouterr().out
    assert f"per-epoch CSV: {csv_path}" in out and "Energy tracker" in out
    frame = pd.read_csv(csv_path)
    assert list(frame[frame.phase == "train"].epoch) == [0, 1]
    assert set(frame.phase) <= {"sanity_check", "validation", "train", "other"}
    assert (frame.intensity_method == "environment").all()
