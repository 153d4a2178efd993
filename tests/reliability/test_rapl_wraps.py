"""Issue 20, item 10: a RAPL counter that could wrap more than once between two reads.

An AMD package's counter holds 65.5 kJ (2^32 units of 15.3 µJ): at 100 W it wraps every 11 min, at
300 W every 3.6 min. ``interval_s`` may be up to an hour. The zone is read as the session reads it:
in the lane :func:`~tracker.session.timeline.lane_intervals` gives it, by a :class:`Sampler` driven
by hand, plus one read at each epoch edge. Before the fix (bf1c16a), at ``interval_s=3600`` with
epochs of 15, 20 and 25 min at a true 100 W, the rows said 27.2, 45.4 and 12.6 W (each lost the
whole wraps it could not see); after, 100 W each, since the zone is read at least every 32.8 s.
"""

from __future__ import annotations

import logging

import pytest

from tracker.measure.meter import Meter
from tracker.measure.sampler import Sampler
from tracker.sensors.rapl import MAX_ZONE_W, find_rapl
from tracker.session.timeline import lane_intervals
from tracker.testing import FakeClock, build_powercap_tree

AMD_RANGE_UJ = 65_532_610_987  # max_energy_range_uj of an AMD Zen package


def mean_watts(tmp_path, interval_s, epochs_s, watts=100.0):
    """Each epoch's mean CPU power as the meter books it, W."""
    clock = FakeClock()
    tree = build_powercap_tree(tmp_path / "powercap", vendor="amd", max_energy_range_uj=AMD_RANGE_UJ)
    sensors, _ = find_rapl(root=tree.root, clock=clock)
    meter = Meter(interval_s)
    samplers = [
        Sampler(members, meter.add_all, interval_s=lane_s, clock=clock, slowest_s=interval_s)
        for lane_s, members in lane_intervals(sensors, interval_s).items()
        if members
    ]
    due = {id(s): s.interval_s for s in samplers}
    meter.add_all(s.read() for s in sensors)
    means = []
    for epoch_s in epochs_s:
        before = meter.snapshot()
        for _ in range(int(epoch_s)):
            clock.advance(1.0)
            tree.add_energy_j("package-0", watts)
            for sampler in samplers:
                due[id(sampler)] -= 1.0
                if due[id(sampler)] <= 1e-9:
                    sampler.tick()
                    due[id(sampler)] = sampler.interval_s
        meter.add_all(s.read() for s in sensors)  # the epoch's edge
        means.append((meter.snapshot() - before).energy_j / epoch_s)
    return means


def test_a_zone_is_read_before_its_counter_can_wrap_twice_whatever_interval_s(tmp_path):
    tree = build_powercap_tree(tmp_path / "tree", vendor="amd", max_energy_range_uj=AMD_RANGE_UJ)
    (sensor,), _ = find_rapl(root=tree.root)
    assert sensor.max_interval_s == pytest.approx(AMD_RANGE_UJ / 1e6 / MAX_ZONE_W / 2)  # 32.8 s
    # bf1c16a: [27.2, 45.4, 12.6] W: the hour-long interval read the zone at the epochs' edges only
    assert mean_watts(tmp_path, 3600.0, [900, 1200, 1500]) == pytest.approx([100.0] * 3)


def test_the_default_interval_keeps_the_zones_in_the_main_lane(tmp_path):
    sensors, _ = find_rapl(root=build_powercap_tree(tmp_path, vendor="amd", max_energy_range_uj=AMD_RANGE_UJ).root)
    assert list(lane_intervals(sensors, 1.0)) == [1.0]


def test_a_read_later_than_one_wrap_is_warned_about(tmp_path, caplog):
    clock = FakeClock()
    tree = build_powercap_tree(tmp_path, vendor="amd", max_energy_range_uj=AMD_RANGE_UJ)
    (sensor,), _ = find_rapl(root=tree.root, clock=clock)
    sensor.read()
    clock.advance(30.0)
    sensor.read()
    assert not caplog.records
    clock.advance(100.0)  # a stalled process: more than 65.5 s, one wrap at 1 kW
    with caplog.at_level(logging.WARNING):
        sensor.read()
        clock.advance(100.0)
        sensor.read()
    (warning,) = caplog.records
    assert "cpu:package-0 was not read for 100 s" in warning.getMessage() and "whole wraps" in warning.getMessage()
