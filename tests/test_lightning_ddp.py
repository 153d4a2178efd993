"""EnergyCallback under real DDP: two processes on CPU (Lightning's ``ddp`` strategy, gloo).

Lightning's ``ddp`` launcher starts rank 1 by running the launching script again, which a pytest
process cannot host; so the test runs this file as a script (``python tests/test_lightning_ddp.py
OUT``) and checks what it leaves in ``OUT``. Each process builds its own fake NVML with two GPUs
(steady 150 W and 250 W), and is given GPU ``local_rank`` the way Lightning does on CUDA: its root
device is ``cuda:<local_rank>`` and torch reports that device's UUID (without ``GPU-``). Each process
records every energy-counter reading its fake GPUs answer, with the fake's own time, so the true
energy of each GPU over the interval its rank measured is known exactly. Every rank writes a shard
of its own under one job directory, as under torchrun; the job is read back merged (``load_run``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tracker.testing import FakeClock, FakeGpu, FakeNvml, steady

pytestmark = pytest.mark.slow  # real processes: they still run in CI

GPU_W = (150.0, 250.0)
TRAIN_BATCHES, VAL_BATCHES, BATCH = 3, 2, 4


class RecordingNvml(FakeNvml):
    """The fake NVML, keeping ``(gpu, time_s, mJ)`` of every energy-counter reading it answers."""

    def __init__(self, gpus: list[FakeGpu], clock: FakeClock | None = None) -> None:
        self.last_s = 0.0
        super().__init__(gpus, clock=self._now)
        self.reads: list[tuple[int, float, int]] = []

    def _now(self) -> float:
        import time

        self.last_s = time.monotonic()
        return self.last_s

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):  # noqa: N802 - NVML's name
        with self._lock:  # the fake reads its clock once per call, under this lock
            value = super().nvmlDeviceGetTotalEnergyConsumption(handle)
            self.reads.append((handle.gpu, self.last_s, value))
            return value


def run(out: Path, fail_rank: int | None = None, prometheus_port: int | None = None) -> None:
    """One rank of the DDP run (rank 0 launches rank 1 by running this file again).

    With ``fail_rank``, that rank raises in the second batch of epoch 1, and the others do not. With
    ``prometheus_port``, each rank serves its rows there (on loopback) and scrapes its own endpoint at
    the end of training (:func:`scrape`).
    """
    from types import SimpleNamespace

    import lightning.pytorch as L
    import torch
    from lightning.pytorch.demos.boring_classes import BoringModel, RandomDataset
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader

    import integrations.lightning as integration

    nvml = RecordingNvml([FakeGpu(trace=steady(w)) for w in GPU_W])
    uuids = [gpu.uuid for gpu in nvml.gpus]
    # What Lightning's DDP gives a rank on CUDA, faked at torch's boundary: its root device is
    # cuda:<local_rank>, and torch reports that device's UUID without the "GPU-" prefix.
    torch.cuda.get_device_properties = lambda index: SimpleNamespace(uuid=uuids[index].removeprefix("GPU-"))
    placement = integration.placement
    integration.placement = lambda device, rank, *rest: placement(torch.device("cuda", rank), rank, *rest)

    class Model(BoringModel):
        def training_step(self, batch, batch_idx):
            if (self.global_rank, self.current_epoch, batch_idx) == (fail_rank, 1, 1):
                raise RuntimeError(f"boom on rank {fail_rank}")
            return super().training_step(batch, batch_idx)

        def setup(self, stage: str) -> None:
            nvml.reads.clear()  # after the callback's setup, where discovery probed the counters

        def teardown(self, stage: str) -> None:
            (out / f"reads-{self.global_rank}.json").write_text(json.dumps(nvml.reads))

        def train_dataloader(self) -> DataLoader:
            return DataLoader(RandomDataset(32, 64), batch_size=BATCH)

        def val_dataloader(self) -> DataLoader:
            return DataLoader(RandomDataset(32, 64), batch_size=BATCH)

    callback = integration.EnergyCallback(
        nvml=nvml,
        powercap_root=out / "no-powercap",
        cpu_tdp_w=65.0,
        ram_w=5.0,
        carbon_intensity_g_per_kwh=400.0,
        embodied=True,  # the fake GPUs' model is in no table: the host's share alone
        wue_l_per_kwh=0.5,
        sampling="manual",  # no background reading: every reading is a row boundary
        interval_s=3600.0,  # and the time between two is no gap
        prometheus_port=loopback(prometheus_port),
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=2,
        limit_train_batches=TRAIN_BATCHES,
        limit_val_batches=VAL_BATCHES,
        num_sanity_val_steps=0,
        logger=CSVLogger(out),
        default_root_dir=out,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback, *scrapers(out, prometheus_port, callback)],
    )
    try:
        trainer.fit(Model())
    except RuntimeError:
        if trainer.global_rank != fail_rank:
            raise
        # The failing rank exits cleanly: Lightning's process observer would otherwise kill rank 0
        # before it meets the broken connection in its own gradient all-reduce.
        return
    for process in getattr(trainer.strategy.launcher, "procs", []):
        process.wait(timeout=60)


def loopback(port: int | None) -> str | None:
    """``prometheus_port`` on loopback alone (``None``: no endpoint)."""
    return None if port is None else f"127.0.0.1:{port}"


def scrapers(out: Path, port: int | None, energy) -> list:
    """A callback after ``energy`` that scrapes each rank's endpoint at the end of training (none without a port)."""
    from lightning.pytorch.callbacks import Callback

    class Scraper(Callback):
        def on_train_end(self, trainer, pl_module) -> None:  # after energy's: every training row written, running
            scrape(out, port, trainer, energy.tracker)

    return [] if port is None else [Scraper()]


def scrape(out: Path, port: int, trainer, tracker) -> None:
    """Scrape this rank's endpoint (``port`` + its local rank) until its GPU counters hold its rows so far.

    Writes ``OUT/scrape-<rank>.json``: the port, the exposition text, and the GPU energy of this rank's rows, J.
    """
    import time
    import urllib.request

    mine = port + trainer.local_rank
    own_j = tracker.state()["totals"]["gpu_kwh"] * 3_600_000
    deadline = time.monotonic() + 30.0
    while True:  # the sink thread moves the counters after the row is written
        with urllib.request.urlopen(f"http://127.0.0.1:{mine}/metrics", timeout=5.0) as reply:
            text = reply.read().decode()
        if gpu_joules(text) == pytest.approx(own_j, rel=1e-9) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    scraped = {"port": mine, "text": text, "own_gpu_j": own_j}
    (out / f"scrape-{trainer.global_rank}.json").write_text(json.dumps(scraped))


def gpu_joules(text: str) -> float:
    """The sum of the GPU energy counters in a Prometheus exposition text, J."""
    lines = [line for line in text.splitlines() if line.startswith("hw_energy_joules_total{")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if 'hw_type="gpu"' in line)


def series_labels(text: str) -> list[dict[str, str]]:
    """The labels of each ``hw_energy_joules_total`` series in an exposition text."""
    import re

    found = re.findall(r"^hw_energy_joules_total\{(.*?)\} ", text, flags=re.MULTILINE)
    return [dict(re.findall(r'(\w+)="([^"]*)"', labels)) for labels in found]


def launch(out: Path, *args: str) -> subprocess.CompletedProcess:
    (out / "no-powercap").mkdir()
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for name in ("CUDA_VISIBLE_DEVICES", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK"):
        env.pop(name, None)  # every fake GPU visible; this run launches its own ranks
    return subprocess.run(
        [sys.executable, __file__, str(out), *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def only_run(out: Path):
    from tracker import load_run

    jobs = sorted(p.parent for p in out.rglob("ranks"))
    assert len(jobs) == 1, jobs  # one job directory for both ranks (their token agreed once, at setup)
    assert list(jobs[0].parent.iterdir()) == jobs  # nothing else beside it
    shards = sorted(p.name for p in (jobs[0] / "ranks").iterdir())
    assert [name.rsplit("-", 1)[1] for name in shards] == ["r0", "r1"]  # a shard per rank
    run = load_run(jobs[0])
    assert [a["ranks"] for a in run.info["attempts"]] == [[0, 1]]  # one attempt: rank 1 is rank 0's child
    return run


def non_other(run):
    """The rows of epochs and phases; ``other`` rows are each rank's own, written once they hold 1 s."""
    return [r for r in run.epochs if r["phase"] != "other"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    from tests.helpers import free_port  # here: this file also runs as the ranks' script, without the package

    served = importlib.util.find_spec("prometheus_client") is not None  # each rank's endpoint, when it can be
    done = launch(out, *(("--prometheus-port", str(free_port(2))) if served else ()))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    reads = {rank: json.loads((out / f"reads-{rank}.json").read_text()) for rank in (0, 1)}
    return only_run(out), reads, out


def test_rows_are_written_once_with_every_phase(ddp_run):
    run, _, _ = ddp_run
    assert [(r["epoch"], r["phase"], r["status"]) for r in non_other(run)] == [
        (0, "validation", "complete"), (0, "train", "complete"),
        (1, "validation", "complete"), (1, "train", "complete"),
    ]  # fmt: skip
    assert run.epochs[-1]["phase"] == "other" and {r["status"] for r in run.epochs} == {"complete"}
    assert "no row from" not in " ".join(str(r["notes"]) for r in non_other(run))  # every rank has every row
    # DistributedSampler gives each of the 2 ranks its own batches; samples are summed over ranks.
    assert [r["samples"] for r in run.epochs if r["phase"] == "train"] == [2 * TRAIN_BATCHES * BATCH] * 2
    assert [r["samples"] for r in run.epochs if r["phase"] == "validation"] == [2 * VAL_BATCHES * BATCH] * 2


def test_each_rank_measures_its_own_gpu_and_node_sensors_once(ddp_run):
    run, _, _ = ddp_run
    others = [(d["kind"], d["sensor"], d["rank"]) for d in run.devices if d["phase"] == "other"]
    assert set(others) <= {("cpu", "cpu", 0), ("gpu", "gpu:0", 0), ("gpu", "gpu:1", 1), ("ram", "ram", 0)}
    for row in non_other(run):
        devices = [d for d in run.devices if (d["epoch"], d["phase"]) == (row["epoch"], row["phase"])]
        assert sorted((d["kind"], d["sensor"], d["rank"]) for d in devices) == [
            ("cpu", "cpu", 0),
            ("gpu", "gpu:0", 0),
            ("gpu", "gpu:1", 1),
            ("ram", "ram", 0),
        ]
        by_kind = {kind: sum(d["energy_kwh"] for d in devices if d["kind"] == kind) for kind in ("gpu", "cpu", "ram")}
        assert row["gpu_kwh"] == pytest.approx(by_kind["gpu"], rel=1e-12)
        assert row["cpu_kwh"] == pytest.approx(by_kind["cpu"], rel=1e-12)
        assert row["ram_kwh"] == pytest.approx(by_kind["ram"], rel=1e-12)
    gpu_uuids = {d["sensor"]: d["uuid"] for d in run.devices if d["kind"] == "gpu"}
    assert gpu_uuids == {f"gpu:{i}": FakeNvml(2).gpus[i].uuid for i in (0, 1)}


def test_total_gpu_energy_is_both_gpus_true_energy(ddp_run):
    run, reads, _ = ddp_run
    true_j = 0.0
    for rank, gpu in ((0, 0), (1, 1)):
        times = [t for g, t, _ in reads[rank] if g == gpu]
        assert {g for g, _, _ in reads[rank]} == {gpu}  # a rank reads only its own GPU
        true_j += GPU_W[gpu] * (times[-1] - times[0])
    measured_j = sum(r["gpu_kwh"] for r in run.epochs) * 3_600_000
    # Each counter reading is the true integral floored to whole mJ, so each GPU's measured energy
    # (last reading - first) is within 1 mJ of the truth: 2 mJ for two GPUs, plus float rounding.
    assert measured_j == pytest.approx(true_j, abs=2e-3, rel=1e-12)
    assert true_j > 0


def test_metrics_reach_rank_zeros_logger(ddp_run):
    run, _, out = ddp_run
    import csv
    import itertools

    (metrics_csv,) = out.rglob("metrics.csv")
    logged = [r for r in csv.DictReader(metrics_csv.open()) if r.get("energy/epoch_kwh")]  # the epoch-level logs
    # the run so far at each epoch's end: its rows, and the open row since (rank 0's part) as it stands
    trains = [i for i, r in enumerate(run.epochs) if r["phase"] == "train"]
    cumulative = [r["cumulative_energy_kwh"] for r in run.epochs]
    assert len(logged) == len(trains)
    for row, i in zip(logged, trains, strict=True):
        after = cumulative[i + 1] if i + 1 < len(cumulative) else cumulative[-1]
        assert cumulative[i] * (1 - 1e-6) <= float(row["energy/total_kwh"]) <= after * (1 + 1e-6)  # float32
        for column in ("water_l", "embodied_co2_kg"):  # the counted terms: the job's rows, as the energy
            sums = list(itertools.accumulate(r[column] for r in run.epochs))
            low, high = sums[i], sums[min(i + 1, len(sums) - 1)]
            assert low * (1 - 1e-6) <= float(row[f"energy/total_{column}"]) <= high * (1 + 1e-6)
            epoch = [r[column] for r in run.epochs if r["epoch"] == run.epochs[i]["epoch"]]  # its train and validation
            assert float(row[f"energy/epoch_{column}"]) == pytest.approx(sum(epoch), rel=1e-6) and sum(epoch) > 0
    assert not [key for key in logged[0] if "node" in key]  # no meter: no key, never a 0


def test_each_rank_serves_its_own_rows_on_the_port_plus_its_local_rank(ddp_run):
    pytest.importorskip("prometheus_client")
    run, _, out = ddp_run
    scrapes = {rank: json.loads((out / f"scrape-{rank}.json").read_text()) for rank in (0, 1)}
    assert scrapes[1]["port"] == scrapes[0]["port"] + 1  # prometheus_port + local rank: no clash
    for rank, scraped in scrapes.items():
        labels = series_labels(scraped["text"])
        assert {series["rank"] for series in labels} == {str(rank)}  # its own rows only
        assert {series["hw_id"] for series in labels if series["hw_type"] == "gpu"} == {f"gpu:{rank}"}
        assert {series["run"] for series in labels} == {run.path.name}  # one job: the ranks' series join on it
        assert scraped["own_gpu_j"] > 0
        assert gpu_joules(scraped["text"]) == pytest.approx(scraped["own_gpu_j"], rel=1e-9)  # its rows' energy
    cpu = [s for s in series_labels(scrapes[0]["text"]) if s["hw_type"] != "gpu"]
    assert sorted(s["hw_type"] for s in cpu) == ["cpu", "memory"]  # the node's CPU and RAM: local rank 0's


def test_an_exception_on_one_rank_hangs_no_rank_and_leaves_the_epoch_interrupted(tmp_path):
    done = launch(tmp_path, "1")  # rank 1 raises in epoch 1; rank 0 then fails in its all-reduce
    assert done.returncode != 0 and "Connection closed by peer" in done.stderr
    run = only_run(tmp_path)
    assert [(r["epoch"], r["phase"], r["status"]) for r in non_other(run)] == [
        (0, "validation", "complete"), (0, "train", "complete"), (1, "train", "interrupted"),
    ]  # fmt: skip
    # No collective after an exception: each rank writes its own interrupted row, and the merge holds both.
    interrupted = [d for d in run.devices if (d["epoch"], d["phase"]) == (1, "train")]
    assert sorted((d["sensor"], d["rank"]) for d in interrupted) == [("cpu", 0), ("gpu:0", 0), ("gpu:1", 1), ("ram", 0)]
    assert non_other(run)[2]["samples"] == 2 * BATCH  # each rank's first batch of epoch 1; the second failed
    assert run.info["status"] == "interrupted"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("fail_rank", type=int, nargs="?", default=None)
    parser.add_argument("--prometheus-port", type=int, default=None)
    given = parser.parse_args()
    run(given.out, given.fail_rank, given.prometheus_port)
