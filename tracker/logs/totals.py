"""A run's totals: the one model of them, built from its ``epochs.csv`` records.

The session adds each record as it writes it (the ``cumulative_*`` and ``forecast_*`` columns,
the summary), a resumed run sums its directory's rows, and the report sums the rows it reads back
and the runs of an experiment: every total is the sum of the records, whichever way they came.
The session's ``Summary`` and the report's ``RunSummary`` and ``Experiment`` are views over a
:class:`Totals`: each figure (a sum, the epochs, the energy per epoch, the effective intensity) is
computed here once.
"""

import math
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from tracker.energy import effective_g_per_kwh
from tracker.logs.schema import COMPLETE, EMBODIED, INFERENCE, TRAIN, WATER

# The record columns a total is the sum of, in s, kWh and kg CO2e.
SUMMED = (
    "duration_s",
    "gpu_kwh",
    "cpu_kwh",
    "ram_kwh",
    "energy_kwh",
    "energy_kwh_low",
    "energy_kwh_high",
    "co2_kg",
    "co2_kg_low",
    "co2_kg_high",
)
# The node's own meter (kWh) and the components' energy of the rows it read, which it is compared with.
NODE = ("node_kwh", "node_components_kwh")
# The embodied (kg CO2e), water (L) and node meter (kWh) figures are summed over the rows that have them:
# ``None`` when no row does (not asked for, no figure, no meter), never a 0 that would read as "none".
OPTIONAL = (*EMBODIED, *WATER, *NODE)
# What a run's summary reports from its totals: the epochs finished and the sums but the duration
# (a summary's duration is the run's measured time, which counts the seconds of open rows too).
FIGURES = ("epochs", *SUMMED[1:], *OPTIONAL)


class Totals(NamedTuple):
    """The sums of a run's records.

    Attributes:
        duration_s: seconds attributed to the rows, s.
        gpu_kwh, cpu_kwh, ram_kwh, energy_kwh: IT energy by component and in all, kWh (before PUE).
        energy_kwh_low, energy_kwh_high: the band of ``energy_kwh``, kWh.
        co2_kg, co2_kg_low, co2_kg_high: emissions and their band, kg CO2e.
        epochs: training epochs finished (``train`` rows with status ``complete``).
        training_kwh: the energy of every row but ``inference`` ones, kWh (for the break-even).
        embodied_co2_kg, embodied_co2_kg_low, embodied_co2_kg_high: embodied emissions (manufacturing,
            amortised) and their band, kg CO2e, apart from ``co2_kg``; ``None`` when no row counted them.
        water_l, water_l_low, water_l_high, water_onsite_l, water_offsite_l: operational water and its
            band, and each term, L; ``None`` when no row counted it.
        node_kwh: the whole machine's energy by its own meter, kWh, over the rows that have one; never
            part of ``energy_kwh`` (it holds the components); ``None`` without a meter.
        node_components_kwh: ``energy_kwh`` of those same rows, kWh: what ``node_kwh`` is compared with.
    """

    duration_s: float = 0.0
    gpu_kwh: float = 0.0
    cpu_kwh: float = 0.0
    ram_kwh: float = 0.0
    energy_kwh: float = 0.0
    energy_kwh_low: float = 0.0
    energy_kwh_high: float = 0.0
    co2_kg: float = 0.0
    co2_kg_low: float = 0.0
    co2_kg_high: float = 0.0
    epochs: int = 0
    training_kwh: float = 0.0
    embodied_co2_kg: float | None = None
    embodied_co2_kg_low: float | None = None
    embodied_co2_kg_high: float | None = None
    water_l: float | None = None
    water_l_low: float | None = None
    water_l_high: float | None = None
    water_onsite_l: float | None = None
    water_offsite_l: float | None = None
    node_kwh: float | None = None
    node_components_kwh: float | None = None

    def plus(self, record: Mapping[str, Any]) -> "Totals":
        """These totals with one more record (an ``epochs.csv`` row as a mapping)."""
        added = {name: getattr(self, name) + _number(record, name) for name in SUMMED}
        return self._replace(
            **added,
            **{name: _optional_sum([getattr(self, name), _optional(record, name)]) for name in OPTIONAL},
            epochs=self.epochs + _finished_epoch(record),
            training_kwh=self.training_kwh
            + (0.0 if record.get("phase") == INFERENCE else _number(record, "energy_kwh")),
        )

    @classmethod
    def of(cls, records: Iterable[Mapping[str, Any]]) -> "Totals":
        """The totals of ``records``, each column summed exactly (``math.fsum``)."""
        rows = list(records)
        sums = {name: math.fsum(_number(r, name) for r in rows) for name in SUMMED}
        training = math.fsum(_number(r, "energy_kwh") for r in rows if r.get("phase") != INFERENCE)
        optional = {name: _optional_sum([_optional(r, name) for r in rows]) for name in OPTIONAL}
        return cls(**sums, **optional, epochs=sum(_finished_epoch(r) for r in rows), training_kwh=training)

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> "Totals":
        """The totals :meth:`as_dict` gave.

        Raises:
            TypeError, ValueError: ``saved`` is not such a dict.
        """
        names = set(cls._fields)
        unknown = set(saved) - names
        if unknown or not names - set(OPTIONAL) <= set(saved):  # a state saved before embodied or water has none
            raise ValueError(f"the fields of Totals are {sorted(names)}, not {sorted(saved)}")
        number = {name: float(saved[name]) for name in names - {"epochs", *OPTIONAL}}
        optional = {name: _optional_sum([saved.get(name)]) for name in OPTIONAL}
        return cls(**number, **optional, epochs=int(saved["epochs"]))

    @classmethod
    def combined(cls, parts: Iterable["Totals"]) -> "Totals":
        """The totals of several runs (an experiment): each field summed exactly (``math.fsum``)."""
        parts = list(parts)
        summed = [name for name in cls._fields if name not in ("epochs", *OPTIONAL)]
        sums = {name: math.fsum(getattr(p, name) for p in parts) for name in summed}
        optional = {name: _optional_sum([getattr(p, name) for p in parts]) for name in OPTIONAL}
        return cls(**sums, **optional, epochs=sum(p.epochs for p in parts))

    @property
    def kwh_per_epoch(self) -> float | None:
        """All the energy per finished training epoch, kWh (``None`` without a finished epoch)."""
        return self.energy_kwh / self.epochs if self.epochs else None

    def g_per_kwh(self, pue: float) -> float | None:
        """The intensity the CO2e was costed at, g CO2e/kWh, at ``pue`` (hourly: the energy-weighted mean)."""
        return effective_g_per_kwh(self.co2_kg, self.energy_kwh, pue)

    def figures(self) -> dict[str, float]:
        """The figures a run's summary reports (:data:`FIGURES`), by name."""
        return {name: getattr(self, name) for name in FIGURES}

    def as_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready."""
        return self._asdict()

    def sums(self) -> dict[str, float]:
        """The summed columns alone (:data:`SUMMED`), by name."""
        return {name: getattr(self, name) for name in SUMMED}

    def embodied(self) -> dict[str, float | None]:
        """The embodied columns' sums, kg CO2e, by name (``None`` where no record counted them)."""
        return {name: getattr(self, name) for name in EMBODIED}

    def water(self) -> dict[str, float | None]:
        """The water columns' sums, L, by name (``None`` where no record counted the term)."""
        return {name: getattr(self, name) for name in WATER}

    @property
    def unexplained_kwh(self) -> float | None:
        """What the node's meter read beyond the components of the same rows, kWh; ``None`` without a meter.

        Fans, disks, network, the power supplies' losses, and any component measured by an estimate
        that errs low; negative when the components' figures exceed the meter's.
        """
        if self.node_kwh is None:
            return None
        return self.node_kwh - (self.node_components_kwh or 0.0)

    @property
    def unexplained_share(self) -> float | None:
        """:attr:`unexplained_kwh` as a share of ``node_kwh``, 0 to 1; ``None`` without a meter reading."""
        unexplained = self.unexplained_kwh
        return unexplained / self.node_kwh if unexplained is not None and self.node_kwh else None


def _number(record: Mapping[str, Any], column: str) -> float:
    return float(record.get(column) or 0.0)


def _optional_sum(values: Iterable[Any]) -> float | None:
    """The exact sum of the values that are numbers (``""`` and ``None`` are not), or ``None`` when none is."""
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return math.fsum(numbers) if numbers else None


def _optional(record: Mapping[str, Any], name: str) -> Any:
    """A record's optional figure; ``node_components_kwh`` is its ``energy_kwh`` where its ``node_kwh`` is a number."""
    if name != "node_components_kwh":
        return record.get(name)
    return record.get("energy_kwh") if isinstance(record.get("node_kwh"), (int, float)) else None


def _finished_epoch(record: Mapping[str, Any]) -> int:
    return int(record.get("phase") == TRAIN and record.get("status") == COMPLETE)
