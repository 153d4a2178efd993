"""Carbon intensity: policy (intensity), codecarbon's bundled tables, hourly series, time zones, equivalents.

Importing this package imports none of its modules: :func:`co2_kg`, the one formula the session
needs for every row, is here so that measuring does not load the tables.
"""


def co2_kg(energy_kwh: float, pue: float, g_per_kwh: float) -> float:
    """Return the CO2 in kg of ``energy_kwh`` of IT energy at facility ``pue`` and intensity ``g_per_kwh``."""
    return energy_kwh * pue * g_per_kwh / 1000
