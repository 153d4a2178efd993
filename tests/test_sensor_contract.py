"""One contract that every sensor satisfies, whatever its source (psutil's test_contracts, in spirit)."""

import json
import math

import pytest

from tracker.sensors import KINDS, Reading, Sensor
from tracker.sensors.amd import find_amd_gpus
from tracker.sensors.cpu_estimate import CpuEstimateSensor
from tracker.sensors.cpu_scope import ProcessScopedSensor
from tracker.sensors.hwmon import find_power_meters
from tracker.sensors.methods import METHODS
from tracker.sensors.nvml import find_gpus
from tracker.sensors.ram import RamModelSensor
from tracker.sensors.rapl import find_rapl
from tracker.testing import (
    FakeAmdGpu,
    FakeAmdSmi,
    FakeGpu,
    FakeNvml,
    FakeSensor,
    build_hwmon_tree,
    build_powercap_tree,
    square_wave,
    steady,
)


def nvml_sensors(clock, has_counter, **gpu):
    nvml = FakeNvml([FakeGpu(trace=square_wave(50, 350, 0.3), has_counter=has_counter, **gpu)], clock=clock)
    sensors, absent = find_gpus(nvml=nvml, visible_devices=None, clock=clock)
    assert not absent
    return sensors, lambda seconds: None


def rapl_sensors(clock, tmp_path):
    tree = build_powercap_tree(tmp_path / "powercap", packages=2, dram=True)
    sensors, _ = find_rapl(root=tmp_path / "powercap", clock=clock)

    def work(seconds):
        for zone in tree.zones:
            tree.add_energy_j(zone, 10.0 * seconds)

    return sensors, work


def node_meters(clock, tmp_path):
    tree = build_hwmon_tree(tmp_path / "hwmon", square_wave(300, 600, 2.0), clock=clock, meters=2)
    sensors, _ = find_power_meters(root=tree.root, clock=clock)
    return sensors, lambda seconds: tree.update()


def amd_sensors(clock, **gpu):
    sensors, absent = find_amd_gpus(
        smi=FakeAmdSmi([FakeAmdGpu(trace=square_wave(90, 560, 0.5), **gpu)], clock), clock=clock
    )
    assert not absent
    return sensors, lambda seconds: None


class _CpuTimes:
    """This process's and the machine's CPU seconds, advancing with the work done."""

    def __init__(self):
        self.mine = self.busy = 0.0

    def work(self, seconds):
        self.mine += 0.3 * seconds
        self.busy += 0.9 * seconds


def process_scoped(clock):
    times = _CpuTimes()
    inner = CpuEstimateSensor(tdp_w=65.0, clock=clock)
    return [ProcessScopedSensor(inner, process_cpu_s=lambda: times.mine, busy_cpu_s=lambda: times.busy)], times.work


FACTORIES = {
    "nvml counter": lambda clock, tmp_path: nvml_sensors(clock, True),
    "nvml polling": lambda clock, tmp_path: nvml_sensors(clock, False),
    "nvml sample buffer": lambda clock, tmp_path: nvml_sensors(clock, False, sample_period_s=0.02),
    "nvml instant field": lambda clock, tmp_path: nvml_sensors(clock, False, power_fields=True),
    "nvml 1 s average": lambda clock, tmp_path: nvml_sensors(clock, False, name="NVIDIA A10", power_average_s=1.0),
    "amd accumulator": lambda clock, tmp_path: amd_sensors(clock),
    "amd average socket power": lambda clock, tmp_path: amd_sensors(clock, has_counter=False),
    "amd current socket power": lambda clock, tmp_path: amd_sensors(clock, has_counter=False, has_current_power=True),
    "cpu, process scope": lambda clock, tmp_path: process_scoped(clock),
    "rapl": rapl_sensors,
    "acpi power meter": node_meters,
    "cpu estimate": lambda clock, tmp_path: ([CpuEstimateSensor(clock=clock)], lambda s: None),
    "cpu estimate, user tdp": lambda clock, tmp_path: ([CpuEstimateSensor(tdp_w=65.0, clock=clock)], lambda s: None),
    "ram model": lambda clock, tmp_path: ([RamModelSensor(clock=clock)], lambda s: None),
    "ram, user watts": lambda clock, tmp_path: ([RamModelSensor(power_w=4.0, clock=clock)], lambda s: None),
    "fake": lambda clock, tmp_path: ([FakeSensor(trace=steady(42.0), clock=clock)], lambda s: None),
}


@pytest.fixture(params=list(FACTORIES), ids=list(FACTORIES))
def sensors(request, clock, tmp_path):
    found, work = FACTORIES[request.param](clock, tmp_path)
    assert found, f"{request.param}: no sensor found"
    yield found, work
    for sensor in found:
        sensor.close()
        sensor.close()  # closing twice is harmless


def test_every_sensor_honours_the_contract(sensors, clock):
    found, work = sensors
    assert len({s.name for s in found}) == len(found)  # names are unique
    for sensor in found:
        assert isinstance(sensor, Sensor)
        assert isinstance(sensor.name, str) and sensor.name
        assert sensor.kind in KINDS
        assert sensor.method in METHODS, f"{sensor.method} has no documented uncertainty band"
        json.dumps(dict(sensor.info), default=str)  # info goes into run.json
    previous = {s.name: s.read() for s in found}
    for _ in range(3):
        clock.advance(0.5)
        work(0.5)
        for sensor in found:
            reading = sensor.read()
            assert isinstance(reading, Reading)
            assert (reading.sensor, reading.kind) == (sensor.name, sensor.kind)
            assert math.isfinite(reading.time_s) and reading.time_s > previous[sensor.name].time_s
            assert reading.energy_j is not None or reading.power_w is not None
            if reading.power_w is not None:
                assert math.isfinite(reading.power_w) and reading.power_w >= 0
            if reading.energy_j is not None:
                assert math.isfinite(reading.energy_j) and reading.energy_j >= 0
                assert reading.energy_j >= previous[sensor.name].energy_j  # no wrap or reset was scripted
            with pytest.raises(AttributeError):
                reading.energy_j = 0.0  # readings are immutable values
            previous[sensor.name] = reading


def test_every_method_says_in_the_start_line_whether_it_is_an_estimate():
    from tracker.sensors.methods import short

    for method in METHODS.values():
        assert method.short and method.short.startswith("ESTIMATE") == (not method.measured), method.name
    assert short("some_new_method") == "some_new_method"


def test_the_counter_methods_are_the_hardware_counters():
    from tracker.sensors.methods import is_counter

    assert {m.name for m in METHODS.values() if is_counter(m.name)} == {"energy_counter", "rapl", "rapl_dram"}
    assert not is_counter("some_new_method")
