"""The node's own meter (ACPI power meter, hwmon) on a fake sysfs tree: found, read, shown beside the components."""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.request

import pytest

from tests.helpers import PATIENT, run_unprivileged
from tracker import EnergyTracker, load_run
from tracker.cli import main
from tracker.errors import ConfigurationError, SensorPermissionError, SensorReadError
from tracker.job.placement import Launch
from tracker.sensors import NODE, Sensor
from tracker.sensors.discovery import discover
from tracker.sensors.hwmon import find_power_meters
from tracker.sensors.methods import ACPI_POWER_METER, is_measured
from tracker.testing import FakeGpu, FakeNvml, FakeSensor, build_hwmon_tree, square_wave, steady

J_PER_KWH = 3.6e6


def names(sensors):
    return [s.name for s in sensors]


@pytest.mark.parametrize("layout", ["class", "device"])
def test_a_power_meter_is_found_in_either_layout_and_reads_microwatts(tmp_path, clock, layout):
    tree = build_hwmon_tree(tmp_path, steady(412.5), clock=clock, layout=layout)
    sensors, absent = find_power_meters(root=tmp_path, clock=clock)
    assert not absent and names(sensors) == ["node:hwmon2"]
    (meter,) = sensors
    assert isinstance(meter, Sensor)
    assert (meter.kind, meter.method) == (NODE, ACPI_POWER_METER) and is_measured(meter.method)
    assert meter.info["average_interval_ms"] == 1000 and meter.info["accuracy"] == "95.0%"
    assert meter.info["path"] == str(tree.meters[0]) and meter.info["measures"] == ["ACPI0004:00"]
    assert meter.read().power_w == pytest.approx(412.5)


def test_no_hwmon_directory_is_absent_not_an_error(clock):
    found = discover(gpus=False, cpu=False, ram=False, clock=clock)  # this machine's /sys/class/hwmon, if any
    if found.sensors:
        pytest.skip("this machine has an ACPI power meter")
    (absent,) = found.absent
    assert (absent.source, absent.kind) == ("hwmon", NODE)


def test_other_chips_are_no_meter(tmp_path, clock):
    build_hwmon_tree(tmp_path, clock=clock, name="nvme")
    sensors, absent = find_power_meters(root=tmp_path, clock=clock)
    assert sensors == [] and [(a.kind, a.reason) for a in absent] == [(NODE, "no device")]
    assert "power_meter" in absent[0].detail and "ACPI000D" in absent[0].detail


def test_a_meter_that_only_caps_is_no_meter(tmp_path, clock):
    tree = build_hwmon_tree(tmp_path, clock=clock)
    tree.remove()
    sensors, (absent,) = find_power_meters(root=tmp_path, clock=clock)
    assert sensors == [] and absent.reason == "no device" and "no power1_average" in absent.detail


def test_a_battery_meter_is_not_the_node(tmp_path, clock):
    build_hwmon_tree(tmp_path, clock=clock, is_battery=True)
    sensors, (absent,) = find_power_meters(root=tmp_path, clock=clock)
    assert sensors == [] and absent.reason == "no device" and "battery" in absent.detail


def test_an_explicit_root_that_is_missing_is_a_configuration_error(tmp_path, clock):
    with pytest.raises(ConfigurationError, match="hwmon root"):
        find_power_meters(root=tmp_path / "nowhere", clock=clock)
    with pytest.raises(ConfigurationError, match="hwmon_root="):
        EnergyTracker(hwmon_root=tmp_path / "nowhere")


def test_an_unreadable_meter_is_absent_with_a_hint(world_tmp, clock):
    tree = build_hwmon_tree(world_tmp / "hwmon", clock=clock, meters=2)
    tree.make_unreadable()

    def look():
        sensors, absent = find_power_meters(root=tree.root, clock=clock)
        return names(sensors), [[a.kind, a.reason, a.detail, a.hint] for a in absent]

    found, [(kind, reason, detail, hint)] = run_unprivileged(look)
    assert found == [] and (kind, reason) == (NODE, "permission denied")
    assert "power1_average" in detail and "0444" in hint


def test_a_meter_gone_mid_run_is_a_read_error_and_the_row_says_so(tmp_path, clock):
    tree = build_hwmon_tree(tmp_path / "hwmon", steady(400.0), clock=clock, layout="device")
    tracker = metered_tracker(tmp_path, clock, tree).start()
    with tracker.epoch(0):
        run_metered(tracker, clock, tree, 5.0)
        tree.remove()  # the driver unloaded
        clock.advance(5.0)
        tracker.sample()
    tracker.stop()
    (row, *_) = load_run(tracker.run_dir).epochs
    assert "node:hwmon2 failing" in row["notes"] and row["energy_kwh"] * J_PER_KWH == pytest.approx(250.0 * 10.0)
    assert tracker.sensor_health["node:hwmon2"].status == "failing"
    with pytest.raises(SensorReadError, match="power1_average"):  # the meter's error, translated at its boundary
        tracker.discovery.sensors[1].read()
    assert find_power_meters(root=tree.root, clock=clock)[0] == []  # and discovery no longer finds it


def test_unreadable_mid_run_is_a_sensor_error(world_tmp, clock):
    tree = build_hwmon_tree(world_tmp / "hwmon", clock=clock)
    (meter,), _ = find_power_meters(root=tree.root, clock=clock)
    tree.make_unreadable()

    def read():
        try:
            meter.read()
        except SensorPermissionError as e:
            return [e.sensor, type(e.__cause__).__name__]
        return None

    assert run_unprivileged(read) == ["node:hwmon2", "PermissionError"]


def metered_tracker(tmp_path, clock, tree, gpu_w=250.0, **options):
    """A tracker of one steady fake GPU and the tree's meters, sampled by hand."""
    meters, absent = find_power_meters(root=tree.root, clock=clock)
    assert not absent
    gpu = FakeSensor("gpu:0", "gpu", steady(gpu_w), clock)
    return EnergyTracker(
        tmp_path / "logs", sensors=[gpu, *meters], clock=clock, sampling="manual",
        carbon_intensity_g_per_kwh=100.0, **PATIENT, **options,
    )  # fmt: skip


def run_metered(tracker, clock, tree, seconds, interval_s=1.0):
    for _ in range(round(seconds / interval_s)):
        clock.advance(interval_s)
        tree.update()
        tracker.sample()


@pytest.mark.parametrize("meters", [1, 2])
def test_rows_hold_the_node_beside_the_components_within_3_percent(tmp_path, clock, meters):
    # A bursty node (300 <-> 700 W, 20 s period) read through the meter's 1 s trailing mean, every second.
    tree = build_hwmon_tree(tmp_path / "hwmon", square_wave(300.0, 700.0, 20.0), clock=clock, meters=meters)
    tracker = metered_tracker(tmp_path, clock, tree).start()
    for epoch in range(3):
        with tracker.epoch(epoch):
            started = clock()
            run_metered(tracker, clock, tree, 60.0)
            ended = clock()
    summary = tracker.stop()
    run = load_run(tracker.run_dir)
    for row in [r for r in run.epochs if r["phase"] == "train"]:
        assert row["energy_kwh"] * J_PER_KWH == pytest.approx(250.0 * 60.0)  # the GPU alone: the node is not added
        assert row["co2_kg"] == pytest.approx(row["energy_kwh"] * 0.1)
        assert row["node_method"] == ACPI_POWER_METER
    last = run.epochs[-2] if run.epochs[-1]["phase"] == "other" else run.epochs[-1]
    assert last["node_kwh"] * J_PER_KWH == pytest.approx(tree.true_energy_j(started, ended), rel=0.03)
    total_node_j = tree.true_energy_j(tree.origin_s, clock())
    assert summary.node_kwh * J_PER_KWH == pytest.approx(total_node_j, rel=0.03)
    assert summary.energy_kwh < summary.node_kwh and summary.node_method == ACPI_POWER_METER
    assert summary.unexplained_kwh == pytest.approx(summary.node_kwh - summary.energy_kwh)
    assert 0 < summary.unexplained_share < 1 and "more than the components" in " ".join(str(summary).split())
    counted = {t["term"]: t for t in run.info["boundary"]["counted"]}
    assert counted[NODE]["how"] == "measured" and "not added" in counted[NODE]["what"]
    nodes = [d for d in run.devices if d["kind"] == NODE]
    assert len({d["sensor"] for d in nodes}) == meters and all(d["method"] == ACPI_POWER_METER for d in nodes)
    assert {d["model"] for d in nodes} == {f"ACPI power meter PSU-{n}" for n in range(meters)}


def test_without_a_meter_the_node_columns_are_empty(tmp_path, clock):
    gpu = FakeSensor("gpu:0", "gpu", steady(100.0), clock)
    tracker = EnergyTracker(tmp_path, sensors=[gpu], clock=clock, sampling="manual", **PATIENT).start()
    with tracker.epoch(0):
        clock.advance(5.0)
        tracker.sample()
    summary = tracker.stop()
    (row, *_) = load_run(tracker.run_dir).epochs
    assert row["node_kwh"] is None and not row["node_method"]
    assert summary.unexplained_kwh is None and "node meter" not in str(summary)
    left = {t["term"]: t for t in load_run(tracker.run_dir).info["boundary"]["not_counted"]}
    assert "no whole-machine meter" in left[NODE]["why"]


def test_the_report_shows_the_node_and_the_unexplained_share_in_every_format(tmp_path, clock, capsys):
    tree = build_hwmon_tree(tmp_path / "hwmon", steady(400.0), clock=clock)
    tracker = metered_tracker(tmp_path, clock, tree, gpu_w=300.0).start()
    with tracker.epoch(0):
        run_metered(tracker, clock, tree, 30.0)
    tracker.stop()
    outputs = {}
    for fmt in ("text", "markdown", "csv", "json"):
        assert main(["report", str(tracker.run_dir), "--format", fmt]) == 0
        outputs[fmt] = capsys.readouterr().out
    for fmt in ("text", "markdown"):
        assert "whole node [acpi_power_meter], not added" in outputs[fmt]
        assert "(25.0 %) more than the components" in outputs[fmt]
        assert "node meter (" in outputs[fmt]
    assert main(["report", str(tracker.run_dir), "--paper"]) == 0
    paper = capsys.readouterr().out
    assert "The machine's own power meter (ACPI, read through Linux hwmon) recorded" in paper
    assert "(25.0 %) more than the components above" in paper and "not added to them" in paper
    header, *rows = outputs["csv"].splitlines()
    assert "node_kwh" in header.split(",") and "node_method" in header.split(",")
    (run,) = json.loads(outputs["json"])["runs"]
    node = run["node"]
    assert node["unexplained_share"] == pytest.approx(0.25, rel=0.01)
    assert node["node_kwh"] == pytest.approx(node["components_kwh"] / 0.75, rel=0.01)
    assert run["totals"]["energy_kwh"] == pytest.approx(node["components_kwh"])


def test_devices_lists_the_meter(tmp_path, clock):
    from tracker.report.devices import survey

    build_hwmon_tree(tmp_path, steady(380.0), clock=clock)
    found = survey(wait_s=0.0, gpus=False, cpu=False, ram=False, hwmon_root=tmp_path, clock=clock)
    (sensor,) = found["sensors"]
    assert (sensor["kind"], sensor["method"]) == (NODE, ACPI_POWER_METER)
    assert sensor["power_w"] == pytest.approx(380.0) and sensor["info"]["accuracy"] == "95.0%"
    assert "The node's own meter (ACPI power meter) is read beside them, never added." in found["verdict"]


def two_host_job(tmp_path, meter_names=("power_meter", "power_meter")):
    """Four ranks on two hosts (500 W and 700 W nodes, a 200 W GPU per rank) through 20 s of epoch 0; their trackers."""
    from tracker.testing import FakeClock

    clock = FakeClock()
    trees = {host: build_hwmon_tree(tmp_path / host, steady(watts), clock=clock, name=name)
             for host, watts, name in zip(("node-a", "node-b"), (500.0, 700.0), meter_names, strict=True)}  # fmt: skip
    trackers = []
    for rank in range(4):
        host = ("node-a", "node-b")[rank // 2]
        nvml = FakeNvml([FakeGpu(trace=steady(200.0), uuid=f"GPU-{rank}")], clock=clock)
        launch = Launch(rank, rank % 2, 4, 2, job_id="job-2n", launcher="token")
        trackers.append(EnergyTracker(
            tmp_path / "logs", nvml=nvml, hwmon_root=trees[host].root, measure=("gpu", "node"), launch=launch,
            host=host, rank=rank, clock=clock, sampling="manual", carbon_intensity_g_per_kwh=100.0, **PATIENT,
        ).start())  # fmt: skip
    with contextlib.ExitStack() as epochs:
        for t in trackers:
            epochs.enter_context(t.epoch(0))
        for _ in range(20):
            clock.advance(1.0)
            for tree in trees.values():
                tree.update()
            for t in trackers:
                t.sample()
    for t in trackers:
        t.stop()
    return trackers


def test_two_hosts_each_node_read_once_by_its_local_rank_0(tmp_path):
    """Each host's meter is read by its local rank 0 alone, and the job counts each once."""
    trackers = two_host_job(tmp_path)
    assert [[s.kind for s in t.discovery.sensors] for t in trackers] == [["gpu", NODE], ["gpu"]] * 2
    (followed,) = [r for r in trackers[0].job_rows() if r["phase"] == "train"]  # the live view, the merge's rule
    assert followed["node_kwh"] * J_PER_KWH == pytest.approx((500.0 + 700.0) * 20.0, rel=0.03)
    job = load_run(trackers[0].job_dir)
    (train,) = [r for r in job.epochs if r["phase"] == "train"]
    assert train["node_kwh"] * J_PER_KWH == pytest.approx((500.0 + 700.0) * 20.0, rel=0.03)
    assert train["energy_kwh"] * J_PER_KWH == pytest.approx(4 * 200.0 * 20.0, rel=0.03)
    assert sorted((d["host"], d["rank"]) for d in job.devices if d["kind"] == NODE and d["phase"] == "train") == [
        ("node-a", 0), ("node-b", 2),
    ]  # fmt: skip


def test_a_job_with_a_meter_on_some_machines_leaves_node_kwh_empty_and_says_why(tmp_path):
    trackers = two_host_job(tmp_path, meter_names=("power_meter", "nvme"))  # node-b has no ACPI meter
    job = load_run(trackers[0].job_dir)
    (train,) = [r for r in job.epochs if r["phase"] == "train"]
    assert train["node_kwh"] is None and not train["node_method"]
    assert "node meter on 1 of 2 machines" in train["notes"]
    assert train["energy_kwh"] * J_PER_KWH == pytest.approx(4 * 200.0 * 20.0, rel=0.03)
    (followed,) = [r for r in trackers[0].job_rows() if r["phase"] == "train"]
    assert followed["node_kwh"] is None


def test_components_above_the_meter_are_said_so(tmp_path, clock):
    tree = build_hwmon_tree(tmp_path / "hwmon", steady(200.0), clock=clock)
    tracker = metered_tracker(tmp_path, clock, tree, gpu_w=300.0).start()
    with tracker.epoch(0):
        run_metered(tracker, clock, tree, 10.0)
    summary = tracker.stop()
    assert summary.unexplained_kwh < 0 and "the components exceed it by" in summary.node_line()


def test_prometheus_gives_the_meter_as_the_host_s_energy_apart_from_the_components(tmp_path, clock):
    """OpenTelemetry keeps the whole host's energy (hw.host.energy) apart from hw.energy, so a sum never overlaps."""
    parser = pytest.importorskip("prometheus_client.parser")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    tree = build_hwmon_tree(tmp_path / "hwmon", steady(400.0), clock=clock)
    tracker = metered_tracker(tmp_path, clock, tree, prometheus_port=f"127.0.0.1:{port}").start()
    with tracker.epoch(0):
        run_metered(tracker, clock, tree, 10.0)
    deadline, samples = time.monotonic() + 30.0, {}
    while not samples.get("hw_host_energy_joules_total") and time.monotonic() < deadline:
        time.sleep(0.05)  # the sink thread counts the row off the training thread
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5.0) as reply:
            text = reply.read().decode()
        samples = {}
        for family in parser.text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append(sample)
    tracker.stop()
    (host,) = samples["hw_host_energy_joules_total"]
    assert host.labels["hw_id"] == "node:hwmon2" and host.value == pytest.approx(400.0 * 10.0, rel=0.03)
    assert {s.labels["hw_id"] for s in samples["hw_energy_joules_total"]} == {"gpu:0"}


class SlowAtFirst:
    """A meter whose first reads take 0.3 s (a firmware answering through the BMC), then answer at once."""

    def __init__(self, inner, slow_reads=2):
        self.inner, self.slow_reads = inner, slow_reads
        self.name, self.kind, self.method, self.info = inner.name, inner.kind, inner.method, inner.info

    def read(self):
        if self.slow_reads:
            self.slow_reads -= 1
            time.sleep(0.3)
        return self.inner.read()

    def close(self):
        self.inner.close()


def test_a_slow_meter_is_read_in_the_background_only_and_the_rows_say_so(tmp_path, clock):
    tree = build_hwmon_tree(tmp_path / "hwmon", square_wave(300.0, 700.0, 20.0), clock=clock)
    (meter,), _ = find_power_meters(root=tree.root, clock=clock)
    gpu = FakeSensor("gpu:0", "gpu", steady(250.0), clock)
    tracker = EnergyTracker(tmp_path / "logs", sensors=[gpu, SlowAtFirst(meter)], clock=clock, sampling="manual",
                            carbon_intensity_g_per_kwh=100.0, **PATIENT).start()  # fmt: skip
    with tracker.epoch(0):
        started = clock()
        run_metered(tracker, clock, tree, 60.0)
        ended = clock()
    tracker.stop()
    assert tracker.sensor_health["node:hwmon2"].slow  # never read at an edge again
    (row,) = [r for r in load_run(tracker.run_dir).epochs if r["phase"] == "train"]
    assert "node:hwmon2 read late at" in row["notes"]
    assert row["node_kwh"] * J_PER_KWH == pytest.approx(tree.true_energy_j(started, ended), rel=0.03)
    assert row["energy_kwh"] * J_PER_KWH == pytest.approx(250.0 * 60.0)


def test_the_node_line_says_the_meter_is_beside_the_components_and_nothing_without_one():
    import tracker.units as units

    assert units.node_beside(1.2, 0.3, 0.25, ACPI_POWER_METER) == (
        "1.20 kWh whole node [acpi_power_meter], not added; 300 Wh (25.0 %) more than the components"
    )
    assert units.node_beside(None, None, None, ACPI_POWER_METER) is None  # no row read yet
    assert units.node_beside(1.0, 1.0, 1.0, "") is None  # no meter
