"""Carbon intensity, PUE, CO2 and reporting equivalents.

CO2 = IT energy (kWh) × PUE × carbon intensity (g/kWh) / 1000, in kg. The intensity comes,
in this order, from an explicit ``g_per_kwh`` or hourly CSV, a cloud provider and region,
the ``country`` argument, the ``ENERGY_TRACKER_COUNTRY`` environment variable, the country
of the system time zone, or the world average; the :class:`Intensity` returned says which
(``method``), from which dataset and year (``source``), and why (``detail``).

Figures are read from codecarbon's bundled data files (see :mod:`tracker.carbon.tables`);
nothing here opens a network connection, and importing this module reads no file. The
equivalents are defined in :mod:`tracker.carbon.equivalents` and re-exported here, imported on
first use (only the report needs them).

Example:
    >>> intensity = resolve_intensity(country="DE", environ={})
    >>> intensity.method, intensity.country
    ('argument', 'DEU')
    >>> co2_kg(energy_kwh=2.0, pue=1.0, g_per_kwh=500.0)
    1.0
"""

import math
import numbers
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import NamedTuple

from tracker.carbon import tables as carbon_data
from tracker.carbon.hourly import HourlySeries, read_hourly_csv, to_utc
from tracker.energy import J_PER_KWH, co2_kg
from tracker.energy import joules_to_kwh as kwh
from tracker.errors import ConfigurationError

_EQUIVALENTS = ("EQUIVALENTS", "Equivalent", "EquivalentFactor", "equivalents")
__all__ = [
    "ENV_COUNTRY",
    "J_PER_KWH",
    "HourlySeries",
    "Intensity",
    "co2_kg",
    "kwh",
    "resolve_intensity",
    "validate_g_per_kwh",
    "validate_pue",
    *_EQUIVALENTS,
]


def __getattr__(name: str) -> object:
    # PEP 562: the equivalents' module is imported when the report first asks for one of its names.
    if name in _EQUIVALENTS:
        from tracker.carbon import equivalents as module

        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


ENV_COUNTRY = "ENERGY_TRACKER_COUNTRY"
REGION_PREFIXES = {"US": "USA", "CN": "CHN", "SE": "SWE", "NO": "NOR"}
METHODS = ("explicit", "hourly_csv", "cloud_region", "argument", "environment", "timezone", "world_average")


def _real(value: object) -> float | None:
    # bool is an int subclass, but pue=True is a mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        return None
    return float(value)


# Plausible magnitudes. The least efficient data centres surveyed report a PUE of about 2.5 (Uptime
# Institute 2023); the most carbon-intensive grids (lignite, oil) about 1,100 gCO2e/kWh (Ember 2024).
MAX_PUE = 3.0
MAX_G_PER_KWH = 2000.0


def validate_pue(pue: object) -> float:
    """Return ``pue`` as a float after checking it is a real number from 1.0 to ``MAX_PUE`` (3.0).

    Raises:
        ConfigurationError: it is not a finite real number, or it is outside 1.0 to 3.0.
    """
    value = _real(pue)
    if value is None or not 1.0 <= value <= MAX_PUE:
        raise ConfigurationError(
            f"pue={pue!r}: PUE is facility energy / IT energy, so it is a number >= 1.0, and at most {MAX_PUE:g} "
            f"(plausible: 1.0 to {MAX_PUE:g}; the least efficient data centres report ~2.5); use 1.0 for a "
            "workstation, ~1.1 for hyperscale clouds, 1.58 for the industry average (Uptime Institute 2023)"
        )
    return value


def validate_g_per_kwh(g_per_kwh: object) -> float:
    """Return ``g_per_kwh`` (gCO2e/kWh) as a float after checking it is from 0 to ``MAX_G_PER_KWH`` (2,000).

    Raises:
        ConfigurationError: it is negative, above 2,000, NaN, infinite, a bool or not a number.
    """
    value = _real(g_per_kwh)
    if value is None or not 0 <= value <= MAX_G_PER_KWH:
        raise ConfigurationError(
            f"g_per_kwh={g_per_kwh!r}: the carbon intensity must be a finite number >= 0 and at most "
            f"{MAX_G_PER_KWH:,.0f} gCO2e/kWh (plausible: 0 to 2,000; the most carbon-intensive grids are ~1,100), "
            "e.g. g_per_kwh=380.95; or pass country='DEU' to use a country's annual figure"
        )
    return value


class Intensity(NamedTuple):
    """A carbon intensity and how it was chosen; built by :func:`resolve_intensity`.

    Attributes:
        g_per_kwh: the annual or explicit figure in gCO2(e)/kWh, or the mean of the hourly series.
        method: how it was chosen, one of ``METHODS``.
        source: dataset and year, e.g. ``"codecarbon global_energy_mix.json (Our World in Data / Ember), 2023"``.
        country: ISO 3166-1 alpha-3 code, or None when unknown.
        region: sub-national place (ISO 3166-2 such as ``"US-CA"``, or a bidding zone ``"SE3"``) or
            cloud region (``"gcp:europe-west1"``), else None.
        detail: why this figure: the argument, variable or time zone it came from.
        series: the hourly intensities for method ``"hourly_csv"``, else None.

    Times passed to the methods are UTC; naive datetimes are taken as UTC.
    """

    g_per_kwh: float
    method: str
    source: str
    country: str | None = None
    region: str | None = None
    detail: str = ""
    series: HourlySeries | None = None

    def __repr__(self) -> str:
        # The series is left out: a year of hours would fill a log line.
        shown = ", ".join(f"{name}={value!r}" for name, value in zip(self._fields[:-1], self, strict=False))
        return f"Intensity({shown})"

    @property
    def coverage(self) -> tuple[datetime, datetime] | None:
        """The UTC span ``(start, end)`` of the hourly series (end exclusive), or None for a constant."""
        return None if self.series is None else (self.series.start_utc, self.series.end_utc)

    def at(self, utc: datetime) -> float:
        """Intensity in g/kWh for energy used at ``utc``; beyond the series, the nearest hour's value."""
        if self.series is None:
            return self.g_per_kwh
        return self.series.values[self.series.index(utc)]

    def mean_over(self, start_utc: datetime, end_utc: datetime) -> float:
        """Time-weighted mean intensity in g/kWh over ``[start_utc, end_utc]``.

        Each hour's value weighs by the part of the interval inside that hour, which is exact
        when power is steady over the interval. Beyond the series the nearest hour's value is
        used; :meth:`covers` says whether that happened.

        Raises:
            ValueError: ``end_utc`` is before ``start_utc``.
        """
        start, end = to_utc(start_utc), to_utc(end_utc)
        if end < start:
            raise ValueError(f"interval ends ({end}) before it starts ({start})")
        if self.series is None or end == start:
            return self.at(start)
        return (self.series.integral(end) - self.series.integral(start)) / (end - start).total_seconds()

    def covers(self, start_utc: datetime, end_utc: datetime) -> bool:
        """Whether the interval lies inside the series, so :meth:`mean_over` extrapolated nothing."""
        if self.series is None:
            return True
        return self.series.start_utc <= to_utc(start_utc) and to_utc(end_utc) <= self.series.end_utc


def resolve_intensity(
    *,
    country: str | None = None,
    region: str | None = None,
    cloud_provider: str | None = None,
    cloud_region: str | None = None,
    g_per_kwh: float | None = None,
    hourly_csv: str | os.PathLike | None = None,
    environ: Mapping[str, str] = os.environ,
    timezone_name: str | None = None,
    now: datetime | None = None,
) -> Intensity:
    """Choose the carbon intensity for a run, without any network access.

    Args:
        country: ISO 3166-1 alpha-3 or alpha-2 code, any case (``"DEU"``, ``"de"``).
        region: with ``country``, a sub-national place: a US state (``"CA"``, ``"California"``),
            a Chinese province (``"BJ"``, ``"Beijing"``), a Swedish or Norwegian bidding zone (``"SE3"``).
        cloud_provider: with ``cloud_region``, a provider in codecarbon's ``cloud/impact.csv`` (``"gcp"``).
        cloud_region: the provider's region name (``"europe-west1"``).
        g_per_kwh: an explicit intensity in gCO2e/kWh.
        hourly_csv: path of a ``timestamp,g_per_kwh`` CSV, one row per hour; it must cover ``now``.
        environ: where ``ENERGY_TRACKER_COUNTRY`` and ``TZ`` are read.
        timezone_name: the system time zone to guess the country from; default: ``TZ``, then
            ``/etc/localtime``, then ``/etc/timezone``.
        now: the current time, for the coverage check of ``hourly_csv``; default: the clock.

    Returns:
        The intensity with its method, source and detail.

    Raises:
        ConfigurationError: conflicting or invalid arguments, an unknown country, region or cloud
            region (with the valid choices), an unusable hourly CSV, or codecarbon not installed
            when a table lookup is needed.
    """
    _check_exclusive(country, region, cloud_provider, cloud_region, g_per_kwh, hourly_csv)
    if region is not None and country is None:
        country = _country_of_region(region)
    if g_per_kwh is not None:
        return Intensity(validate_g_per_kwh(g_per_kwh), "explicit", "given by the user", detail="g_per_kwh argument")
    if hourly_csv is not None:
        return _from_hourly_csv(hourly_csv, now or datetime.now(timezone.utc))
    if cloud_provider is not None or cloud_region is not None:
        figure = carbon_data.cloud_figure(cloud_provider, cloud_region)
        return _intensity(figure, "cloud_region", f"cloud_provider={cloud_provider!r}, cloud_region={cloud_region!r}")
    return _from_place(country, region, environ, timezone_name)


def _from_place(country: str | None, region: str | None, environ: Mapping[str, str], tz: str | None) -> Intensity:
    # The grid's country: given, else ENERGY_TRACKER_COUNTRY, else the time zone's.
    if country is not None:
        return _from_country(country, region, "argument", "country")
    setting = environ.get(ENV_COUNTRY, "").strip()
    if setting:
        return _from_country(setting, None, "environment", ENV_COUNTRY)
    return _from_timezone(environ, tz)


def _check_exclusive(*values: object) -> None:
    names = ("country", "region", "cloud_provider", "cloud_region", "g_per_kwh", "hourly_csv")
    given = {name: value for name, value in zip(names, values, strict=True) if value is not None}
    groups = [("country", "region"), ("cloud_provider", "cloud_region"), ("g_per_kwh",), ("hourly_csv",)]
    used = [group for group in groups if any(name in given for name in group)]
    if len(used) > 1:
        quoted = ", ".join(f"{name}={value!r}" for name, value in given.items())
        raise ConfigurationError(
            f"{quoted}: give one source of carbon intensity: g_per_kwh=, hourly_csv=, "
            "cloud_provider= with cloud_region=, or country= (with an optional region=)"
        )


def _country_of_region(region: object) -> str | None:
    # "US-CA" and "CN-BJ" are ISO 3166-2 codes, whose first part is the country; "SE3" and "NO1" are
    # bidding zones that only exist in one country. Only these countries have sub-national tables.
    text = region.strip().upper() if isinstance(region, str) else ""
    prefix = text.split("-", 1)[0] if "-" in text else text[:2] if text[:2] in ("SE", "NO") else ""
    country = REGION_PREFIXES.get(prefix)
    if country is None:
        raise ConfigurationError(
            f"region={region!r} needs country=, e.g. country='USA', region='CA'; or give an ISO 3166-2 code "
            "such as region='US-CA', whose country is its first part"
        )
    return country


def _from_hourly_csv(path: str | os.PathLike, now: datetime) -> Intensity:
    series = read_hourly_csv(path)
    if not series.start_utc <= to_utc(now) < series.end_utc:
        raise ConfigurationError(
            f"hourly_csv={str(path)!r} covers {series.start_utc:%Y-%m-%d %H:%M} to {series.end_utc:%Y-%m-%d %H:%M} "
            f"UTC, which does not include now ({to_utc(now):%Y-%m-%d %H:%M} UTC); add rows up to the end of the run"
        )
    span = f"{series.start_utc:%Y-%m-%dT%H:%MZ} to {series.end_utc:%Y-%m-%dT%H:%MZ}"
    mean = math.fsum(series.values) / len(series.values)
    source = f"hourly CSV {os.fspath(path)} ({len(series.values)} hours, {span})"
    return Intensity(mean, "hourly_csv", source, detail="hourly_csv argument", series=series)


def _intensity(figure: carbon_data.Figure, method: str, detail: str) -> Intensity:
    return Intensity(figure.g_per_kwh, method, figure.source, figure.country, figure.region, detail)


def _from_country(value: object, region: object, method: str, name: str) -> Intensity:
    figure = carbon_data.country_figure(value, name)
    if region is None:
        return _intensity(figure, method, f"{name}={value!r}")
    sub = carbon_data.region_figure(figure.country or "", region)
    return _intensity(sub, method, f"{name}={value!r}, region={region!r}")


def _from_timezone(environ: Mapping[str, str], timezone_name: str | None) -> Intensity:
    figure, detail = carbon_data.timezone_country(environ, timezone_name)
    if figure is not None:
        return _intensity(figure, "timezone", detail)
    return _intensity(carbon_data.world_average(), "world_average", detail)
