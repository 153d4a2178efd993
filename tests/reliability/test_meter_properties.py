"""Property-based tests of ``tracker.measure.meter``: counters with wraps and resets, the trapezoid, snapshots.

For any stream of readings: no interval has negative energy (or negative time, readings, wraps),
and the usage between snapshots is additive over any split, ``(c - b) + (b - a) == c - a``.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.energy import counter_delta_j
from tracker.measure.meter import UNKNOWN_CAP_W, Meter, SensorTotals, Usage
from tracker.sensors import Reading

FIELDS = list(SensorTotals._fields)
RANGE_J = 262_143.328850  # an Intel RAPL counter range, J
dts = st.floats(min_value=0.001, max_value=30.0, allow_nan=False)
watts = st.floats(min_value=0.0, max_value=2000.0, allow_nan=False)
# What a device can draw: up to the meter's cap for a sensor of unknown limit.
device_watts = st.floats(min_value=0.0, max_value=UNKNOWN_CAP_W, allow_nan=False)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def snapshots_of(readings: list[Reading], interval_s: float = 1.0) -> list:
    meter = Meter(interval_s)
    shots = [meter.snapshot()]
    for reading in readings:
        meter.add(reading)
        shots.append(meter.snapshot())
    return shots


def assert_non_negative(usage: Usage) -> None:
    for name, totals in usage.sensors.items():
        for field in FIELDS:
            assert getattr(totals, field) >= -1e-6, (name, field, totals)


def assert_additive(a, b, c) -> None:
    split, whole = (c - b) + (b - a), c - a
    for name in set(split.sensors) | set(whole.sensors):
        left, right = split.sensors.get(name, SensorTotals()), whole.sensors.get(name, SensorTotals())
        for field in FIELDS:
            assert close(getattr(left, field), getattr(right, field)), (name, field, left, right)


def check_every_split(shots: list, data: st.DataObject) -> None:
    """Every consecutive interval is non-negative; a few random splits a <= b <= c are additive."""
    for earlier, later in zip(shots, shots[1:], strict=False):
        assert_non_negative(later - earlier)
    assert_non_negative(shots[-1] - shots[0])
    for _ in range(5):
        a, b, c = sorted(data.draw(st.integers(0, len(shots) - 1)) for _ in range(3))
        assert_additive(shots[a], shots[b], shots[c])


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(dts, device_watts), min_size=1, max_size=40),
       start=st.floats(0.0, RANGE_J * 0.999), data=st.data())  # fmt: skip
def test_wrapping_counter_loses_nothing_and_is_additive(steps, start, data):
    t, raw, readings = 100.0, start, [Reading("cpu:package-0", "cpu", 100.0, energy_j=start, counter_range_j=RANGE_J)]
    steps = [(dt, w * dt) for dt, w in steps]  # what a device drawing w watts adds in dt
    for dt, used_j in steps:
        t, raw = t + dt, math.fmod(raw + used_j, RANGE_J)
        readings.append(Reading("cpu:package-0", "cpu", t, energy_j=raw, counter_range_j=RANGE_J))
    shots = snapshots_of(readings)
    check_every_split(shots, data)
    total = (shots[-1] - shots[0]).sensors["cpu:package-0"]
    assert math.isclose(total.energy_j, sum(used for _, used in steps), rel_tol=1e-9, abs_tol=1e-5)
    assert total.resets == 0


# Each step: the device drew `watts` for dt (added to the counter), or the driver reloaded at some
# moment in dt and the counter has counted a fraction of the step since.
counter_steps = st.lists(
    st.tuples(dts, st.tuples(st.sampled_from(["add", "reset"]), device_watts, st.floats(0.0, 1.0))),
    min_size=1, max_size=40,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(steps=counter_steps, data=st.data())
def test_resetting_counter_never_goes_negative_and_is_additive(steps, data):
    t, raw, readings, expected = 0.0, 1e6, [Reading("gpu:0", "gpu", 0.0, energy_j=1e6)], 0.0
    for dt, (kind, w, since) in steps:
        t += dt
        value = w * dt * (since if kind == "reset" else 1.0)
        if kind == "add":
            raw, expected = raw + value, expected + value
        elif value < raw:  # a driver reload: the counter restarts and has counted `value` since
            raw, expected = value, expected + value
        else:  # a "reset" above the old value is indistinguishable from counting on
            raw, expected = value, expected + value - raw
        readings.append(Reading("gpu:0", "gpu", t, energy_j=raw))
    shots = snapshots_of(readings)
    check_every_split(shots, data)
    assert math.isclose((shots[-1] - shots[0]).energy_j, expected, rel_tol=1e-9, abs_tol=1e-5)


@settings(max_examples=150, deadline=None)
@given(samples=st.lists(st.tuples(dts, watts), min_size=1, max_size=40), first=watts, data=st.data())
def test_trapezoid_is_non_negative_exact_and_additive(samples, first, data):
    t, readings, expected = 0.0, [Reading("gpu:0", "gpu", 0.0, power_w=first)], 0.0
    previous = first
    for dt, w in samples:
        t += dt
        expected += 0.5 * (previous + w) * dt
        previous = w
        readings.append(Reading("gpu:0", "gpu", t, power_w=w))
    shots = snapshots_of(readings, interval_s=60.0)  # no gaps: a gap is estimated from the recent mean power
    check_every_split(shots, data)
    total = (shots[-1] - shots[0]).sensors["gpu:0"]
    assert math.isclose(total.energy_j, expected, rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose(total.integrated_s, t, rel_tol=1e-9)


any_reading = st.builds(
    lambda sensor, dt, energy, power, ranged: (sensor, dt, energy, power, ranged),
    st.sampled_from(["gpu:0", "gpu:1", "cpu"]),
    st.floats(-2.0, 5.0),  # readings may come late, at the same moment, or out of order
    st.one_of(st.none(), st.floats(0.0, RANGE_J * 0.999)),
    st.one_of(st.none(), watts),
    st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(stream=st.lists(any_reading, min_size=1, max_size=60), data=st.data())
def test_any_mixed_stream_of_readings_is_non_negative_and_additive(stream, data):
    clocks: dict[str, float] = {}
    readings = []
    for sensor, dt, energy, power, ranged in stream:
        clocks[sensor] = clocks.get(sensor, 0.0) + dt
        readings.append(
            Reading(
                sensor,
                "gpu",
                clocks[sensor],
                energy_j=energy,
                power_w=power,
                counter_range_j=RANGE_J if ranged else None,
            )
        )
    check_every_split(snapshots_of(readings, interval_s=0.5), data)


@given(previous=st.floats(0.0, RANGE_J * 0.999), current=st.floats(0.0, RANGE_J * 0.999), ranged=st.booleans())
def test_counter_delta_is_never_negative_nor_beyond_the_range(previous, current, ranged):
    delta, event = counter_delta_j(previous, current, RANGE_J if ranged else None)
    assert 0.0 <= delta <= RANGE_J  # < in exact arithmetic; a tiny previous value rounds to the range
    assert event == ("" if current >= previous else "wrap" if ranged else "reset")
