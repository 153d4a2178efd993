import math

import pytest

from tracker.measure.meter import Meter, SensorTotals, trapezoid_variance_j2
from tracker.sensors import Reading


def counter(t, e, sensor="gpu:0", range_j=None, power=None):
    return Reading(sensor, "gpu", t, energy_j=e, power_w=power, counter_range_j=range_j)


def power(t, w, sensor="gpu:0"):
    return Reading(sensor, "gpu", t, power_w=w)


def test_trapezoid_variance():
    assert trapezoid_variance_j2(100.0, 300.0, 2.0) == pytest.approx((200.0 * 2.0) ** 2 / 12)
    assert trapezoid_variance_j2(50.0, 50.0, 1.0) == 0.0


def test_counter_readings_give_differences_and_power_cross_check():
    meter = Meter(interval_s=1.0)
    meter.add(counter(0.0, 1000.0, power=100.0))
    first = meter.snapshot()
    meter.add(counter(1.0, 1100.0, power=100.0))
    meter.add(counter(2.0, 1300.0, power=300.0))
    usage = meter.snapshot() - first
    totals = usage.sensors["gpu:0"]
    assert totals.energy_j == 300.0
    assert totals.integrated_j == 100.0 + 200.0
    assert totals.integrated_s == 2.0
    assert totals.sampling_var_j2 == 0.0  # a counter has no sampling error
    assert totals.readings == 2


def test_wrap_is_counted_and_adds_the_range():
    meter = Meter(interval_s=1.0)
    for t, e in [(0, 90.0), (1, 98.0), (2, 3.0), (3, 10.0)]:
        meter.add(counter(t, e, range_j=100.0))
    totals = meter.snapshot().sensors["gpu:0"]
    assert totals.energy_j == 8.0 + 5.0 + 7.0
    assert totals.wraps == 1 and totals.resets == 0


def test_reset_is_never_negative_energy():
    meter = Meter(interval_s=1.0)
    for t, e in [(0, 500.0), (1, 600.0), (2, 40.0), (3, 140.0)]:
        meter.add(counter(t, e))
    totals = meter.snapshot().sensors["gpu:0"]
    assert totals.energy_j == 100.0 + 40.0 + 100.0
    assert totals.resets == 1


def test_power_only_sensor_uses_trapezoid_with_variance():
    meter = Meter(interval_s=0.1)
    for t, w in [(0.0, 50.0), (0.1, 350.0), (0.2, 350.0)]:
        meter.add(power(t, w))
    totals = meter.snapshot().sensors["gpu:0"]
    assert totals.energy_j == pytest.approx(0.5 * 400 * 0.1 + 350 * 0.1)
    assert totals.sampling_var_j2 == pytest.approx((300 * 0.1) ** 2 / 12)


def test_gaps_longer_than_three_intervals_are_recorded_not_hidden():
    meter = Meter(interval_s=1.0)
    for t, e in [(0, 0.0), (1, 100.0), (6, 600.0), (7, 700.0)]:
        meter.add(counter(t, e))
    totals = meter.snapshot().sensors["gpu:0"]
    assert totals.gap_s == 5.0
    assert totals.energy_j == 700.0  # a counter loses nothing in a gap


def test_reading_without_counter_or_pair_of_powers_is_unmeasured_time():
    meter = Meter(interval_s=1.0)
    meter.add(Reading("gpu:0", "gpu", 0.0, power_w=100.0))
    meter.add(Reading("gpu:0", "gpu", 1.0, energy_j=5.0))
    assert meter.snapshot().sensors["gpu:0"].unmeasured_s == 1.0


def test_stale_and_out_of_order_readings_are_ignored():
    meter = Meter(interval_s=1.0)
    meter.add(counter(0.0, 0.0))
    meter.add(counter(2.0, 200.0))
    meter.add(counter(1.0, 100.0))  # raced in late
    meter.add(counter(2.0, 200.0))  # the same moment again
    totals = meter.snapshot().sensors["gpu:0"]
    assert totals.energy_j == 200.0 and totals.readings == 2


def test_snapshots_are_additive_over_any_split():
    meter = Meter(interval_s=1.0)
    snaps = []
    for t in range(10):
        meter.add(counter(float(t), float(t * t), range_j=50.0))
        meter.add(power(float(t), 10.0 * t, sensor="gpu:1"))
        snaps.append(meter.snapshot())
    a, b, c = snaps[1], snaps[4], snaps[9]
    left, right, whole = (b - a), (c - b), (c - a)
    for name in whole.sensors:
        assert (left + right).sensors[name].energy_j == pytest.approx(whole.sensors[name].energy_j)
    assert (left + right).energy_j == pytest.approx(whole.energy_j)


def test_snapshot_is_immutable_and_unaffected_by_later_readings():
    meter = Meter(interval_s=1.0)
    meter.add(counter(0.0, 0.0))
    meter.add(counter(1.0, 10.0))
    snap = meter.snapshot()
    meter.add(counter(2.0, 30.0))
    assert snap.sensors["gpu:0"].energy_j == 10.0
    with pytest.raises(TypeError):
        snap.sensors["gpu:0"] = SensorTotals()  # type: ignore[index]


def test_peaks_are_taken_per_interval():
    meter = Meter(interval_s=1.0)
    meter.add(power(0.0, 100.0))
    meter.add(power(1.0, 400.0))
    assert meter.take_peaks_w() == {"gpu:0": 400.0}
    meter.add(power(2.0, 150.0))
    assert meter.take_peaks_w() == {"gpu:0": 150.0}
    assert math.isclose(meter.snapshot().sensors["gpu:0"].energy_j, 250.0 + 275.0)


def test_interval_touching_a_boundary_holds_the_inner_readings_power():
    meter = Meter(interval_s=1.0)
    meter.add(power(0.0, 50.0), boundary=True)  # the epoch opens: idle until now
    meter.add(power(1.0, 350.0))  # busy inside
    meter.add(power(2.0, 350.0))
    meter.add(power(3.0, 50.0), boundary=True)  # the epoch closes: the load has just dropped
    totals = meter.snapshot().sensors["gpu:0"]
    assert totals.energy_j == 3 * 350.0  # the trapezoid would say 200 + 350 + 200
    assert totals.integrated_j == 200.0 + 350.0 + 200.0  # the trapezoid is kept beside it
    assert totals.sampling_var_j2 == pytest.approx(2 * (300.0 * 1.0) ** 2 / 3)


def test_interval_between_two_boundaries_uses_the_trapezoid():
    meter = Meter(interval_s=1.0)
    meter.add(power(0.0, 100.0), boundary=True)
    meter.add(power(1.0, 300.0), boundary=True)
    assert meter.snapshot().sensors["gpu:0"].energy_j == 200.0


def test_boundaries_do_not_change_counters():
    meter = Meter(interval_s=1.0)
    meter.add(counter(0.0, 0.0, power=50.0), boundary=True)
    meter.add(counter(1.0, 300.0, power=350.0))
    meter.add(counter(2.0, 400.0, power=50.0), boundary=True)
    assert meter.snapshot().sensors["gpu:0"].energy_j == 400.0


def test_a_power_only_gap_is_estimated_with_the_recent_mean_power_and_a_wide_band():
    meter = Meter(interval_s=0.1)
    t = 0.0
    for i in range(400):  # 40 s of a 50/350 W load alternating at every reading
        meter.add(power(t, 350.0 if i % 2 else 50.0))
        t += 0.1
    before = meter.snapshot()
    meter.add(power(t + 1.9, 350.0))  # two seconds without a reading, both ends at 350 W
    step = (meter.snapshot() - before).sensors["gpu:0"]
    assert step.gap_s == pytest.approx(2.0)
    assert step.energy_j == pytest.approx(200.0 * 2.0, rel=0.02)  # the recent mean, not the ends' 350 W
    assert 3 * math.sqrt(step.sampling_var_j2) == pytest.approx(3 * 350.0 * 2.0 / math.sqrt(12))


def test_a_counter_out_at_an_edge_is_estimated_there_and_the_rest_booked_on_its_return():
    meter = Meter(1.0, caps_w={"gpu": 400.0})
    meter.add(Reading("gpu", "gpu", 0.0, energy_j=0.0))
    meter.add(Reading("gpu", "gpu", 10.0, energy_j=1000.0))  # 100 W
    meter.stale_edge("gpu", 20.0, out=False)  # only busy: nothing estimated
    assert meter.snapshot().sensors["gpu"].split_s == 0.0
    meter.stale_edge("gpu", 20.0, out=True)  # failing: 10 s at the recent 100 W, the band of 0 to 400 W
    edge = meter.snapshot()
    meter.add(Reading("gpu", "gpu", 30.0, energy_j=5000.0))  # back: 4000 J in 20 s, 1000 J of it estimated before
    after = meter.snapshot() - edge
    before = edge.sensors["gpu"]
    assert (before.energy_j, before.split_s, before.sampling_var_j2) == (2000.0, 10.0, (400.0 * 10) ** 2 / 12)
    totals = after.sensors["gpu"]
    assert (totals.energy_j, totals.split_s, totals.gap_s, totals.covered_s) == (3000.0, 10.0, 0.0, 0.0)
    assert totals.sampling_var_j2 == before.sampling_var_j2  # the rest errs by the estimate's error
    assert meter.snapshot().sensors["gpu"].energy_j == 5000.0  # the counter's total, nothing lost or doubled
