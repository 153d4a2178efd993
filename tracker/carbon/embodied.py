"""Embodied emissions: the manufacturing footprint of a GPU model and of a host, amortised over a run's hours.

The footprints are a bundled table, ``data/embodied.csv``, one row per GPU model (matched by a regular
expression against the model name the driver reports, ``NVIDIA H100 80GB HBM3``) and one for the host
(CPUs, memory, storage, chassis of a GPU server), each with its band, the lifetime and utilisation its
source assumes, what kind of source it is and the source itself (the document and where in it).
A model the table does not name has no footprint: its embodied share is absent, never a guess.

The table is read once, on first use (never at import). The amortisation is the one BLOOM's account
uses (Luccioni et al. 2023, Section 4.1): a footprint spread evenly over the hours the hardware is in
use in its life, ``kg × hours / (lifetime_years × 8760 × utilisation)``.

Units: kg CO2e, hours, years (of 8760 hours), utilisation 0 to 1.
"""

import functools
import os.path
import re
from collections.abc import Iterable
from typing import NamedTuple

import tracker.units as units

GPU, HOST = "gpu", "host"
HOURS_PER_YEAR = 8760.0  # 365 days: BLOOM's 0.056 kg/h for 2500 kg over 6 years at 85 % follows from it
TABLE = "embodied.csv"
NOT_IN_TABLE = "not in the table, not counted"  # ends the note of a row whose GPU model has no footprint


class Footprint(NamedTuple):
    """One row of the embodied table.

    Attributes:
        kind: ``gpu`` or ``host``.
        match: the regular expression a GPU's model name is matched against (``re.search``).
        kg_co2e: the manufacturing footprint, kg CO2e; ``kg_co2e_low``/``_high`` its band (the source's
            own range; the figure itself where the source states none).
        lifetime_years, utilisation: the lifetime and utilisation the source assumes, ``None`` if none.
        source_kind: ``vendor PCF`` or ``peer-reviewed estimate``.
        source: the citation, its URL and where in it the figure is.
    """

    kind: str
    match: str
    kg_co2e: float
    kg_co2e_low: float
    kg_co2e_high: float
    lifetime_years: float | None
    utilisation: float | None
    source_kind: str
    source: str

    @property
    def short_source(self) -> str:
        """The citation without its URL and page, for a note or a sentence."""
        return self.source.split(", http", 1)[0]


class Embodied(NamedTuple):
    """An amortised share of a footprint, kg CO2e, with its band."""

    kg: float
    low: float
    high: float

    def __add__(self, other: "Embodied") -> "Embodied":  # type: ignore[override]
        return Embodied(self.kg + other.kg, self.low + other.low, self.high + other.high)

    def scaled(self, factor: float) -> "Embodied":
        """The same share times ``factor``."""
        return Embodied(self.kg * factor, self.low * factor, self.high * factor)


def _optional(text: str) -> float | None:
    return float(text) if text.strip() else None


@functools.cache
def table() -> tuple[Footprint, ...]:
    """The bundled footprints, in the file's order (the first match wins), read once per process."""
    import csv  # here: only a run that counts embodied emissions reads the table

    with open(os.path.join(os.path.dirname(__file__), "data", TABLE), encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    return tuple(
        Footprint(
            kind=row["kind"],
            match=row["match"],
            kg_co2e=float(row["kg_co2e"]),
            kg_co2e_low=float(row["kg_co2e_low"]),
            kg_co2e_high=float(row["kg_co2e_high"]),
            lifetime_years=_optional(row["lifetime_years"]),
            utilisation=_optional(row["utilisation"]),
            source_kind=row["source_kind"],
            source=row["source"],
        )
        for row in rows
    )


@functools.cache
def footprint(kind: str, model: str = "") -> Footprint | None:
    """The first row of ``kind`` whose pattern matches ``model``; ``None`` when the table has none."""
    return next((row for row in table() if row.kind == kind and re.search(row.match, model)), None)


def amortised(row: Footprint, hours: float, lifetime_years: float, utilisation: float) -> Embodied:
    """``row``'s share for ``hours`` of use: ``kg × hours / (lifetime_years × 8760 × utilisation)``, kg CO2e."""
    factor = hours / (lifetime_years * HOURS_PER_YEAR * utilisation)
    return Embodied(row.kg_co2e, row.kg_co2e_low, row.kg_co2e_high).scaled(factor)


def sources_for(devices: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The citations of the rows that ``(kind, model)`` devices take their footprint from (CPU or RAM: the host's)."""
    devices = list(devices)
    rows = [footprint(GPU, model) for kind, model in devices if kind == GPU]
    if any(kind in ("cpu", "ram") for kind, _ in devices):
        rows.append(footprint(HOST))
    return tuple(dict.fromkeys(row.short_source for row in rows if row is not None))


def sources() -> tuple[str, ...]:
    """The table's distinct citations, in order (for the paper's sentence and the docs)."""
    return tuple(dict.fromkeys(row.short_source for row in table()))


def text(kg: float | None, low: float | None, high: float | None, left_out: bool = False) -> str:
    """What a person reads, the same in the summary and the report (kg CO2e in, scaled units out).

    ``3.48 g, estimated (no published range): making the GPUs and host, amortised; not in the CO2e``, and
    ``; GPUs not in the table not counted`` when ``left_out`` (a GPU model without a footprint).
    """
    band = units.published_band(low, high)
    left = "; GPUs not in the table not counted" if left_out else ""
    return f"{units.co2(kg)}, estimated ({band}): making the GPUs and host, amortised; not in the CO2e{left}"
