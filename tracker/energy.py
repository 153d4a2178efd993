"""The energy arithmetic every layer uses: units, counter differences, the trapezoid, CO2, the method join.

A leaf module (no imports from the package), below the sensors, so that a sensor, the meter, the
session, the logs and the report compute each of these in one way.

Example:
    >>> joules_to_kwh(7_200_000), counter_delta_j(90.0, 10.0, 100.0), trapezoid_j(100.0, 200.0, 2.0)
    (2.0, (20.0, 'wrap'), 300.0)
    >>> co2_kg(2.0, 1.5, 400.0), joined(["energy_counter", "absent", "rapl+energy_counter"])
    (1.2, 'energy_counter+rapl')
"""

from __future__ import annotations

from collections.abc import Iterable

J_PER_KWH = 3_600_000
G_PER_KG = 1000
ABSENT = "absent"  # a kind no sensor measured, in the ``<kind>_method`` columns


def joules_to_kwh(energy_j: float) -> float:
    """Convert joules to kilowatt-hours."""
    return energy_j / J_PER_KWH


def counter_delta_j(previous_j: float, current_j: float, range_j: float | None) -> tuple[float, str]:
    """Energy between two raw counter values, in J, and what happened to the counter.

    Returns:
        ``(delta_j, event)`` where event is ``""``, ``"wrap"`` or ``"reset"``. A counter with a
        range wraps back to zero past it (RAPL's ``max_energy_range_uj``); one without a range
        only goes down when it was reset (an NVML driver reload), and then the energy since the
        reset, ``current_j``, is the best lower bound: negative energy is never returned.
        The meter's ``classify_counter`` tells a reset from jitter and glitches; this is its plain arithmetic.
    """
    if current_j >= previous_j:
        return current_j - previous_j, ""
    if range_j:
        return current_j + range_j - previous_j, "wrap"
    return current_j, "reset"


def trapezoid_j(p0_w: float, p1_w: float, dt_s: float) -> float:
    """Energy in J between two instantaneous power readings ``dt_s`` apart (trapezoid rule)."""
    return 0.5 * (p0_w + p1_w) * dt_s


def co2_kg(energy_kwh: float, pue: float, g_per_kwh: float) -> float:
    """The CO2e in kg of ``energy_kwh`` of IT energy at facility ``pue`` and intensity ``g_per_kwh`` (g CO2e/kWh)."""
    return energy_kwh * pue * g_per_kwh / G_PER_KG


def effective_g_per_kwh(co2: float, energy_kwh: float, pue: float) -> float | None:
    """The intensity (g CO2e/kWh) that gives ``co2`` kg from ``energy_kwh`` of IT energy at ``pue``; None if no energy.

    Under an hourly series each row has its own intensity; this is their energy-weighted mean.
    """
    facility_kwh = energy_kwh * pue
    return co2 * G_PER_KG / facility_kwh if facility_kwh > 0 else None


def joined(methods: Iterable[str | None]) -> str:
    """Methods ``+``-joined once each in first-seen order (each may itself be ``+``-joined), or :data:`ABSENT`.

    Example:
        >>> joined(["rapl", None, "absent", "tdp_estimate+rapl"])
        'rapl+tdp_estimate'
    """
    seen = dict.fromkeys(m for part in methods if part for m in str(part).split("+") if m and m != ABSENT)
    return "+".join(seen) or ABSENT
