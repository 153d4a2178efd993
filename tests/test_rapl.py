"""RAPL over a fake powercap tree: zones chosen, units, wraparound, permissions, bad roots."""

from __future__ import annotations

import encodings.utf_8_sig  # noqa: F401 (cpu_estimate reads its table with it: imported before forking)
from pathlib import Path

import pytest

from tests.helpers import run_unprivileged
from tracker.energy import counter_delta_j
from tracker.errors import ConfigurationError, SensorPermissionError, SensorReadError
from tracker.sensors import Absent, Sensor, cpu_estimate, nvml, ram, rapl  # noqa: F401 (imported before forking)
from tracker.sensors.discovery import discover
from tracker.sensors.rapl import find_rapl
from tracker.testing import build_powercap_tree


def names(sensors):
    return [s.name for s in sensors]


def test_package_and_dram_only_never_psys_core_uncore_mmio(tmp_path, clock):
    build_powercap_tree(tmp_path, dram=True, psys=True, mmio=True, core=True, uncore=True)
    sensors, absent = find_rapl(root=tmp_path, clock=clock)
    assert names(sensors) == ["cpu:package-0", "ram:dram-0"]
    assert [(s.kind, s.method) for s in sensors] == [("cpu", "rapl"), ("ram", "rapl_dram")]
    assert absent == []
    assert all(isinstance(s, Sensor) for s in sensors)


def test_readings_are_joules_with_the_range(tmp_path, clock):
    tree = build_powercap_tree(tmp_path)
    tree.set_energy_uj("package-0", 123_456_789)
    tree.set_energy_uj("dram-0", 5_000_000)
    sensors, _ = find_rapl(root=tmp_path, clock=clock)
    package, dram = (s.read() for s in sensors)
    assert (package.sensor, package.kind, package.time_s) == ("cpu:package-0", "cpu", 1000.0)
    assert package.energy_j == 123.456789
    assert package.counter_range_j == 262143328850 / 1e6
    assert (dram.sensor, dram.kind, dram.energy_j) == ("ram:dram-0", "ram", 5.0)
    assert package.power_w is None


def test_package_plus_dram_sum_excludes_nested_and_psys(tmp_path, clock):
    tree = build_powercap_tree(tmp_path, psys=True, mmio=True, uncore=True)
    sensors, _ = find_rapl(root=tmp_path, clock=clock)
    before = sum(s.read().energy_j for s in sensors)
    for zone, joules in [("package-0", 40.0), ("dram-0", 6.0), ("core-0", 30.0), ("uncore-0", 5.0)]:
        tree.add_energy_j(zone, joules)
    tree.add_energy_j("psys", 60.0)
    tree.add_energy_j("mmio-package-0", 40.0)
    after = sum(s.read().energy_j for s in sensors)
    assert after - before == 46.0


def test_wraparound_reading_drops_and_range_recovers_the_delta(tmp_path, clock):
    tree = build_powercap_tree(tmp_path, dram=False, max_energy_range_uj=1_000_000_000)
    tree.set_energy_uj("package-0", 998_000_000)
    (sensor,) = find_rapl(root=tmp_path, clock=clock)[0]
    first = sensor.read()
    assert tree.add_energy_j("package-0", 5.0) == 3_000_000
    second = sensor.read()
    assert (first.energy_j, second.energy_j) == (998.0, 3.0)
    assert second.counter_range_j == 1000.0
    assert counter_delta_j(first.energy_j, second.energy_j, second.counter_range_j) == (5.0, "wrap")


def test_intel_two_sockets(tmp_path, clock):
    tree = build_powercap_tree(tmp_path, packages=2, psys=True)
    for n in (0, 1):
        tree.set_energy_uj(f"package-{n}", (n + 1) * 1_000_000)
        tree.set_energy_uj(f"dram-{n}", (n + 1) * 100_000)
    sensors, absent = find_rapl(root=tmp_path, clock=clock)
    assert names(sensors) == ["cpu:package-0", "cpu:package-1", "ram:dram-0", "ram:dram-1"]
    assert [s.read().energy_j for s in sensors] == [1.0, 2.0, 0.1, 0.2]
    assert sensors[3].info["zone"] == "intel-rapl:1:1"
    assert absent == []


def test_amd_tree_has_packages_and_no_dram(tmp_path, clock):
    tree = build_powercap_tree(tmp_path, packages=2, vendor="amd", max_energy_range_uj=65_532_610_987)
    tree.set_energy_uj("package-1", 42_000_000)
    sensors, absent = find_rapl(root=tmp_path, clock=clock)
    assert names(sensors) == ["cpu:package-0", "cpu:package-1"]
    assert sensors[1].read().energy_j == 42.0
    assert sensors[1].read().counter_range_j == 65_532.610987
    assert [(a.source, a.kind, a.reason) for a in absent] == [("rapl", "ram", "not supported")]


def test_die_zones_keep_their_names(tmp_path, clock):
    tree = build_powercap_tree(tmp_path, packages=2, dram=False)
    (tree.zone_dir("package-0") / "name").write_text("package-0-die-0\n")
    (tree.zone_dir("package-1") / "name").write_text("package-0-die-1\n")
    assert names(find_rapl(root=tmp_path, clock=clock)[0]) == ["cpu:package-0-die-0", "cpu:package-0-die-1"]


def test_zones_are_ordered_numerically(tmp_path, clock):
    build_powercap_tree(tmp_path, packages=11, dram=False, core=False)
    assert names(find_rapl(root=tmp_path, clock=clock)[0])[-2:] == ["cpu:package-9", "cpu:package-10"]


def test_permission_denied_at_discovery_is_absent_with_a_hint(world_tmp, clock):
    tree = build_powercap_tree(world_tmp / "powercap", packages=2)
    tree.make_unreadable("package-1")

    def discover():
        sensors, absent = find_rapl(root=tree.root, clock=clock)
        return names(sensors), [[a.kind, a.reason, a.detail, a.hint] for a in absent]

    found, absent = run_unprivileged(discover)
    assert found == ["ram:dram-0", "ram:dram-1"]
    [(kind, reason, detail, hint)] = absent
    assert (kind, reason) == ("cpu", "permission denied")
    assert str(tree.root / "intel-rapl:1" / "energy_uj") in detail
    assert "CVE-2020-8694" in hint and "chmod" in hint and "estimated from its TDP" in hint


def test_unreadable_dram_leaves_the_packages(world_tmp, clock):
    tree = build_powercap_tree(world_tmp / "powercap")
    tree.make_unreadable("dram-0")

    def discover():
        sensors, absent = find_rapl(root=tree.root, clock=clock)
        return names(sensors), [[a.kind, a.reason] for a in absent]

    assert run_unprivileged(discover) == [["cpu:package-0"], [["ram", "permission denied"]]]


def test_unreadable_mid_run_raises_permission_error(world_tmp, clock):
    tree = build_powercap_tree(world_tmp / "powercap", dram=False)
    (sensor,) = find_rapl(root=tree.root, clock=clock)[0]
    tree.make_unreadable("package-0")

    def read():
        try:
            sensor.read()
        except SensorPermissionError as e:
            return [e.sensor, e.path, type(e.__cause__).__name__, "CVE-2020-8694" in e.hint]
        return None

    assert run_unprivileged(read) == [
        "cpu:package-0",
        str(tree.root / "intel-rapl:0" / "energy_uj"),
        "PermissionError",
        True,
    ]


def test_vanished_zone_raises_read_error(tmp_path, clock):
    tree = build_powercap_tree(tmp_path, dram=False)
    (sensor,) = find_rapl(root=tmp_path, clock=clock)[0]
    tree.remove("package-0")
    with pytest.raises(SensorReadError) as caught:
        sensor.read()
    assert caught.value.path == str(tmp_path / "intel-rapl:0" / "energy_uj")
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_garbage_in_energy_file_raises_read_error(tmp_path, clock):
    tree = build_powercap_tree(tmp_path, dram=False)
    (sensor,) = find_rapl(root=tmp_path, clock=clock)[0]
    tree.energy_file("package-0").write_text("")
    with pytest.raises(SensorReadError, match="does not hold an integer"):
        sensor.read()


def test_explicit_root_missing_is_a_configuration_error(tmp_path):
    missing = tmp_path / "no-such-powercap"
    with pytest.raises(ConfigurationError, match="intel-rapl:N") as caught:
        find_rapl(root=missing)
    assert str(missing) in str(caught.value)


def test_explicit_root_that_is_a_file_is_a_configuration_error(tmp_path):
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(ConfigurationError, match="is not a directory"):
        find_rapl(root=str(path))


def test_default_root_absent_is_absent_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(rapl, "DEFAULT_ROOT", tmp_path / "absent")
    sensors, absent = find_rapl()
    assert sensors == []
    assert [(a.source, a.kind, a.reason) for a in absent] == [("rapl", "cpu", "not supported")]


def test_default_root_on_this_machine_never_raises():
    sensors, absent = find_rapl()
    if not Path("/sys/class/powercap").exists():
        assert (sensors, [a.reason for a in absent]) == ([], ["not supported"])
    assert all(isinstance(a, Absent) for a in absent)


def test_root_without_packages_is_absent(tmp_path, clock):
    build_powercap_tree(tmp_path, packages=0, psys=True)
    sensors, absent = find_rapl(root=tmp_path, clock=clock)
    assert sensors == []
    assert [(a.kind, a.reason) for a in absent] == [("cpu", "not supported")]
    assert "no intel-rapl:N package zone" in absent[0].detail


def test_close_is_idempotent(tmp_path, clock):
    build_powercap_tree(tmp_path, dram=False)
    (sensor,) = find_rapl(root=tmp_path, clock=clock)[0]
    sensor.close()
    sensor.close()
    assert sensor.read().energy_j == 0.0


def test_fake_tree_lists_zones_as_the_kernel_does(tmp_path):
    tree = build_powercap_tree(tmp_path, psys=True, mmio=True)
    top = sorted(p.name for p in tmp_path.iterdir())
    assert top == [
        "intel-rapl",
        "intel-rapl-mmio",
        "intel-rapl-mmio:0",
        "intel-rapl:0",
        "intel-rapl:0:0",
        "intel-rapl:0:1",
        "intel-rapl:1",
    ]
    assert (tmp_path / "intel-rapl:0:1").resolve() == tree.zone_dir("dram-0").resolve()
    assert (tmp_path / "intel-rapl:1" / "name").read_text() == "psys\n"
    with pytest.raises(ValueError):
        tree.set_energy_uj("package-0", tree.max_energy_range_uj)


def test_discover_falls_back_to_the_estimate_when_packages_are_unreadable(world_tmp, clock):
    tree = build_powercap_tree(world_tmp / "powercap")
    tree.make_unreadable("package-0")

    def found():
        result = discover(gpus=False, node=False, powercap_root=tree.root, clock=clock)
        return [[s.name, s.method] for s in result.sensors], [[a.kind, a.reason] for a in result.absent]

    sensors, absent = run_unprivileged(found)
    assert sensors[0][0] == "cpu" and sensors[0][1].startswith("tdp_")
    assert sensors[1:] == [["ram:dram-0", "rapl_dram"]]
    assert absent == [["cpu", "permission denied"]]
