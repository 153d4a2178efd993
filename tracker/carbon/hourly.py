"""Hourly carbon intensity: the ``timestamp,g_per_kwh`` CSV and the series read from it.

Units: intensities in gCO2(e)/kWh, times timezone-aware UTC (naive input is taken as UTC).
"""

from __future__ import annotations

import csv
import math
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tracker.errors import ConfigurationError

HOUR = timedelta(hours=1)


class HourlySeries:
    """Carbon intensity hour by hour: ``values[i]`` (g/kWh) applies to the hour starting ``start_utc + i h``.

    Not changed once made (a plain class, not a named tuple, for the sums it computes once).

    Attributes:
        start_utc: first hour, timezone-aware UTC.
        values: one intensity per consecutive hour, gCO2(e)/kWh.
    """

    __slots__ = ("start_utc", "values", "_sums")

    def __init__(self, start_utc: datetime, values: tuple[float, ...]) -> None:
        self.start_utc, self.values = start_utc, values
        sums = [0.0]
        for value in values:
            sums.append(sums[-1] + value * 3600.0)
        self._sums = tuple(sums)  # g/kWh × s up to each hour boundary

    def __repr__(self) -> str:
        return f"HourlySeries(start_utc={self.start_utc!r}, values={self.values!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HourlySeries):
            return NotImplemented
        return (self.start_utc, self.values) == (other.start_utc, other.values)

    def __hash__(self) -> int:
        return hash((self.start_utc, self.values))

    @property
    def end_utc(self) -> datetime:
        """End of the last hour (exclusive)."""
        return self.start_utc + len(self.values) * HOUR

    def index(self, utc: datetime) -> int:
        """Index of the hour holding ``utc``, clamped to the series (the nearest hour beyond its ends)."""
        return min(max((to_utc(utc) - self.start_utc) // HOUR, 0), len(self.values) - 1)

    def integral(self, utc: datetime) -> float:
        """Integral of the intensity from ``start_utc`` to ``utc`` in g/kWh × s; constant beyond the ends."""
        t = (to_utc(utc) - self.start_utc).total_seconds()
        n = len(self.values)
        if t <= 0:
            return t * self.values[0]
        if t >= n * 3600:
            return self._sums[n] + (t - n * 3600) * self.values[-1]
        k = int(t // 3600)
        return self._sums[k] + (t - k * 3600) * self.values[k]


def to_utc(moment: datetime) -> datetime:
    """Return ``moment`` as timezone-aware UTC; a naive datetime is taken to be UTC already."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _parse_timestamp(text: str, where: str) -> datetime:
    try:
        # Python 3.10's fromisoformat does not accept a trailing "Z".
        stamp = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise ConfigurationError(f"{where}: timestamp {text!r} is not ISO 8601, e.g. 2024-03-01T14:00:00Z") from None
    stamp = to_utc(stamp)
    if stamp.minute or stamp.second or stamp.microsecond:
        raise ConfigurationError(f"{where}: timestamp {text!r} is not on the hour; each row is one whole hour")
    return stamp


def _parse_value(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ConfigurationError(f"{where}: g_per_kwh {text!r} is not a finite number >= 0")
    return value


def _read_rows(path: Path) -> list[tuple[int, datetime, float]]:
    where = f"hourly_csv={str(path)!r}"
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            lines = list(enumerate(csv.reader(f), start=1))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigurationError(f"{where}: cannot read the file: {e}") from e
    lines = [(number, [cell.strip() for cell in cells]) for number, cells in lines if any(c.strip() for c in cells)]
    if not lines or [c.lower() for c in lines[0][1]] != ["timestamp", "g_per_kwh"]:
        got = ",".join(lines[0][1]) if lines else "an empty file"
        number = lines[0][0] if lines else 1
        raise ConfigurationError(f"{where}: line {number} must be the header 'timestamp,g_per_kwh', got {got!r}")
    rows = []
    for number, cells in lines[1:]:
        if len(cells) != 2:
            raise ConfigurationError(f"{where}: line {number}: expected 2 fields (timestamp,g_per_kwh), got {cells}")
        line = f"{where}: line {number}"
        rows.append((number, _parse_timestamp(cells[0], line), _parse_value(cells[1], line)))
    if not rows:
        raise ConfigurationError(f"{where}: no data rows after the header")
    return sorted(rows, key=lambda row: row[1])


def read_hourly_csv(path: str | os.PathLike) -> HourlySeries:
    """Read a ``timestamp,g_per_kwh`` CSV into an :class:`HourlySeries`.

    Timestamps are ISO 8601 on the hour; naive ones are UTC. Rows may come in any order but
    must cover consecutive hours, each exactly once.

    Raises:
        ConfigurationError: the file cannot be read, or a line is malformed (with its number).
    """
    rows = _read_rows(Path(path))
    for (line_a, hour_a, _), (line_b, hour_b, _) in zip(rows, rows[1:], strict=False):
        if hour_b - hour_a != HOUR:
            problem = "give the same hour" if hour_b == hour_a else "leave hours out between"
            raise ConfigurationError(
                f"hourly_csv={str(path)!r}: lines {line_a} and {line_b} {problem} {hour_a:%Y-%m-%dT%H:%MZ} "
                f"and {hour_b:%Y-%m-%dT%H:%MZ}; the rows must be consecutive hours, each once"
            )
    return HourlySeries(rows[0][1], tuple(value for _, _, value in rows))
