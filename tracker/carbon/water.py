"""Operational water: the water a run's electricity consumed, on site (cooling) and off site (generation).

Li, Yang, Islam & Ren, "Making AI Less 'Thirsty'" (arXiv 2304.03271; Communications of the ACM 2025)
account a workload's operational water as

    water (L) = E_IT (kWh) × WUE_onsite (L/kWh) + E_IT (kWh) × PUE × EWIF_offsite (L/kWh)

where ``E_IT`` is the servers' energy (the rows' ``energy_kwh``), ``WUE_onsite`` the facility's water
usage effectiveness (water evaporated for cooling per kWh of IT energy), and ``EWIF_offsite`` the
water the grid's generation consumes per kWh delivered, applied to the facility's whole draw (PUE).
Both are **consumption** (water evaporated or otherwise not returned), not withdrawal.

A term is counted only where a figure for it exists: the on-site WUE is the user's
(``wue_l_per_kwh``) or a cloud provider's published figure from the bundled table; the off-site figure
is the user's (``grid_water_l_per_kwh``) or the grid country's from the bundled table
(``data/water.csv``, every row with its source). A term with no figure is not counted and the run says
so (:attr:`Water.notes`); no figure is ever guessed. The table is read once, the first time a run
asks for water; importing this module reads nothing.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import tracker.units as units
from tracker.errors import ConfigurationError

ONSITE, OFFSITE = "onsite", "offsite"
WORDS = {ONSITE: "on-site", OFFSITE: "off-site"}  # each term as people read it, wherever it is shown
TABLE = "water.csv"
# Plausible bounds, L/kWh: the highest on-site WUE published for evaporative cooling is a few L/kWh, 20
# leaves room; the bundled off-site figures reach ~600 L/kWh where reservoir evaporation is counted.
MAX_WUE_L_PER_KWH = 20.0
MAX_GRID_WATER_L_PER_KWH = 1000.0


class Figure(NamedTuple):
    """One water intensity, L/kWh, with its band and where it comes from.

    Attributes:
        l_per_kwh: the figure; low, high: its band (equal to it when the source gives none).
        source: the full citation (a table row's, or ``"<option>=<value> (given by the user)"``).
        cite: its short form for a row (``Chini & Peer 2021, USA 2018``, ``wue_l_per_kwh given``).
    """

    l_per_kwh: float
    low: float
    high: float
    source: str
    cite: str


class Litres(NamedTuple):
    """Water consumed, L: the total and its band, then each term; ``None`` where not counted.

    In the order of the rows' columns (``tracker.logs.schema.WATER``).
    """

    total: float | None = None
    low: float | None = None
    high: float | None = None
    onsite: float | None = None
    offsite: float | None = None


class Water(NamedTuple):
    """The water terms a run counts (see the module's formula).

    Attributes:
        onsite: the on-site WUE, or ``None`` when it is not counted.
        offsite: the grid's water intensity, or ``None`` when it is not counted.
        notes: why a term is not counted (empty when both are).
    """

    onsite: Figure | None
    offsite: Figure | None
    notes: tuple[str, ...] = ()

    @property
    def counted(self) -> bool:
        """Whether any term has a figure (else the rows' water columns stay empty)."""
        return self.onsite is not None or self.offsite is not None

    def litres(self, energy_kwh: float, low_kwh: float, high_kwh: float, pue: float) -> Litres:
        """The water of ``energy_kwh`` of IT energy (its band from ``low_kwh``/``high_kwh``), L.

        The band joins the energy's band with each figure's: low energy at the low figures, high at the high.
        """
        if not self.counted:
            return Litres()
        on, off = self.onsite, self.offsite

        def total(kwh: float, pick: int) -> float:
            return kwh * ((on[pick] if on else 0.0) + pue * (off[pick] if off else 0.0))

        onsite = energy_kwh * on.l_per_kwh if on else None
        offsite = energy_kwh * pue * off.l_per_kwh if off else None
        return Litres(total(energy_kwh, 0), total(low_kwh, 1), total(high_kwh, 2), onsite, offsite)

    def source(self) -> str:
        """Each counted term's figure and short source, ``;``-joined (the rows' ``water_source``)."""
        parts = [f"{WORDS[term]} {f.l_per_kwh:g} L/kWh ({f.cite})" for term, f in ((ONSITE, self.onsite),
                 (OFFSITE, self.offsite)) if f is not None]  # fmt: skip
        return "; ".join(parts)

    def described(self) -> str:
        """Each counted term's figure and short source, then why a term is not counted, ``;``-joined."""
        return "; ".join(filter(None, [self.source(), *self.notes]))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: each term's figure, band and source (``None`` when not counted), and the notes."""
        return {
            ONSITE: self.onsite._asdict() if self.onsite else None,
            OFFSITE: self.offsite._asdict() if self.offsite else None,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> Water:
        """The terms :meth:`as_dict` gave (``run.json``'s ``water``).

        Raises:
            TypeError, KeyError, ValueError: ``saved`` is not such a dict.
        """

        def term(name: str) -> Figure | None:
            value = saved.get(name)
            return None if value is None else Figure(**value)

        return cls(term(ONSITE), term(OFFSITE), tuple(str(n) for n in saved.get("notes") or ()))


def text(litres: Litres, described: str) -> str:
    """What a person reads: ``1.05 L (0.889–1.23 L; on-site 150 mL, off-site 896 mL) [<terms and sources>]``.

    Args:
        litres: the water of a row or a total, L.
        described: :meth:`Water.described` of the terms.
    """
    if litres.total is None:
        return f"not counted [{described}]"
    terms = ", ".join(f"{WORDS[name]} {'not counted' if value is None else units.water(value)}"
                      for name, value in ((ONSITE, litres.onsite), (OFFSITE, litres.offsite)))  # fmt: skip
    return f"{units.water(litres.total)} ({units.water_band(litres.low, litres.high)}; {terms}) [{described}]"


def _litres_per_kwh(value: Any, name: str, high: float, example: str) -> float | None:
    if value is None:
        return None
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or not 0 <= number <= high:
        raise ConfigurationError(f"{name}={value!r}: give litres per kWh as a number from 0 to {high:g} ({example}), "
                                 "or None to leave it out")  # fmt: skip
    return float(number)


def check_wue(value: Any, name: str) -> float | str | None:
    """The on-site WUE option: L/kWh, a published figure's place in the table (``"aws:eu-west-1"``), or ``None``.

    A number is the facility's WUE (0 for a machine cooled by air alone); a place is returned lower-case.

    Raises:
        ConfigurationError: not a finite number from 0 to ``MAX_WUE_L_PER_KWH`` nor a place the table has a
            published WUE for; the message says what to write.
    """
    if isinstance(value, str):
        published = sorted(place for term, place in table() if term == ONSITE)
        if value.strip().lower() in published:
            return value.strip().lower()
        close = difflib.get_close_matches(value.strip().lower(), published, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigurationError(
            f"{name}={value!r} has no published WUE in the bundled table; {hint}give one of "
            f"{', '.join(published)}, or the facility's WUE in L/kWh (e.g. {name}=0.5)"
        )
    example = f"e.g. {name}=0.5 from the facility's reported WUE, {name}=0 for a room cooled without water"
    return _litres_per_kwh(value, name, MAX_WUE_L_PER_KWH, example)


def check_grid_water(value: Any, name: str) -> float | None:
    """The off-site water intensity option, L/kWh of electricity delivered, or ``None``.

    Raises:
        ConfigurationError: not a finite number from 0 to ``MAX_GRID_WATER_L_PER_KWH``.
    """
    example = f"e.g. {name}=2.5 from your utility's or a study's consumption figure"
    return _litres_per_kwh(value, name, MAX_GRID_WATER_L_PER_KWH, example)


@functools.cache
def table() -> dict[tuple[str, str], Figure]:
    """The bundled table, ``(term, place) -> Figure``: read once per process, on first use."""
    import csv  # here: only a run that counts water reads the table
    import os.path  # not importlib.resources, which costs ~10 ms of imports in a bare interpreter

    with open(os.path.join(os.path.dirname(__file__), "data", TABLE), encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    figures = {}
    for row in rows:
        band = (float(row["l_per_kwh"]), float(row["low_l_per_kwh"]), float(row["high_l_per_kwh"]))
        figures[(row["term"], row["place"])] = Figure(*band, row["source"], row["cite"])
    return figures


def resolve_water(
    *,
    wue: float | None,
    grid_water: float | None,
    country: str | None,
    cloud: str | None = None,
) -> Water:
    """The terms a run counts: the options given, else the bundled table's figures where it has one.

    Args:
        wue: ``wue_l_per_kwh`` (checked): a figure, a published figure's place in the table, or ``None``.
        grid_water: ``grid_water_l_per_kwh`` (checked), or ``None``.
        country: the grid's ISO 3166-1 alpha-3 code (the carbon intensity's), or ``None`` when unknown.
        cloud: ``"<provider>:<region>"`` when the run gave a cloud region, else ``None``.
    """
    notes = []
    onsite = table()[(ONSITE, wue)] if isinstance(wue, str) else _given(wue, "wue_l_per_kwh")
    if onsite is None:
        onsite = table().get((ONSITE, cloud or "")) if cloud else None
        if onsite is None:
            why = f"no published WUE for {cloud} in the bundled table" if cloud else "no WUE known"
            notes.append(f"{WORDS[ONSITE]} cooling water not counted ({why}: give wue_l_per_kwh)")
    offsite = _given(grid_water, "grid_water_l_per_kwh")
    if offsite is None:
        offsite = table().get((OFFSITE, country)) if country else None
        if offsite is None:
            why = (
                f"no sourced figure for {country} in the bundled table" if country else "the grid's country is unknown"
            )
            notes.append(f"{WORDS[OFFSITE]} generation water not counted ({why}: give grid_water_l_per_kwh)")
    return Water(onsite, offsite, tuple(notes))


def _given(value: float | None, name: str) -> Figure | None:
    return (
        None if value is None else Figure(value, value, value, f"{name}={value:g} (given by the user)", f"{name} given")
    )
