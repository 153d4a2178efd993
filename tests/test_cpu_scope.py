"""``cpu_scope``: the whole CPU's energy, or this process tree's share of it (and the default by confinement)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest

from tests.helpers import PATIENT
from tracker import EnergyTracker, load_run
from tracker.errors import ConfigurationError
from tracker.sensors.cpu_estimate import CpuEstimateSensor
from tracker.sensors.cpu_scope import (
    MACHINE,
    PROCESS,
    ProcessScopedSensor,
    confinement,
    machine_busy_s,
    resolve_scope,
    share_of,
    tree_cpu_s,
)
from tracker.sensors.discovery import discover
from tracker.testing import FakeSensor, build_powercap_tree, steady


class Script:
    """CPU seconds that a test moves by hand."""

    def __init__(self) -> None:
        self.value = 0.0

    def __call__(self) -> float:
        return self.value


def test_the_share_of_each_interval_weighs_that_intervals_energy(clock):
    inner = FakeSensor("cpu", kind="cpu", trace=steady(100.0), clock=clock, method="rapl")
    mine, busy = Script(), Script()
    scoped = ProcessScopedSensor(inner, process_cpu_s=mine, busy_cpu_s=busy)
    assert scoped.read().energy_j == 0.0
    clock.advance(1.0)
    mine.value, busy.value = 0.5, 2.0  # a quarter of the busy time is ours: 25 J of 100
    first = scoped.read()
    clock.advance(1.0)
    mine.value, busy.value = 1.5, 3.0  # all of it: 100 J more
    second = scoped.read()
    assert (first.energy_j, second.energy_j) == (pytest.approx(25.0), pytest.approx(125.0))
    assert second.power_w == pytest.approx(100.0) and scoped.method == "rapl" and scoped.name == "cpu"
    assert scoped.info["cpu_scope"] == PROCESS
    clock.advance(1.0)
    mine.value, busy.value = 1.0, 4.0  # a descendant ended unreaped: its time is held, never given back
    assert scoped.read().energy_j == pytest.approx(125.0)
    clock.advance(1.0)
    mine.value, busy.value = 1.5, 5.0  # reaped: it does not count twice, the tree is back where it was
    assert scoped.read().energy_j == pytest.approx(125.0)


def test_a_wrapping_counter_is_unwrapped_before_the_share(clock):
    inner = FakeSensor("cpu", kind="cpu", trace=steady(100.0), clock=clock, method="rapl", counter_range_j=150.0)
    mine, busy = Script(), Script()
    scoped = ProcessScopedSensor(inner, process_cpu_s=mine, busy_cpu_s=busy)
    scoped.read()
    clock.advance(1.0)
    mine.value = busy.value = 1.0
    scoped.read()
    clock.advance(1.0)  # 200 J: the counter went past 150 and wrapped
    mine.value, busy.value = 1.5, 2.0
    assert scoped.read().energy_j == pytest.approx(100.0 + 0.5 * 100.0)


@pytest.mark.parametrize(("process_s", "busy_s", "share"), [(0.0, 1.0, 0.0), (1.0, 4.0, 0.25), (2.0, 1.0, 1.0)])
def test_share_of(process_s, busy_s, share):
    assert share_of(process_s, busy_s) == share


def test_default_scope_follows_confinement():
    assert resolve_scope(None, "") == (MACHINE, "the whole machine is available")
    assert resolve_scope(None, "affinity mask of 2 of 8 CPUs")[0] == PROCESS
    assert resolve_scope(MACHINE, "affinity mask of 2 of 8 CPUs") == (MACHINE, "given")


def test_confinement_sees_a_quota_smaller_than_the_machine(tmp_path):
    (tmp_path / "cgroup" / "job").mkdir(parents=True)
    (tmp_path / "cgroup" / "job" / "cpu.max").write_text("50000 100000\n")
    (tmp_path / "self").write_text("0::/job\n")
    why = confinement(cgroup_root=tmp_path / "cgroup", proc_cgroup=tmp_path / "self")
    if len(os.sched_getaffinity(0)) < (os.cpu_count() or 1):
        assert why.startswith("affinity mask")  # this machine confines us already
    else:
        assert why == f"cgroup CPU quota of 0.5 of {os.cpu_count()} CPUs"


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no affinity masks here")
def test_an_affinity_mask_makes_process_the_default_and_the_startup_line_says_why(tmp_path, caplog):
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: no mask can be smaller than the machine")
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        with caplog.at_level(logging.INFO, logger="tracker"):
            energy = EnergyTracker(
                tmp_path, measure=("cpu",), cpu_tdp_w=50.0, carbon_intensity_g_per_kwh=100.0, **PATIENT
            )
            with energy, energy.epoch(0):
                time.sleep(0.05)
    finally:
        os.sched_setaffinity(0, before)
    assert energy.config.cpu_scope_choice[0] == PROCESS
    assert isinstance(energy.discovery.sensors[0], ProcessScopedSensor)
    line = next(r.getMessage() for r in caplog.records if "measuring" in r.getMessage())
    assert f"CPU scope process (confined to part of the machine: affinity mask of 1 of {os.cpu_count()}" in line
    assert {r["cpu_scope"] for r in load_run(energy.run_dir).epochs} == {PROCESS}


def test_every_row_records_the_scope(tmp_path, clock):
    cpu = FakeSensor("cpu", kind="cpu", trace=steady(20.0), clock=clock, method="rapl")
    energy = EnergyTracker(
        tmp_path, sensors=[cpu], clock=clock, cpu_scope="machine", carbon_intensity_g_per_kwh=1.0, **PATIENT
    )
    with energy, energy.epoch(0):
        clock.advance(2.0)
    assert [r["cpu_scope"] for r in load_run(energy.run_dir).epochs] == [MACHINE]
    gpu_only = EnergyTracker(
        tmp_path, sensors=[FakeSensor(clock=clock)], clock=clock, carbon_intensity_g_per_kwh=1.0, **PATIENT
    )
    with gpu_only, gpu_only.epoch(0):
        clock.advance(2.0)
    assert [r["cpu_scope"] for r in load_run(gpu_only.run_dir).epochs] == [None]  # no CPU measured: empty


@pytest.mark.parametrize("value", ["node", "Process", 1, True])
def test_a_bad_scope_is_refused_at_construction(tmp_path, value):
    with pytest.raises(ConfigurationError, match=r"cpu_scope=.*give 'machine'.*'process'"):
        EnergyTracker(tmp_path, cpu_scope=value)


def test_discover_wraps_rapl_packages_in_process_scope(tmp_path, clock):
    build_powercap_tree(tmp_path / "powercap", packages=2, dram=True)
    found = discover(gpus=False, powercap_root=tmp_path / "powercap", clock=clock, cpu_scope=PROCESS)
    cpus = [s for s in found.sensors if s.kind == "cpu"]
    assert len(cpus) == 2 and all(isinstance(s, ProcessScopedSensor) for s in cpus)
    assert all(s.method == "rapl" and s.info["cpu_scope_root_pid"] == os.getpid() for s in cpus)
    assert not any(isinstance(s, ProcessScopedSensor) for s in found.sensors if s.kind == "ram")
    found.close()


# -- a real neighbour ---------------------------------------------------------------------------------------------

BURN = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end:\n    pass\n"


@pytest.fixture
def neighbour():
    """A process burning a CPU that is not ours: started through a shell that exits, so init adopts it."""
    shell = subprocess.run(
        ["sh", "-c", f'"{sys.executable}" -c "$0" >/dev/null 2>&1 & echo $!', BURN],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    pid = int(shell.stdout.strip())
    time.sleep(0.3)  # let it reach its loop
    yield pid
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


def test_process_scope_does_not_count_a_neighbour_and_machine_does(neighbour):
    assert neighbour not in [p.pid for p in __import__("psutil").Process().children(recursive=True)]
    machine = CpuEstimateSensor(tdp_w=100.0)
    scoped = ProcessScopedSensor(CpuEstimateSensor(tdp_w=100.0))
    mine_before, busy_before = tree_cpu_s(os.getpid()), machine_busy_s()
    first = (machine.read(), scoped.read())
    time.sleep(1.5)  # we idle; the neighbour burns a whole CPU
    second = (machine.read(), scoped.read())
    mine, busy = tree_cpu_s(os.getpid()) - mine_before, machine_busy_s() - busy_before
    machine_j = second[0].energy_j - first[0].energy_j
    process_j = second[1].energy_j - first[1].energy_j
    # The neighbour keeps at least one of the machine's CPUs busy: the cubic load curve gives at least that.
    least = 100.0 * (0.1 + 0.9 * (0.8 / (os.cpu_count() or 1)) ** 3) * 1.5
    assert machine_j >= least
    assert busy > 0.8 and mine < 0.5 * busy  # the busy time is mostly the neighbour's
    assert process_j <= machine_j * (mine / busy) * 1.5 + 0.5  # our share, not the neighbour's load
    assert process_j < 0.5 * machine_j
