"""The user's code forks (``os.fork``, ``multiprocessing``, DataLoader workers) while a tracker runs.

A child inherits a copy of the tracker: no sampler thread may run in it, and nothing it does may
reach the parent's run directory, so every row and every trace line is written once, by the parent.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time

from tests.helpers import PATIENT
from tests.reliability.support import epochs, tracker_warnings, train_rows
from tracker import EnergyTracker
from tracker.testing import FakeSensor, steady

SAMPLER = "energy-tracker.sampler"


def running_tracker(tmp_path, **options):
    """A tracker on the real clock with its sampler thread running fast."""
    sensors = [FakeSensor("gpu:0", "gpu", steady(250.0)), FakeSensor("cpu", "cpu", steady(20.0), method="rapl")]
    energy = EnergyTracker(
        tmp_path, sensors=sensors, interval_s=0.01, carbon_intensity_g_per_kwh=300.0, **options, **PATIENT
    )
    energy.start()
    while energy.sampling.ticks < 3:  # the thread is really running when the fork comes
        time.sleep(0.005)
    return energy


def what_a_child_sees(energy):
    """The facts a child reports: sampler threads alive, whether the sampler runs, what a sample reads."""
    threads = [t.name for t in threading.enumerate() if t.name == SAMPLER and t.is_alive()]
    return {
        "threads": threads,
        "running": energy.sampling.running,
        "sample": len(energy.sample()),
    }


NOTHING = {"threads": [], "running": False, "sample": 0}


def assert_written_once(energy, expected_epochs):
    rows = epochs(energy)
    assert [r["epoch"] for r in train_rows(rows)] == expected_epochs
    assert all(r["phase"] in ("train", "other") for r in rows)  # no row from a child's phase
    lines = (energy.run_dir / "epochs.csv").read_text().splitlines()
    assert len(lines) == len(set(lines)) == len(rows) + 1
    if (energy.run_dir / "power.csv").exists():
        trace = (energy.run_dir / "power.csv").read_text().splitlines()
        assert len(trace) == len(set(trace)) and trace.count(trace[0]) == 1  # one header, no line twice


def test_os_fork_child_that_unwinds_through_the_tracker(tmp_path, caplog):
    energy = running_tracker(tmp_path, power_trace=True)
    with energy.epoch(0):
        time.sleep(0.05)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave as code unwinding through `with energy:` would
        try:
            seen = what_a_child_sees(energy)
            with energy.phase("child_work"):
                pass
            energy.stop()
            os.write(write_end, json.dumps(seen).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    seen = json.loads(os.read(read_end, 4096))
    os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0
    assert seen == NOTHING
    assert json.loads((energy.run_dir / "run.json").read_text())["status"] == "running"  # the child wrote nothing
    assert energy.sampling.running  # the parent's sampler goes on
    with energy.epoch(1):
        time.sleep(0.05)
    energy.stop()
    assert_written_once(energy, [0, 1])
    assert tracker_warnings(caplog) == []


def child_reports(queue, energy, item):
    seen = what_a_child_sees(energy)
    with energy.phase(f"worker_{item}"):  # a child that measures its own work writes nothing
        pass
    queue.put(seen)


def test_multiprocessing_fork_children(tmp_path, caplog):
    energy = running_tracker(tmp_path, power_trace=True)
    context = multiprocessing.get_context("fork")
    with energy.epoch(0):
        queue = context.Queue()
        children = [context.Process(target=child_reports, args=(queue, energy, i)) for i in range(2)]
        for child in children:
            child.start()
        seen = [queue.get(timeout=30) for _ in children]
        for child in children:
            child.join(30)
    energy.stop()
    assert [child.exitcode for child in children] == [0, 0]
    assert seen == [NOTHING, NOTHING]
    assert_written_once(energy, [0])
    assert tracker_warnings(caplog) == []


class ReportingDataset:
    """Items that say what a DataLoader worker saw of the tracker (the tracker comes in by fork)."""

    def __init__(self, energy, size):
        self.energy, self.size = energy, size

    def __len__(self):
        return self.size

    def __getitem__(self, index):
        import torch

        seen = what_a_child_sees(self.energy)
        return torch.tensor([os.getpid(), len(seen["threads"]), int(seen["running"]), seen["sample"]])


def test_dataloader_workers(tmp_path, caplog):
    import torch
    from torch.utils.data import DataLoader

    energy = running_tracker(tmp_path, power_trace=True)
    batches = []
    for epoch in range(2):
        with energy.epoch(epoch, samples=8):
            loader = DataLoader(ReportingDataset(energy, 8), batch_size=2, num_workers=2)
            batches.extend(loader)
    energy.stop()
    items = torch.cat(batches)
    assert len({int(pid) for pid in items[:, 0]} - {os.getpid()}) >= 2  # really read in worker processes
    assert items[:, 1:].sum().item() == 0  # no sampler thread, not running, no reading, in any worker
    assert_written_once(energy, [0, 1])
    assert [r["samples"] for r in train_rows(epochs(energy))] == [8, 8]
    assert tracker_warnings(caplog) == []
