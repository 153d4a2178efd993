"""Sinks with the real libraries: MLflow (a SQLite store), TensorBoard (its own event reader), W&B (offline run files).

Each test skips when its extra is not installed. The tracker runs on fake sensors of known power.
"""

import logging

import pytest

from integrations.loop import EnergyLoopCallback
from tests.helpers import PATIENT, job_train_row, run_for
from tracker import EnergyTracker, MLflowSink, TensorBoardSink, load_run
from tracker.errors import ConfigurationError
from tracker.job.placement import Launch
from tracker.testing import FakeSensor, steady

KWH_PER_EPOCH = 330 * 10 / 3.6e6  # 300 W of GPU and 30 W of CPU for 10 s


@pytest.fixture
def sensors(clock):
    return [FakeSensor("gpu:0", "gpu", steady(300.0), clock), FakeSensor("cpu", "cpu", steady(30.0), clock)]


def train(tmp_path, clock, sensors, epochs=3, **options):
    options = dict(sensors=sensors, clock=clock, carbon_intensity_g_per_kwh=400.0, **options)
    with EnergyTracker(tmp_path / "logs", **options) as energy:
        for epoch in range(epochs):
            with energy.epoch(epoch):
                run_for(energy, clock, 10.0)
            with energy.phase("validation"):
                run_for(energy, clock, 1.0)
    return energy


def test_mlflow_sink_logs_each_row_into_a_sqlite_store(tmp_path, clock, sensors):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    energy = train(tmp_path, clock, sensors, sinks=[MLflowSink(tracking_uri=uri)], experiment="sweep")
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("sweep").experiment_id])
    assert run.info.run_name == energy.run_dir.name and run.info.status == "FINISHED"
    epochs = client.get_metric_history(run.info.run_id, "energy/epoch_kwh")
    assert [m.value for m in epochs] == pytest.approx([KWH_PER_EPOCH] * 3)
    totals = client.get_metric_history(run.info.run_id, "energy/total_kwh")
    rows = load_run(energy.run_dir).epochs
    assert totals[-1].value == pytest.approx(rows[-1]["cumulative_energy_kwh"])
    assert [m.step for m in totals] == sorted(m.step for m in totals) and len(totals) == len(rows)
    assert client.get_metric_history(run.info.run_id, "energy/gpu_power_w")[0].value == pytest.approx(300.0)


def test_mlflow_sink_logs_into_the_active_run(tmp_path, clock, sensors):
    mlflow = pytest.importorskip("mlflow")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        with mlflow.start_run() as active:
            train(tmp_path, clock, sensors, epochs=2, sinks=["mlflow"])
        history = mlflow.MlflowClient().get_metric_history(active.info.run_id, "energy/epoch_kwh")
    finally:
        mlflow.set_tracking_uri(None)
    assert [m.value for m in history] == pytest.approx([KWH_PER_EPOCH] * 2)


def test_tensorboard_sink_writes_scalars_tensorboard_reads(tmp_path, clock, sensors):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    energy = train(tmp_path, clock, sensors, sinks=["tensorboard"])
    events = EventAccumulator(str(energy.run_dir / "tensorboard"))
    events.Reload()
    epochs = events.Scalars("energy/epoch_kwh")
    assert [e.value for e in epochs] == pytest.approx([KWH_PER_EPOCH] * 3, rel=1e-6)  # float32
    assert events.Scalars("energy/eval_kwh")[0].value == pytest.approx(330 * 1 / 3.6e6, rel=1e-6)
    assert "energy/total_co2_kg" in events.Tags()["scalars"]


H100 = "NVIDIA H100 80GB HBM3"  # a GPU model with a footprint in the embodied table
TERMS = (("energy/total_embodied_co2_kg", "energy/epoch_embodied_co2_kg", "embodied_co2_kg"),
         ("energy/total_water_l", "energy/epoch_water_l", "water_l"),
         ("energy/total_node_kwh", "energy/epoch_node_kwh", "node_kwh"))  # fmt: skip


def test_the_counted_terms_are_logged_with_the_rows_figures_and_absent_when_off(tmp_path, clock):
    pytest.importorskip("tensorboard")
    gpu = FakeSensor("gpu:0", "gpu", steady(300.0), clock, info={"name": H100})
    node = FakeSensor("node", "node", steady(500.0), clock)
    on = train(tmp_path / "on", clock, [gpu, node], sinks=["tensorboard"], embodied=True, wue_l_per_kwh=0.5)
    rows = load_run(on.run_dir).epochs
    logged = scalars(on.run_dir / "tensorboard")
    for total, epoch, column in TERMS:
        per_epoch = [r[column] for r in rows if r["phase"] == "train"]  # the validation after each is not in it
        assert [v for _, v in logged[epoch]] == pytest.approx(per_epoch, rel=1e-6) and min(per_epoch) > 0
        assert [v for _, v in logged[total]][-1] == pytest.approx(sum(r[column] for r in rows), rel=1e-6)
        assert len(logged[total]) == len(rows)  # at every row, as the energy
    node_kwh, kwh = logged["energy/total_node_kwh"][-1][1], logged["energy/total_kwh"][-1][1]
    assert kwh == pytest.approx(sum(r["energy_kwh"] for r in rows), rel=1e-6) and node_kwh > kwh  # never added
    off = train(tmp_path / "off", clock, sensors_of(clock), sinks=["tensorboard"])
    names = set(scalars(off.run_dir / "tensorboard"))
    assert "energy/total_kwh" in names and not names & {key for term in TERMS for key in term[:2]}  # no 0 for none


def test_a_jobs_counted_terms_are_logged_merged_with_each_host_s_node_once(tmp_path, clock):
    """Two ranks on one host, each reading its node's meter (the launcher did not say who shares it)."""
    pytest.importorskip("tensorboard")
    trackers = []
    for rank in (0, 1):
        launch = Launch(rank, 0, 2, 1, "t2", "given", 0, False, "token")
        found = [FakeSensor(f"gpu:{rank}", "gpu", steady(300.0), clock, info={"name": H100, "uuid": f"GPU-{rank}"}),
                 FakeSensor("node", "node", steady(900.0), clock)]  # fmt: skip
        options = {"embodied": True, "wue_l_per_kwh": 0.5, "sinks": ["tensorboard"] if rank == 0 else [],
                   "launch": launch, "host": "node-a", "carbon_intensity_g_per_kwh": 100.0}  # fmt: skip
        trackers.append(EnergyTracker(tmp_path / "logs", sensors=found, clock=clock, sampling="manual", **options,
                                      **PATIENT))  # fmt: skip
    merged = job_train_row(tmp_path / "logs", trackers, clock, 3600.0)  # rank 1 stops first: rank 0's sink ends last
    logged = scalars(trackers[0].run_dir / "tensorboard")
    assert merged["node_kwh"] == pytest.approx(0.9)  # the host's meter once, not once per rank
    for _, epoch, column in TERMS:
        assert logged[epoch][-1][1] == pytest.approx(merged[column], rel=1e-6)
    assert logged["energy/epoch_kwh"][-1][1] == pytest.approx(0.6, rel=1e-6)  # both GPUs; the node beside them


def test_a_resumed_runs_totals_count_its_earlier_rows_too(tmp_path, clock):
    pytest.importorskip("tensorboard")
    gpu = FakeSensor("gpu:0", "gpu", steady(300.0), clock, info={"name": H100})
    options = {"sensors": [gpu], "clock": clock, "sampling": "manual", "carbon_intensity_g_per_kwh": 400.0,
               "embodied": True, "sinks": ["tensorboard"]}  # fmt: skip
    with EnergyTracker(tmp_path, **options, **PATIENT) as first, first.epoch(0):
        clock.advance(10.0)
    later = EnergyTracker(tmp_path, **options, **PATIENT)
    later.resume(first.state())
    with later, later.epoch(1):
        clock.advance(10.0)
    rows = load_run(later.run_dir).epochs
    logged = scalars(later.run_dir / "tensorboard")
    assert logged["energy/total_kwh"][-1][1] == pytest.approx(sum(r["energy_kwh"] for r in rows), rel=1e-6)
    total = sum(r["embodied_co2_kg"] for r in rows)
    assert logged["energy/total_embodied_co2_kg"][-1][1] == pytest.approx(total, rel=1e-6)
    assert total > 1.5 * rows[-1]["embodied_co2_kg"]  # both runs' rows


def sensors_of(clock):
    return [FakeSensor("gpu:0", "gpu", steady(300.0), clock), FakeSensor("cpu", "cpu", steady(30.0), clock)]


def test_loop_callbacks_take_sinks_too(tmp_path, clock, sensors):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cb = EnergyLoopCallback(log_dir=tmp_path, sensors=sensors, clock=clock, carbon_intensity_g_per_kwh=400.0,
                            sinks=[TensorBoardSink(log_dir=tmp_path / "tb")])  # fmt: skip
    cb.on_train_begin()
    for epoch in range(2):
        cb.on_epoch_begin(epoch)
        run_for(cb.tracker, clock, 10.0)
        cb.on_epoch_end(epoch)
    cb.on_train_end()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [e.value for e in events.Scalars("energy/epoch_kwh")] == pytest.approx([KWH_PER_EPOCH] * 2, rel=1e-6)


def test_wandb_sink_logs_into_the_active_offline_run(tmp_path, clock, sensors, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = wandb.init(project="energy", dir=str(tmp_path))
    try:
        train(tmp_path, clock, sensors, epochs=2, sinks=["wandb"])
    finally:
        run.finish()
        wandb.teardown()  # its service's threads
    logged = offline_history(tmp_path)
    epochs = [(row["energy/step"], row["energy/epoch_kwh"]) for row in logged if "energy/epoch_kwh" in row]
    assert [kwh for _, kwh in epochs] == pytest.approx([KWH_PER_EPOCH] * 2)
    assert [step for step, _ in epochs] == sorted(step for step, _ in epochs)


def offline_history(root):
    """The history rows of the offline W&B run under ``root``: its ``.wandb`` file's protobuf records.

    The file is LevelDB's log format (W&B's ``datastore``): a 7-byte file header, then 32 KiB blocks of
    records, each a 7-byte header (CRC32C, length, type: 1 full, 2 first, 3 middle, 4 last) and its data.
    """
    import json

    from wandb.proto import wandb_internal_pb2

    (path,) = root.rglob("offline-run-*/run-*.wandb")
    data, pos, pending, rows = path.read_bytes(), 7, b"", []
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        if kind == 0:
            break
        pending, pos = pending + data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return rows


class Broken:
    name = "broken"

    def open(self, run):
        self.run = run

    def write(self, metrics, step):
        raise RuntimeError("server down")

    def close(self):
        pass


def test_a_failing_sink_is_one_warning_and_training_goes_on(tmp_path, clock, sensors, caplog):
    with caplog.at_level(logging.DEBUG, logger="tracker"):
        energy = train(tmp_path, clock, sensors, sinks=[Broken()])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "broken sink failed" in r.getMessage()]
    assert len(warnings) == 1 and "server down" in warnings[0].getMessage()
    assert len([r for r in load_run(energy.run_dir).epochs if r["phase"] == "train"]) == 3


def test_bad_sinks_are_refused_at_construction(tmp_path):
    with pytest.raises(ConfigurationError, match="'neptune' is not a sink; give some of"):
        EnergyTracker(tmp_path, sinks=["neptune"])
    with pytest.raises(ConfigurationError, match="is not a sink; give a name"):
        EnergyTracker(tmp_path, sinks=[object()])


def test_lightning_and_hugging_face_refuse_sinks():
    lightning = pytest.importorskip("integrations.lightning")
    with pytest.raises(ConfigurationError, match="log them twice"):
        lightning.EnergyCallback(sinks=["mlflow"])


def scalars(log_dir):
    """``{tag: [(step, value)]}`` of the event files under ``log_dir``, read by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.slow
def test_under_torchrun_rank_zeros_sinks_log_the_jobs_rows_merged_across_ranks(tmp_path):
    pytest.importorskip("tensorboard")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "distributed"))
    from launch import finish, torchrun

    board = tmp_path / "tb"
    args = ("--gpus", "2", "--own", "--group", "--epochs", "3", "--epoch-s", "0.4", "--tensorboard", str(board))
    finish(torchrun(tmp_path, "--standalone", "--nproc-per-node=2", script_args=args))
    (job,) = (tmp_path / "logs").iterdir()
    merged, own = load_run(job).epochs, load_run(job / "ranks" / "node-a-r0").epochs
    assert len(list(board.glob("events.out.tfevents.*"))) == 1  # rank 0's sink alone; rank 1 logs nothing
    logged = scalars(board)
    train = [r["energy_kwh"] for r in merged if r["phase"] == "train"]  # every rank's GPU, counted once
    assert [v for _, v in logged["energy/epoch_kwh"]] == pytest.approx(train, rel=1e-6)  # float32
    share = dict(logged["energy/ranks_share"])
    assert [share[step] for step, _ in logged["energy/epoch_kwh"]] == [1.0] * 3  # each epoch held both ranks' rows
    job_kwh, own_kwh = sum(r["energy_kwh"] for r in merged), sum(r["energy_kwh"] for r in own)
    assert logged["energy/total_kwh"][-1][1] == pytest.approx(job_kwh, rel=1e-6)
    assert job_kwh > own_kwh * 1.2  # rank 1's 150 W GPU: the job's figures are not rank 0's share


class Follower:
    """A job's rows as a follower reads them at each look: ``ranks`` of ``world_size`` in each."""

    def __init__(self, rows, finished=False):
        self.answer, self.finished_ = rows, finished

    def rows(self):
        return self.answer

    def finished(self):
        return self.finished_


def job_row(epoch, phase, ranks, kwh, end="2026-12-06T10:00:01Z"):
    return {"epoch": epoch, "phase": phase, "ranks": ranks, "world_size": 2, "energy_kwh": kwh, "co2_kg": kwh / 2,
            "gpu_kwh": kwh, "duration_s": 1.0, "gpu_power_mean_w": None, "status": "complete", "last_step": None,
            "end_utc": end}  # fmt: skip


def test_a_row_waits_for_every_rank_and_is_sent_with_its_share_at_the_end():
    from tracker.session.job_metrics import JobRows

    rows = [job_row(None, "other", 2, 1.0, end="2026-12-06T09:00:00Z"), job_row(0, "train", 2, 2.0),
            job_row(None, "other", 1, 0.5), job_row(1, "train", 1, 3.0)]  # fmt: skip
    follower = Follower(rows[:2])
    job = JobRows(follower, since_utc="2026-12-06T10:00:00Z", grace_s=0.0)
    (first,) = job.look()  # the row before this tracker's start (a resumed job's) counts, but is not sent again
    assert first[0]["energy/epoch_kwh"] == 2.0 and first[0]["energy/total_kwh"] == 3.0
    follower.answer = rows
    assert job.look() == [] and job.waiting  # rank 1 has not written past the other row, nor epoch 1's row
    late = job.finish()  # rank 1 never stopped: after the grace, what is left, with the share it held
    assert [m["energy/ranks_share"] for m, _ in late] == [0.5, 0.5]
    assert late[-1][0]["energy/epoch_kwh"] == 3.0 and late[-1][0]["energy/total_kwh"] == 6.5
    assert not job.waiting and job.finish() == []
