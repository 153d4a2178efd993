"""Every row reaches the user's code: ``on_row``, ``last_row``, the loop callbacks' return values, ``job_id``."""

import logging

import pytest

from integrations.loop import EnergyLoopCallback
from tests.helpers import run_for
from tracker import DeviceRecord, EnergyTracker, EpochRecord, load_run
from tracker.errors import ConfigurationError
from tracker.testing import FakeSensor, steady


@pytest.fixture
def sensors(clock):
    return [FakeSensor("gpu:0", "gpu", steady(300.0), clock), FakeSensor("cpu", "cpu", steady(30.0), clock)]


def test_on_row_gets_every_row_as_written(tmp_path, clock, sensors):
    seen = []
    options = dict(sensors=sensors, clock=clock, carbon_intensity_g_per_kwh=400.0)
    with EnergyTracker(tmp_path, on_row=lambda row, devices: seen.append((row, devices)), **options) as energy:
        assert energy.last_row is None
        with energy.epoch(0):
            run_for(energy, clock, 10.0)
            energy.log_metrics({"loss": 0.5})
        assert energy.last_row == seen[-1][0]
        with energy.phase("validation"):
            run_for(energy, clock, 2.0)
    written = load_run(energy.run_dir).epochs
    as_read = [{k: None if v == "" else v for k, v in r.as_row().items()} for r, _ in seen]  # empty text reads as None
    assert as_read == [{k: w[k] for k in EpochRecord._fields} for w in written]
    assert all(isinstance(r, EpochRecord) for r, _ in seen)
    train, devices = seen[0]
    assert (train.epoch, train.phase, train.gpu_kwh) == (0, "train", pytest.approx(3000 / 3.6e6))
    assert [(d.sensor, d.kind) for d in devices] == [("gpu:0", "gpu"), ("cpu", "cpu")]
    assert all(isinstance(d, DeviceRecord) for d in devices)
    assert energy.last_row == seen[-1][0] and energy.last_row.phase in ("validation", "other")


def test_on_row_that_raises_is_one_warning_and_training_goes_on(tmp_path, clock, sensors, caplog):
    def broken(row, devices):
        raise RuntimeError("dashboard down")

    options = dict(sensors=sensors, clock=clock, carbon_intensity_g_per_kwh=400.0, on_row=broken)
    with caplog.at_level(logging.DEBUG, logger="tracker"), EnergyTracker(tmp_path, **options) as energy:
        for epoch in range(3):
            with energy.epoch(epoch):
                run_for(energy, clock, 5.0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "on_row failed" in r.getMessage()]
    assert len(warnings) == 1 and "dashboard down" in warnings[0].getMessage()
    assert [r["epoch"] for r in load_run(energy.run_dir).epochs if r["phase"] == "train"] == [0, 1, 2]


def test_on_row_must_be_callable(tmp_path):
    with pytest.raises(ConfigurationError, match="on_row=3 is not callable"):
        EnergyTracker(tmp_path, on_row=3)


def test_loop_callbacks_return_the_row_they_wrote(tmp_path, clock, sensors):
    cb = EnergyLoopCallback(log_dir=tmp_path, sensors=sensors, clock=clock, carbon_intensity_g_per_kwh=400.0)
    cb.on_train_begin()
    cb.on_epoch_begin(0)
    run_for(cb.tracker, clock, 4.0)
    cb.on_phase_begin("validation")
    run_for(cb.tracker, clock, 1.0)
    val = cb.on_phase_end(logs={"val_loss": 0.2})
    row = cb.on_epoch_end(0, logs={"loss": 0.5})
    cb.on_train_end()
    assert (val.phase, val.epoch, row.phase, row.epoch) == ("validation", 0, "train", 0)
    assert row.gpu_kwh == pytest.approx(300 * 4 / 3.6e6) and row.status == "complete"
    assert row.cumulative_energy_kwh == pytest.approx(330 * 5 / 3.6e6)


JOB_VARIABLES = ("TORCHELASTIC_RUN_ID", "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "POD_NAME",
                 "KUBERNETES_SERVICE_HOST", "WORLD_SIZE", "RANK", "LOCAL_RANK")  # fmt: skip


@pytest.mark.parametrize(
    ("environ", "given", "expected"),
    [
        ({}, None, ""),
        ({"SLURM_JOB_ID": "4242"}, None, "4242"),
        ({"SLURM_JOB_ID": "4250", "SLURM_ARRAY_JOB_ID": "4242", "SLURM_ARRAY_TASK_ID": "7"}, None, "4242_7"),
        ({"TORCHELASTIC_RUN_ID": "rdzv-1", "SLURM_JOB_ID": "4242"}, None, "rdzv-1"),
        ({"TORCHELASTIC_RUN_ID": "none", "SLURM_JOB_ID": "4242"}, None, "4242"),
        ({"POD_NAME": "train-7f9c"}, None, "train-7f9c"),
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOSTNAME": "train-abc12"}, None, "train-abc12"),
        ({"HOSTNAME": "laptop"}, None, ""),  # outside Kubernetes a host name is no job
        ({"SLURM_JOB_ID": "4242"}, "sweep-3", "sweep-3"),
    ],
)
def test_every_row_carries_the_job_id(tmp_path, clock, sensors, monkeypatch, environ, given, expected):
    for name in (*JOB_VARIABLES, "HOSTNAME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    options = dict(sensors=sensors, clock=clock, carbon_intensity_g_per_kwh=400.0, job_id=given)
    with EnergyTracker(tmp_path, **options) as energy:
        with energy.epoch(0):
            run_for(energy, clock, 2.0)
    rows = load_run(energy.run_dir).epochs
    assert [r["job_id"] or "" for r in rows] == [expected] * len(rows) and rows
    assert energy.last_row.job_id == expected
