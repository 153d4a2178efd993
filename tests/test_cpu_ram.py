"""The CPU estimate (TDP lookup, utilisation, energy) and the RAM model (sizing, energy)."""

from __future__ import annotations

import math
import os
import re
import sys
from collections import namedtuple
from pathlib import Path

import psutil
import pytest

from tracker.errors import ConfigurationError
from tracker.sensors import Sensor
from tracker.sensors._procfs import busy_and_total_s, machine_busy_s, read_cpu_times
from tracker.sensors.cpu_estimate import (
    DEFAULT_W_PER_CPU,
    CpuEstimateSensor,
    busy_fraction,
    codecarbon_table,
    cpu_quota,
    load_table,
    match_tdp,
    read_cpuinfo,
)
from tracker.sensors.ram import RamModelSensor, memory_limit_bytes

GIB = 1 << 30
Times = namedtuple("Times", "user nice system idle iowait guest guest_nice")
TABLE_ROWS = [
    ("Intel Xeon Platinum 8380", 270.0),
    ("Intel Xeon Platinum 8175M", 240.0),
    ("AMD EPYC 7763", 280.0),
    ("AMD EPYC 7742", 225.0),
    ("Foo Alpha 100", 50.0),
    ("Foo Beta 100", 60.0),
]
needs_codecarbon = pytest.mark.skipif(codecarbon_table() is None, reason="codecarbon's data files are not installed")


def cpuinfo(tmp_path: Path, model: str | None, sockets: int = 1, threads: int = 2) -> Path:
    """A /proc/cpuinfo with ``threads`` logical CPUs per socket."""
    blocks = []
    for n in range(sockets * threads):
        lines = [f"processor\t: {n}", "vendor_id\t: Whatever"]
        lines += [f"model name\t: {model}"] if model is not None else []
        lines += [f"physical id\t: {n // threads}", f"siblings\t: {threads}"]
        blocks.append("\n".join(lines))
    path = tmp_path / "cpuinfo"
    path.write_text("\n\n".join(blocks) + "\n")
    return path


@pytest.fixture
def table(tmp_path) -> Path:
    path = tmp_path / "cpu_power.csv"
    path.write_text(
        "Name,TDP\n" + "".join(f"{name},{tdp}\n" for name, tdp in TABLE_ROWS) + "Intel Celeron 1000A,27.29.5\n"
    )
    return path


def cpu_sensor(tmp_path, table, model, **kwargs):
    kwargs.setdefault("logical_cpus", 2)
    return CpuEstimateSensor(cpuinfo_path=cpuinfo(tmp_path, model, **kwargs.pop("info", {})), cpu_table=table, **kwargs)


# --- TDP lookup ---------------------------------------------------------------------------


def test_exact_model_times_sockets(tmp_path, table):
    sensor = cpu_sensor(
        tmp_path,
        table,
        "Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz",
        info={"sockets": 2, "threads": 80},
        logical_cpus=160,
    )
    assert (sensor.method, sensor.tdp_w) == ("tdp_estimate", 540.0)
    assert sensor.info["sockets"] == 2
    assert "'Intel Xeon Platinum 8380'" in sensor.info["tdp_source"]
    assert sensor.info["model"] == "Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz"


def test_model_number_match_with_extra_words(tmp_path, table):
    sensor = cpu_sensor(tmp_path, table, "Genuine Intel(R) Xeon(R) Platinum 8175M", info={"threads": 2})
    assert (sensor.method, sensor.tdp_w) == ("tdp_estimate", 240.0)


def test_amd_epyc_without_model_number_gets_the_per_cpu_default(tmp_path, table):
    sensor = cpu_sensor(tmp_path, table, "AMD EPYC", logical_cpus=2)
    assert (sensor.method, sensor.tdp_w) == ("tdp_default", 2 * DEFAULT_W_PER_CPU)
    assert sensor.tdp_w == 7.0
    assert "3.5 W per logical CPU x 2" in sensor.info["tdp_source"]


def test_ambiguous_match_gets_the_default(tmp_path, table):
    sensor = cpu_sensor(tmp_path, table, "Foo Alpha Beta 100", logical_cpus=4)
    assert (sensor.method, sensor.tdp_w) == ("tdp_default", 14.0)


def test_unknown_and_missing_model_get_the_default(tmp_path, table):
    assert cpu_sensor(tmp_path, table, "Quux 9000", logical_cpus=3).tdp_w == 10.5
    no_model = cpu_sensor(tmp_path, table, None, logical_cpus=1)
    assert (no_model.method, no_model.tdp_w, no_model.info["model"]) == ("tdp_default", 3.5, "unknown")
    missing = CpuEstimateSensor(cpuinfo_path=tmp_path / "absent", cpu_table=table, logical_cpus=2)
    assert (missing.method, missing.tdp_w) == ("tdp_default", 7.0)


def test_restricted_process_gets_its_share_of_the_package(tmp_path, table):
    sensor = cpu_sensor(tmp_path, table, "AMD EPYC 7763 64-Core Processor", info={"threads": 128}, logical_cpus=8)
    assert (sensor.method, sensor.tdp_w, sensor.info["cpu_share"]) == ("tdp_estimate", 17.5, 0.0625)


def test_user_tdp_is_used_as_given(tmp_path, table):
    sensor = cpu_sensor(tmp_path, table, "AMD EPYC 7763", tdp_w=65, info={"sockets": 2})
    assert (sensor.method, sensor.tdp_w, sensor.info["tdp_source"]) == ("tdp_user", 65.0, "user (tdp_w)")


@needs_codecarbon
@pytest.mark.parametrize(
    ("model", "tdp"),
    [
        ("AMD EPYC 7763 64-Core Processor", 280.0),
        ("Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz", 145.0),
        ("11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz", 28.0),
        ("AMD Ryzen 7 PRO 4750U with Radeon Graphics", 15.0),
        ("AMD EPYC", None),
        ("Intel(R) Xeon(R) CPU @ 2.20GHz", None),
    ],
)
def test_codecarbon_table(model, tdp):
    row = match_tdp(model, load_table(codecarbon_table()))
    assert (row and row[1]) == tdp


# /proc/cpuinfo model names seen on real machines (cloud VMs, workstations, laptops, clusters).
REAL_MODELS = [
    "Intel(R) Xeon(R) Processor",
    "Intel(R) Xeon(R) CPU @ 2.20GHz",
    "Intel Xeon Processor (Icelake)",
    "Intel Xeon Processor (Skylake, IBRS)",
    "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
    "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz",
    "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz",
    "Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz",
    "Intel(R) Xeon(R) CPU E5-2690 v3 @ 2.60GHz",
    "Intel(R) Xeon(R) Silver 4214R CPU @ 2.40GHz",
    "Intel(R) Xeon(R) W-2295 CPU @ 3.00GHz",
    "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz",
    "Intel(R) Core(TM) i9-9900K CPU @ 3.60GHz",
    "11th Gen Intel(R) Core(TM) i7-1165G7 @ 2.80GHz",
    "12th Gen Intel(R) Core(TM) i7-12700H",
    "13th Gen Intel(R) Core(TM) i9-13900K",
    "Intel(R) Core(TM) Ultra 7 155H",
    "Intel(R) Celeron(R) N4020 CPU @ 1.10GHz",
    "Intel(R) Pentium(R) CPU G4560 @ 3.50GHz",
    "Intel(R) Atom(TM) CPU N270 @ 1.60GHz",
    "AMD EPYC",
    "AMD EPYC Processor",
    "AMD EPYC Processor (with IBPB)",
    "AMD EPYC 7763 64-Core Processor",
    "AMD EPYC 7B13",
    "AMD EPYC 9654 96-Core Processor",
    "AMD EPYC 7R32",
    "AMD Ryzen 9 5950X 16-Core Processor",
    "AMD Ryzen 7 PRO 4750U with Radeon Graphics",
    "AMD Ryzen 5 3600 6-Core Processor",
    "AMD Ryzen Threadripper PRO 3995WX 64-Cores",
    "AMD Opteron(tm) Processor 6174",
    "Common KVM processor",
    "QEMU Virtual CPU version 2.5+",
    "Intel Aubrey Isle",
    "Intel(R) Aubrey Isle",
    "Intel Xeon MP 7020 Dual-Core",
    "Intel Core i5+8400",
    "",
]


@needs_codecarbon
def test_a_model_matches_the_same_row_among_the_lines_naming_it_as_in_the_whole_table():
    """Real model names, and every 20th row's name as a model: the model-number filter changes no match."""
    path = codecarbon_table()
    rows = load_table(path)
    names = [name for name, _ in rows[::20]]
    models = REAL_MODELS + names + [f"{name} CPU @ 2.00GHz" for name in names[::5]]
    picked = {model: match_tdp(model, load_table(path, model)) for model in models}
    assert picked == {model: match_tdp(model, rows) for model in models}
    assert sum(row is not None for row in picked.values()) > len(names) / 2  # not a table that matches nothing


def test_a_model_without_number_matches_only_rows_that_normalise_to_its_name(tmp_path):
    path = tmp_path / "cpu_power.csv"
    path.write_text('Name,TDP\nFoo Chip 100,10\nFoo Chip 8-Core,60\n"Foo Chip, 2 sockets",60\nBar Chip,90\n')
    assert match_tdp("Foo Chip 100 Processor", load_table(path, "Foo Chip 100 Processor")) == ("Foo Chip 100", 10.0)
    assert match_tdp("Foo(R) Chip(TM) CPU", load_table(path, "Foo(R) Chip(TM) CPU")) == ("Foo Chip 8-Core", 60.0)
    assert match_tdp("Bar Chip", load_table(path, "Bar Chip")) == ("Bar Chip", 90.0)
    ambiguous = tmp_path / "ambiguous.csv"
    ambiguous.write_text("Name,TDP\nFoo(R) Chip(TM) @ Foo Chip 2GHz,80\nFoo Chip,20\n")
    assert match_tdp("Foo Chip", load_table(ambiguous, "Foo Chip")) is None  # two rows, two TDPs


def test_malformed_table_rows_are_skipped(table):
    assert load_table(table) == TABLE_ROWS


def test_cpuinfo_counts_sockets_and_processors(tmp_path):
    info = read_cpuinfo(cpuinfo(tmp_path, "AMD EPYC", sockets=2, threads=3))
    assert (info.model, info.sockets, info.processors) == ("AMD EPYC", 2, 6)


@pytest.mark.parametrize("bad", [0, -5.0, "100", math.nan, math.inf, True, [100]])
def test_bad_tdp_is_a_configuration_error(bad):
    with pytest.raises(ConfigurationError, match=re.escape(f"tdp_w={bad!r} is not valid")):
        CpuEstimateSensor(tdp_w=bad)


def test_bad_logical_cpus_and_table_are_configuration_errors(tmp_path):
    with pytest.raises(ConfigurationError, match="logical_cpus=0"):
        CpuEstimateSensor(logical_cpus=0)
    with pytest.raises(ConfigurationError, match="cpu_table="):
        CpuEstimateSensor(cpu_table=tmp_path / "missing.csv")


# --- utilisation and energy ---------------------------------------------------------------


def scripted(*times):
    it = iter(times)
    return lambda: next(it)


def test_energy_accumulates_power_over_each_interval(clock):
    cpu_times = scripted(
        Times(10, 0, 0, 90, 0, 0, 0),
        Times(14, 0, 0, 90, 0, 0, 0),  # 2 s, 4 CPU-s all busy: u = 1
        Times(14, 0, 2, 95, 1, 0, 0),  # 4 s, 2 busy of 8: u = 0.25
        Times(14, 0, 2, 95, 1, 0, 0),  # 1 s, no CPU time at all: u = 0
    )
    sensor = CpuEstimateSensor(tdp_w=100.0, clock=clock, cpu_times=cpu_times)
    first = sensor.read()
    assert (first.energy_j, first.power_w, first.time_s) == (0.0, None, 1000.0)
    clock.advance(2.0)
    second = sensor.read()
    assert (second.power_w, second.energy_j) == (100.0, 200.0)
    clock.advance(4.0)
    third = sensor.read()
    assert third.power_w == pytest.approx(100.0 * (0.1 + 0.9 * 0.25**3), rel=1e-12)
    assert third.energy_j == pytest.approx(200.0 + 4.0 * 11.40625, rel=1e-12)
    clock.advance(1.0)
    fourth = sensor.read()
    assert fourth.power_w == pytest.approx(10.0, rel=1e-12)
    assert fourth.energy_j == pytest.approx(255.625, rel=1e-12)
    assert (fourth.sensor, fourth.kind, fourth.counter_range_j, fourth.time_s) == ("cpu", "cpu", None, 1007.0)


def test_guest_time_is_not_counted_twice_and_iowait_is_idle():
    before = Times(0, 0, 0, 0, 0, 0, 0)
    assert busy_fraction(before, Times(4, 0, 0, 0, 0, 4, 0)) == 1.0
    assert busy_fraction(before, Times(1, 1, 0, 1, 1, 0, 0)) == 0.5


def test_one_busy_time_rule_for_the_estimate_and_cpu_scope():
    assert busy_and_total_s(Times(3, 1, 2, 10, 4, 2, 1)) == (6, 20)  # guest in user; idle, iowait not busy
    assert busy_and_total_s(read_cpu_times())[0] == pytest.approx(machine_busy_s(), abs=5.0)


def test_does_not_touch_psutil_cpu_percent(monkeypatch, clock):
    monkeypatch.setattr(psutil, "cpu_percent", lambda *a, **k: pytest.fail("cpu_percent called"))
    sensor = CpuEstimateSensor(tdp_w=50.0, clock=clock)
    sensor.read()
    clock.advance(1.0)
    assert 5.0 <= sensor.read().power_w <= 50.0


def test_cpu_sensor_contract(clock):
    sensor = CpuEstimateSensor(tdp_w=50.0, clock=clock)
    assert isinstance(sensor, Sensor)
    assert (sensor.name, sensor.kind) == ("cpu", "cpu")
    assert set(sensor.info) >= {"model", "tdp_w", "tdp_source", "logical_cpus", "model_formula"}
    sensor.close()
    sensor.close()


def test_this_machine_gives_a_sane_figure():
    sensor = CpuEstimateSensor()
    per_cpu = sensor.tdp_w / sensor.info["logical_cpus"]
    assert sensor.method in ("tdp_estimate", "tdp_default")
    if sensor.method == "tdp_default":
        assert per_cpu == DEFAULT_W_PER_CPU


# --- cgroup limits ------------------------------------------------------------------------


def cgroup(tmp_path, proc_line: str, files: dict[str, str]) -> Path:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    (tmp_path / "self-cgroup").write_text(proc_line + "\n")
    return root


def test_cpu_quota_v2_and_v1(tmp_path):
    root = cgroup(tmp_path, "0::/job", {"cpu.max": "max 100000", "job/cpu.max": "50000 100000"})
    assert cpu_quota(cgroup_root=root, proc_cgroup=tmp_path / "self-cgroup") == 0.5
    v1 = cgroup(
        tmp_path / "v1",
        "4:cpu,cpuacct:/job",
        {
            "cpu/cpu.cfs_quota_us": "-1",
            "cpu/cpu.cfs_period_us": "100000",
            "cpu/job/cpu.cfs_quota_us": "25000",
            "cpu/job/cpu.cfs_period_us": "100000",
        },
    )
    assert cpu_quota(cgroup_root=v1, proc_cgroup=tmp_path / "v1" / "self-cgroup") == 0.25


def test_unlimited_cpu_quota_is_none(tmp_path):
    root = cgroup(tmp_path, "0::/", {"cpu.max": "max 100000"})
    assert cpu_quota(cgroup_root=root, proc_cgroup=tmp_path / "self-cgroup") is None
    sensor = CpuEstimateSensor(
        cpuinfo_path=cpuinfo(tmp_path, "AMD EPYC"), cgroup_root=root, proc_cgroup=tmp_path / "self-cgroup"
    )
    assert sensor.info["logical_cpus"] == len(os.sched_getaffinity(0))


def test_cpu_quota_caps_the_default(tmp_path, table):
    root = cgroup(tmp_path, "0::/", {"cpu.max": "50000 100000"})
    sensor = CpuEstimateSensor(
        cpuinfo_path=cpuinfo(tmp_path, "AMD EPYC"),
        cpu_table=table,
        cgroup_root=root,
        proc_cgroup=tmp_path / "self-cgroup",
    )
    assert (sensor.tdp_w, sensor.info["logical_cpus"]) == (1.75, 0.5)


# --- RAM --------------------------------------------------------------------------------


def ram(tmp_path, proc_line="0::/", files=None, **kwargs):
    root = cgroup(tmp_path, proc_line, files or {})
    return RamModelSensor(cgroup_root=root, proc_cgroup=tmp_path / "self-cgroup", **kwargs)


def test_ram_without_limit_is_sized_by_physical_memory(tmp_path, clock):
    sensor = ram(tmp_path, total_bytes=16 * GIB, clock=clock)
    assert (sensor.method, sensor.power_w, sensor.info["size_source"]) == ("ram_model", 6.0, "physical")
    clock.advance(10.0)
    reading = sensor.read()
    assert (reading.sensor, reading.kind, reading.energy_j, reading.power_w) == ("ram", "ram", 60.0, 6.0)
    assert reading.counter_range_j is None


def test_ram_sized_by_the_smallest_cgroup_v2_limit(tmp_path):
    files = {"memory.max": "max", "user.slice/memory.max": str(8 * GIB), "user.slice/job/memory.max": str(4 * GIB)}
    sensor = ram(tmp_path, "0::/user.slice/job", files, total_bytes=64 * GIB)
    assert (sensor.power_w, sensor.info["size_bytes"], sensor.info["size_source"]) == (1.5, 4 * GIB, "cgroup")


def test_job_on_a_1tb_host_is_sized_by_its_allocation(tmp_path):
    sensor = ram(tmp_path, "0::/slurm/job", {"slurm/job/memory.max": str(32 * GIB)}, total_bytes=1024 * GIB)
    assert sensor.power_w == 12.0


def test_ram_cgroup_v1_limits(tmp_path):
    unlimited = {"memory/memory.limit_in_bytes": "9223372036854771712"}
    assert ram(tmp_path / "a", "4:memory:/x", unlimited, total_bytes=8 * GIB).info["size_source"] == "physical"
    limited = {**unlimited, "memory/x/memory.limit_in_bytes": str(2 * GIB)}
    sensor = ram(tmp_path / "b", "4:memory:/x", limited, total_bytes=8 * GIB)
    assert (sensor.power_w, sensor.info["size_source"]) == (0.75, "cgroup")


def test_limit_above_physical_is_ignored(tmp_path):
    sensor = ram(tmp_path, "0::/", {"memory.max": str(32 * GIB)}, total_bytes=16 * GIB)
    assert (sensor.power_w, sensor.info["size_source"]) == (6.0, "physical")


def test_memory_limit_without_cgroups_is_none(tmp_path):
    assert memory_limit_bytes(cgroup_root=tmp_path / "none", proc_cgroup=tmp_path / "none") is None


def test_user_ram_power(tmp_path, clock):
    sensor = ram(tmp_path, power_w=5, total_bytes=GIB, clock=clock)
    clock.advance(3.0)
    assert (sensor.method, sensor.power_w, sensor.read().energy_j) == ("ram_user", 5.0, 15.0)
    assert isinstance(sensor, Sensor)


@pytest.mark.parametrize("bad", [0, -1, "5", math.nan, False])
def test_bad_ram_power_is_a_configuration_error(tmp_path, bad):
    with pytest.raises(ConfigurationError, match="power_w="):
        ram(tmp_path, power_w=bad, total_bytes=GIB)


def test_proc_readers_agree_with_psutil(tmp_path):
    from tracker.sensors._procfs import CPU_TIME_FIELDS, physical_memory_bytes, read_cpu_times, read_mem_total

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 2 30 400 5 0 6 0\ncpu0 50 1 15 200 2 0 3 0\n")
    ticks = os.sysconf("SC_CLK_TCK")
    times = read_cpu_times(str(stat))
    assert list(times._asdict()) == list(CPU_TIME_FIELDS[:8]) and times.system == 30 / ticks
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemFree:  10 kB\nMemTotal:  2048 kB\n")
    assert read_mem_total(str(meminfo)) == 2048 * 1024
    if not sys.platform.startswith("linux"):
        pytest.skip("/proc is Linux's")
    assert physical_memory_bytes() == psutil.virtual_memory().total
    ours, theirs = read_cpu_times(), psutil.cpu_times()
    assert list(ours._asdict()) == list(theirs._asdict())
    assert all(abs(ours._asdict()[k] - v) < 5.0 for k, v in theirs._asdict().items())  # a moment apart
