"""One rank of a plain training loop under ``EnergyTracker``, launched by ``torchrun`` (or by hand) in the tests.

Usage: ``python rank_script.py OUT [--gpus N] [--own] [--epochs E] [--epoch-s S] [--kill-rank R]
[--group] [--run-name NAME] [--interval-s S] [--cpu-scope machine|process] [--burn] [--tensorboard DIR]``

Each process builds its own fake NVML (the shipped :class:`tracker.testing.FakeNvml`) with ``N`` GPUs
of steady power; their UUIDs follow the host identity ``ENERGY_TEST_HOST`` (so two simulated nodes
have different GPUs, and every rank of a node sees the same ones). ``--own`` gives each rank only
GPU ``LOCAL_RANK`` through ``CUDA_VISIBLE_DEVICES``, as a launcher that binds one GPU per rank does.
Every energy-counter reading the rank's fake answers is kept with the fake's time, written to
``OUT/reads-<host>-r<rank>.json`` at the end, so the test knows the true energy exactly.
``--group`` joins a gloo process group and all-reduces a tensor each step (the training's own
collective; the tracker makes none). ``--kill-rank R``: rank R sends itself SIGKILL halfway
through epoch 1, once its ``heartbeat.json`` shows epoch 1 open for 1 s or more (after writing
its readings, as above), so the test knows what it measured of that epoch. Every rank writes its
pid and its parent's to ``OUT/process-r<rank>.json``. ``--burn``: the steps keep a CPU busy instead of sleeping.
``--tensorboard DIR``: every rank is given a TensorBoard sink writing to ``DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for `tracker`

from tracker import EnergyTracker, TensorBoardSink  # noqa: E402
from tracker.testing import FakeGpu, FakeNvml, steady  # noqa: E402

GPU_W = (100.0, 150.0, 200.0, 250.0)


def gpu_uuid(host: str, index: int) -> str:
    """A UUID of the fake GPU ``index`` of ``host``: the same in every rank of that host."""
    tag = zlib.crc32(host.encode())
    return f"GPU-{tag:08x}-fa6e-4c1d-8e5a-{index:012x}"


class RecordingNvml(FakeNvml):
    """The fake NVML, keeping ``(uuid, time_s, mJ)`` of every energy-counter reading it answers."""

    def __init__(self, gpus: list[FakeGpu]) -> None:
        self.last_s = 0.0
        super().__init__(gpus, clock=self._now)
        self.reads: list[tuple[str, float, int]] = []

    def _now(self) -> float:
        self.last_s = time.monotonic()
        return self.last_s

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):  # noqa: N802 - NVML's name
        with self._lock:  # the fake reads its clock once per call, under this lock
            value = super().nvmlDeviceGetTotalEnergyConsumption(handle)
            self.reads.append((self.gpus[handle.gpu].uuid, self.last_s, value))
            return value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--own", action="store_true")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--epoch-s", type=float, default=0.3)
    parser.add_argument("--kill-rank", type=int, default=None)
    parser.add_argument("--group", action="store_true")
    parser.add_argument("--run-name", default=None)
    parser.add_argument("--interval-s", type=float, default=3600.0)
    parser.add_argument("--cpu-scope", default=None)
    parser.add_argument("--burn", action="store_true")
    parser.add_argument("--tensorboard", type=Path, default=None)
    args = parser.parse_args()
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    host = os.environ.get("ENERGY_TEST_HOST", "node-a")
    (args.out / f"process-r{rank}.json").write_text(json.dumps({"pid": os.getpid(), "ppid": os.getppid()}))
    if args.own:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(local_rank)
    group = _join_group() if args.group else None
    nvml = RecordingNvml([FakeGpu(uuid=gpu_uuid(host, i), trace=steady(GPU_W[i % 4])) for i in range(args.gpus)])
    (args.out / "no-powercap").mkdir(parents=True, exist_ok=True)
    energy = EnergyTracker(
        args.out / "logs",
        run_name=args.run_name,
        nvml=nvml,
        powercap_root=args.out / "no-powercap",
        cpu_tdp_w=65.0,
        ram_w=5.0,
        carbon_intensity_g_per_kwh=400.0,
        interval_s=args.interval_s,
        jitter=0.0,
        host=host,
        epochs=args.epochs,
        cpu_scope=args.cpu_scope,
        sinks=[TensorBoardSink(log_dir=args.tensorboard)] if args.tensorboard else [],
    )
    nvml.reads.clear()  # discovery's probe: the measured span starts with start()'s first reading
    with energy:
        for epoch in range(args.epochs):
            with energy.epoch(epoch, samples=8):
                _work(
                    args,
                    epoch,
                    rank,
                    group,
                    lambda: _die(energy.run_dir, nvml, args.out / f"reads-{host}-r{rank}.json"),
                )
    (args.out / f"reads-{host}-r{rank}.json").write_text(json.dumps(nvml.reads))
    if group is not None:
        group.destroy_process_group()


def _join_group():
    import torch.distributed as dist

    dist.init_process_group("gloo")
    return dist


def _die(shard: Path, nvml: RecordingNvml, reads: Path) -> None:
    """SIGKILL this process once a heartbeat holds 1 s or more of epoch 1, its readings written first."""
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        try:
            beat = json.loads((shard / "heartbeat.json").read_text())
        except (OSError, ValueError):
            beat = {}
        if any(r["epoch"] == 1 and r["phase"] == "train" and r["duration_s"] >= 1.0 for r in beat.get("open", [])):
            break
        time.sleep(0.02)
    with nvml._lock:  # no reading between the copy and the kill
        reads.write_text(json.dumps(nvml.reads))
        os.kill(os.getpid(), signal.SIGKILL)


def _work(args: argparse.Namespace, epoch: int, rank: int, group, die) -> None:
    steps = 4
    for step in range(steps):
        if (args.kill_rank, epoch, step) == (rank, 1, steps // 2):
            die()
        _wait(args.epoch_s / steps, args.burn)
        if group is not None:
            import torch

            group.all_reduce(torch.ones(4))


def _wait(seconds: float, burn: bool) -> None:
    if not burn:
        time.sleep(seconds)
        return
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sum(range(1000))


if __name__ == "__main__":
    main()
