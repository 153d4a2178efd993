"""The one formatting rule for every number a person reads: auto-scaled SI units, three significant figures.

Used by the summary, the report's text and markdown, the paper paragraph, the plot and the progress
bar; the CSV and JSON files keep the fixed units of their column names (kWh, kg, s, W). Also the
lines they are read in: :func:`wrap` (a label's long value under itself, at :data:`WIDTH`) and
:func:`html_table` (Jupyter). A leaf module (no imports from the package), so every layer can use it.

Example:
    >>> energy(0.00245432), co2(0.0000301), duration(39000.0), power(1234.0)
    ('2.45 Wh', '30.1 mg', '10.8 h', '1.23 kW')
    >>> energy_band(0.00123, 0.00491)
    '1.23–4.91 Wh'
"""

from __future__ import annotations

import math
import re

DIGITS = 3
WIDTH = 110  # the widest line of the summary and the report's facts, characters: a wider one wraps in a terminal
# (factor to the base unit, symbol), smallest first; the largest whose factor fits the value is used.
ENERGY_KWH = ((1e-6, "mWh"), (1e-3, "Wh"), (1.0, "kWh"), (1e3, "MWh"), (1e6, "GWh"))
MASS_KG = ((1e-6, "mg"), (1e-3, "g"), (1.0, "kg"), (1e3, "t"))
POWER_W = ((1e-3, "mW"), (1.0, "W"), (1e3, "kW"), (1e6, "MW"))
VOLUME_L = ((1e-3, "mL"), (1.0, "L"), (1e3, "m³"))
DURATION_S = ((1e-3, "ms"), (1.0, "s"), (60.0, "min"), (3600.0, "h"), (86400.0, "days"))
UNKNOWN = "unknown"


def significant(value: float, digits: int = DIGITS) -> str:
    """``value`` to ``digits`` significant figures in fixed notation (``0.000123``, ``1230``, ``12.0``)."""
    if not math.isfinite(value):
        return UNKNOWN
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    rounded = round(value, digits - 1 - magnitude)
    magnitude = math.floor(math.log10(abs(rounded))) if rounded else magnitude  # 9.996 rounds up to 10.0
    return f"{rounded:.{max(0, digits - 1 - magnitude)}f}"


def _scale(value: float, scales: tuple[tuple[float, str], ...]) -> tuple[float, str]:
    chosen = scales[0]
    for factor, symbol in scales:
        # Compare the rounded figure, so 999.7 Wh reads 1.00 kWh rather than "1000 Wh".
        if abs(value) >= factor * (1 - 0.5 * 10.0**-DIGITS):
            chosen = (factor, symbol)
    return value / chosen[0], chosen[1]


def scaled(value: float | None, scales: tuple[tuple[float, str], ...]) -> str:
    """``value`` (in the base unit of ``scales``) in the unit that reads best, e.g. ``12.3 g``."""
    if value is None or not math.isfinite(value):
        return UNKNOWN
    if value == 0:
        return f"0 {next(s for f, s in scales if f == 1.0)}"
    number, symbol = _scale(value, scales)
    return f"{significant(number)} {symbol}"


def energy(kwh: float | None) -> str:
    """An energy given in kWh: ``mWh``, ``Wh``, ``kWh``, ``MWh`` or ``GWh``."""
    return scaled(kwh, ENERGY_KWH)


def co2(kg: float | None) -> str:
    """A mass of CO2e given in kg: ``mg``, ``g``, ``kg`` or ``t`` (write "CO2e" beside it)."""
    return scaled(kg, MASS_KG)


def water(litres: float | None) -> str:
    """A volume of water given in L: ``mL``, ``L`` or ``m³``."""
    return scaled(litres, VOLUME_L)


def water_band(low_l: float | None, high_l: float | None) -> str:
    """A water band given in L, e.g. ``1.20–2.70 L``."""
    return band(low_l, high_l, VOLUME_L)


def power(w: float | None) -> str:
    """A power given in W: ``mW``, ``W``, ``kW`` or ``MW``."""
    return scaled(w, POWER_W)


def duration(s: float | None) -> str:
    """A duration given in s: ``ms``, ``s``, ``min``, ``h`` or ``days``."""
    return scaled(s, DURATION_S)


def band(low: float | None, high: float | None, scales: tuple[tuple[float, str], ...]) -> str:
    """``low–high unit``, both in the unit of ``high`` (``1.23–4.91 Wh``), so the pair reads at a glance."""
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return UNKNOWN
    _, symbol = _scale(high, scales) if high else (1.0, next(s for f, s in scales if f == 1.0))
    factor = next(f for f, s in scales if s == symbol)
    return f"{significant(low / factor)}–{significant(high / factor)} {symbol}"


def energy_band(low_kwh: float | None, high_kwh: float | None) -> str:
    """An energy band given in kWh, e.g. ``1.23–4.91 Wh``."""
    return band(low_kwh, high_kwh, ENERGY_KWH)


def co2_band(low_kg: float | None, high_kg: float | None) -> str:
    """A CO2e band given in kg, e.g. ``12.1–13.0 g``."""
    return band(low_kg, high_kg, MASS_KG)


def published_band(low_kg: float | None, high_kg: float | None) -> str:
    """A CO2e band from a source's own range, or ``no published range`` where it gives none (low = high)."""
    return "no published range" if low_kg == high_kg else co2_band(low_kg, high_kg)


def unit_of(value: float, scales: tuple[tuple[float, str], ...]) -> tuple[float, str]:
    """The factor and symbol :func:`scaled` would use for ``value`` (for plot axes sharing one unit)."""
    number, symbol = _scale(value, scales) if value else (value, next(s for f, s in scales if f == 1.0))
    return next(f for f, s in scales if s == symbol), symbol


def number(value: float | None) -> str:
    """A plain number (a metric, a ratio) to three significant figures; ``unknown`` when missing."""
    if value is None:
        return UNKNOWN
    return significant(float(value))


def node_beside(node_kwh: float | None, unexplained_kwh: float | None, share: float | None, method: str) -> str | None:
    """The node's own meter beside the components, said as such; ``None`` without a meter or a figure yet.

    ``1.20 kWh whole node [acpi_power_meter], not added; 312 Wh (26.0 %) more than the components``
    (the paper's words).
    """
    if not method or node_kwh is None:
        return None
    line = f"{energy(node_kwh)} whole node [{method}], not added"
    if unexplained_kwh is None:
        return line
    percent = f" ({significant(100 * abs(share))} %)" if share is not None else ""
    if unexplained_kwh < 0:  # an estimated component erring high, or the meter's own error
        return f"{line}; the components exceed it by {energy(-unexplained_kwh)}{percent}"
    return f"{line}; {energy(unexplained_kwh)}{percent} more than the components"


__all__ = [
    "DURATION_S",
    "ENERGY_KWH",
    "MASS_KG",
    "POWER_W",
    "band",
    "co2",
    "co2_band",
    "duration",
    "energy",
    "energy_band",
    "node_beside",
    "number",
    "power",
    "scaled",
    "significant",
    "unit_of",
    "wrap",
]


def html_table(title: str, rows: list[tuple[str, str]]) -> str:
    """A compact two-column HTML table (what Jupyter shows for a summary or a run), text escaped."""
    from html import escape

    cells = "".join(f"<tr><th style='text-align:left'>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f"<table><caption style='text-align:left'><b>{escape(title)}</b></caption>{cells}</table>"


# A number and its unit (``12.3 g``, ``57.5 %``) stay on one line.
_NUMBER_UNIT = re.compile(r"(?<=\d) (?=(?:[mkMG]?Wh|[mkMG]?W|mg|g|kg|t|mL|L|m³|ms|s|min|h|days|%)(?!\w))")


def wrap(line: str, indent: int, width: int = WIDTH) -> str:
    """``line`` broken at spaces into lines of at most ``width`` characters, each after the first ``indent`` spaces in.

    For a label and its value (``  boundary          counts ...``): the value goes on under itself. A
    number is never parted from its unit.
    """
    if len(line) <= width or " " not in line[indent:]:  # one word (a path) is not moved off its label's line
        return line
    import textwrap

    kept = _NUMBER_UNIT.sub("\xa0", line)
    lines = textwrap.wrap(kept, width, subsequent_indent=" " * indent, break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines).replace("\xa0", " ")
