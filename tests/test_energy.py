"""The energy arithmetic (tracker/energy.py): units, counter differences, the trapezoid, CO2, the method join."""

import pytest

from tracker.energy import (
    ABSENT,
    J_PER_KWH,
    co2_kg,
    counter_delta_j,
    effective_g_per_kwh,
    joined,
    joules_to_kwh,
    trapezoid_j,
)


def test_kwh_is_exact():
    assert J_PER_KWH == 3_600_000
    assert joules_to_kwh(3_600_000) == 1.0
    assert joules_to_kwh(0.0) == 0.0


def test_counter_delta_plain_wrap_and_reset():
    assert counter_delta_j(10.0, 25.0, None) == (15.0, "")
    assert counter_delta_j(10.0, 10.0, 100.0) == (0.0, "")
    assert counter_delta_j(90.0, 5.0, 100.0) == (15.0, "wrap")
    assert counter_delta_j(90.0, 5.0, None) == (5.0, "reset")
    assert counter_delta_j(90.0, 5.0, 0.0) == (5.0, "reset")  # a range of 0 is no range


def test_trapezoid():
    assert trapezoid_j(100.0, 300.0, 2.0) == 400.0
    assert trapezoid_j(50.0, 50.0, 0.0) == 0.0


def test_co2_is_energy_times_pue_times_intensity():
    assert co2_kg(2.0, 1.0, 500.0) == 1.0
    assert co2_kg(energy_kwh=10.0, pue=1.5, g_per_kwh=400.0) == 6.0
    assert co2_kg(0.0, 1.58, 475.0) == 0.0


def test_effective_intensity_inverts_co2():
    assert effective_g_per_kwh(co2_kg(2.0, 1.5, 400.0), 2.0, 1.5) == pytest.approx(400.0)
    assert effective_g_per_kwh(1.0, 0.0, 1.5) is None


@pytest.mark.parametrize(
    ("methods", "expected"),
    [
        ([], ABSENT),
        ([ABSENT, None, ""], ABSENT),
        (["energy_counter", "energy_counter"], "energy_counter"),
        (["rapl", ABSENT, "tdp_estimate+rapl"], "rapl+tdp_estimate"),
        (iter(["power_polling", "energy_counter"]), "power_polling+energy_counter"),
    ],
)
def test_methods_join_once_each_in_first_seen_order(methods, expected):
    assert joined(methods) == expected
