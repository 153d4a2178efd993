"""Everyday equivalents of an amount of CO2 or energy, for the report: each printed with its factor and source.

Re-exported from :mod:`tracker.carbon.intensity`.

Example:
    >>> [round(e.amount, 1) for e in equivalents(co2_kg=1.075, energy_kwh=1.2)]
    [100.0, 10.0, 6.3]
"""

from typing import NamedTuple

from tracker.energy import G_PER_KG

__all__ = ["EQUIVALENTS", "Equivalent", "EquivalentFactor", "equivalents"]


class EquivalentFactor(NamedTuple):
    """A conversion factor for the report, with its source.

    Attributes:
        name: what the amount counts, e.g. ``"driving a new car (EU fleet average)"``.
        unit: unit of the converted amount, e.g. ``"km"``.
        factor: emissions or energy per unit.
        factor_unit: unit of ``factor``, e.g. ``"gCO2/km"`` or ``"kWh/charge"``.
        basis: ``"co2"`` when ``factor`` is grams of CO2 per unit, ``"energy"`` when it is kWh per unit.
        source: publication and year of the factor.
    """

    name: str
    unit: str
    factor: float
    factor_unit: str
    basis: str
    source: str


class Equivalent(NamedTuple):
    """An amount of CO2 or energy restated as an everyday quantity (rhetoric: print the factor beside it)."""

    name: str
    amount: float
    unit: str
    factor: float
    factor_unit: str
    source: str


# Factors from docs/measurement.md §6; energy-based first, since energy is the location-independent quantity.
EQUIVALENTS: tuple[EquivalentFactor, ...] = (
    EquivalentFactor(
        "smartphone charges",
        "charges",
        0.012,
        "kWh/charge",
        "energy",
        "Luccioni, Jernite, Strubell, Power Hungry Processing, FAccT 2024 (arXiv:2311.16863)",
    ),
    EquivalentFactor(
        "driving a new car (EU fleet average)",
        "km",
        107.5,
        "gCO2/km",
        "co2",
        "EEA, CO2 performance of new passenger cars in Europe, 2020 fleet (carbontracker co2eq.csv)",
    ),
    EquivalentFactor(
        "flying economy class",
        "passenger-km",
        171.0,
        "gCO2e/passenger-km",
        "co2",
        "UK BEIS greenhouse gas conversion factors 2020, via Green Algorithms v2.2",
    ),
)


def equivalents(co2_kg: float, energy_kwh: float) -> list[Equivalent]:
    """Restate ``co2_kg`` (kg CO2e) and ``energy_kwh`` (kWh) with every factor in :data:`EQUIVALENTS`."""
    found = []
    for f in EQUIVALENTS:
        amount = energy_kwh / f.factor if f.basis == "energy" else co2_kg * G_PER_KG / f.factor
        found.append(Equivalent(f.name, amount, f.unit, f.factor, f.factor_unit, f.source))
    return found
