"""The tables behind ``tracker.carbon.intensity``: codecarbon's bundled data files and the tz database.

Every table is read on first use (one ``json.load`` or CSV read of its file) and cached per
process; importing this module reads nothing. codecarbon is located with
:func:`importlib.util.find_spec` and its data files are read directly: importing ``codecarbon``
initialises NVML and takes seconds. The lookups
raise :class:`~tracker.errors.ConfigurationError` naming the value and the valid choices.
The tz database is read in :mod:`tracker.carbon.timezones`.

Units: every intensity here is in gCO2(e)/kWh.
"""

import csv
import functools
import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import IO, NamedTuple

from tracker.carbon.timezones import system_timezone, zone_country
from tracker.errors import ConfigurationError

# 1 lb = 0.45359237 kg exactly (international yard and pound agreement, 1959), so 1 lb/MWh = 0.45359237 g/kWh.
G_PER_LB = 0.45359237
REGION_TABLES = "USA (states, EPA eGRID2023), CHN (provinces, MEE 2023), SWE and NOR (bidding zones, ENTSO-E 2025)"


class Figure(NamedTuple):
    """One intensity figure read from a table.

    Attributes:
        g_per_kwh: the intensity in gCO2(e)/kWh.
        source: dataset and year, as it should appear in the log.
        country: ISO 3166-1 alpha-3 code of the place, if known.
        region: sub-national place or cloud region (``"US-CA"``, ``"gcp:europe-west1"``), if any.
    """

    g_per_kwh: float
    source: str
    country: str | None = None
    region: str | None = None


def codecarbon_data_dir() -> Path:
    """Return codecarbon's ``data`` directory without importing codecarbon.

    Raises:
        ConfigurationError: codecarbon is not installed.
    """
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            "looking up a carbon intensity by country, cloud region or time zone needs codecarbon's bundled "
            "data, and codecarbon is not installed: run `pip install codecarbon`, or pass g_per_kwh=... "
            "or hourly_csv=... instead"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _open(relative: str, **kwargs: str) -> IO[str]:
    path = codecarbon_data_dir() / relative
    try:
        return path.open(encoding="utf-8-sig", **kwargs)  # cloud/impact.csv starts with a byte-order mark
    except OSError as e:
        # Older codecarbon releases lack some tables (the 2023 US, China and Nordic files).
        raise ConfigurationError(
            f"codecarbon's data file {path} is missing or unreadable ({e}); this was built against codecarbon "
            "3.3: run `pip install -U codecarbon`, or pass g_per_kwh=... instead"
        ) from e


@functools.cache
def _read_json(relative: str) -> dict:
    """One of codecarbon's JSON tables, parsed once per process."""
    with _open(relative) as f:
        try:
            return json.load(f)
        except ValueError as e:
            raise ConfigurationError(f"codecarbon's data file {relative} is not valid JSON ({e})") from e


def energy_mix() -> dict[str, dict]:
    """The rows of codecarbon's ``global_energy_mix.json`` by alpha-3 code."""
    return _read_json("private_infra/global_energy_mix.json")


def _national(code: str) -> Figure | None:
    """The national figure of an alpha-3 code (upper case), or None if ``global_energy_mix.json`` has no row."""
    row = energy_mix().get(code)
    if row is None:
        return None
    source = f"codecarbon global_energy_mix.json (Our World in Data / Ember), {row['year']}"
    return Figure(float(row["carbon_intensity"]), source, country=code)


def country_names() -> dict[str, str]:
    """Country names from ``global_energy_mix.json``, keyed by alpha-3 code."""
    return {code: row["country_name"] for code, row in energy_mix().items()}


@functools.cache
def world_average() -> Figure:
    """The world-average fallback (475 g/kWh, IEA Global Energy & CO2 Status Report 2019)."""
    table = _read_json("private_infra/carbon_intensity_per_source.json")
    source = f"codecarbon carbon_intensity_per_source.json world_average (IEA 2019: {table['world_average_source']})"
    return Figure(float(table["world_average"]), source)


@functools.cache
def regions(country: str) -> dict[str, Figure]:
    """Sub-national figures for ``country`` (alpha-3), keyed by every accepted lower-case spelling.

    Supported: USA states (EPA eGRID2023, lb/MWh converted to g/kWh), CHN provinces (MEE/NBS 2023),
    SWE and NOR electricity bidding zones (ENTSO-E 2025). Other countries have none.
    """
    loader = {"USA": _us_states, "CHN": _china_provinces, "SWE": _nordic_zones, "NOR": _nordic_zones}.get(country)
    return loader(country) if loader else {}


def _us_states(_: str) -> dict[str, Figure]:
    table = _read_json("private_infra/2023/usa_emissions.json")
    meta = table["_source"]
    source = f"codecarbon usa_emissions.json ({meta['name']}, converted from lb/MWh), {meta['year']}"
    found: dict[str, Figure] = {}
    for name, row in table.items():
        code = row.get("regionCode", "") if isinstance(row, dict) else ""
        if name.startswith("_") or len(code) != 2:
            continue  # "_unit", "_source" and the national "usa" row are not states
        figure = Figure(row["emissions"] * G_PER_LB, source, "USA", f"US-{code}")
        found.update({name: figure, code.lower(): figure, f"us-{code.lower()}": figure})
    return found


def _china_provinces(_: str) -> dict[str, Figure]:
    table = _read_json("private_infra/2023/china_provincial_emissions.json")
    meta = table["metadata"]
    source = f"codecarbon china_provincial_emissions.json (MEE/NBS announcement {meta['announcement']}, CO2 only)"
    found: dict[str, Figure] = {}
    for code, row in table["data"].items():
        figure = Figure(float(row["emission_factor"]), f"{source}, {row['year']}", "CHN", code)
        found.update({code.lower(): figure, code[3:].lower(): figure, row["description"].lower(): figure})
        found.update({name: figure for name in row.get("names", [])})
    return found


def _nordic_zones(country: str) -> dict[str, Figure]:
    table = _read_json("private_infra/nordic_emissions.json")
    prefix = {"SWE": "SE", "NOR": "NO"}[country]
    return {
        code.lower(): Figure(
            float(row["emission_factor"]),
            f"codecarbon nordic_emissions.json (ENTSO-E generation per bidding zone, production-based), {row['year']}",
            country,
            code,
        )
        for code, row in table["data"].items()
        if code.startswith(prefix)
    }


@functools.cache
def cloud_regions() -> dict[str, dict[str, Figure]]:
    """Cloud-region figures from codecarbon's ``cloud/impact.csv``: provider -> region -> figure."""
    with _open("cloud/impact.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    found: dict[str, dict[str, Figure]] = {}
    for row in rows:
        provider, region = row["provider"].lower(), row["region"].lower()
        source = f"codecarbon cloud/impact.csv ({row['providerName']}: {row['source']}; year not stated)"
        figure = Figure(float(row["impact"]), source, row["countryIsoCode"] or None, f"{provider}:{region}")
        found.setdefault(provider, {})[region] = figure
    return found


def alpha2_to_alpha3(code: str) -> str | None:
    """Return the alpha-3 code of an ISO 3166-1 alpha-2 code (any case), or None if there is none (pycountry)."""
    import pycountry  # here: only a two-letter code needs it

    country = pycountry.countries.get(alpha_2=code.upper())
    return country.alpha_3 if country is not None else None


def country_figure(value: object, name: str) -> Figure:
    """Return the national figure for an alpha-3 or alpha-2 code (any case); ``name`` is quoted in errors.

    Raises:
        ConfigurationError: no such country in the table; the message lists close matches.
    """
    figure = _lookup_country(value) if isinstance(value, str) else None
    if figure is None:
        raise ConfigurationError(
            f"{name}={value!r} is not a country in codecarbon's global_energy_mix.json; {_suggest(value)}"
            "write an ISO 3166-1 alpha-3 code (e.g. 'DEU') or alpha-2 code (e.g. 'DE')"
        )
    return figure


def _lookup_country(code: str) -> Figure | None:
    code = code.strip().upper()
    if len(code) == 2:
        code = alpha2_to_alpha3(code) or code
    return _national(code)


def _suggest(value: object) -> str:
    names = country_names()
    keys = {code.lower(): code for code in names} | {name.lower(): code for code, name in names.items()}
    import difflib  # only to suggest close matches for a bad value

    matches = difflib.get_close_matches(str(value).strip().lower(), keys, n=10, cutoff=0.6)
    codes = list(dict.fromkeys(keys[match] for match in matches))[:5]
    return f"did you mean {', '.join(f'{code} ({names[code]})' for code in codes)}? " if codes else ""


def region_figure(country: str, region: object) -> Figure:
    """Return the sub-national figure for ``region`` of ``country`` (alpha-3).

    Raises:
        ConfigurationError: the country has no sub-national table, or no such region (valid ones listed).
    """
    table = regions(country)
    figure = table.get(region.strip().lower()) if isinstance(region, str) else None
    if figure is not None:
        return figure
    valid = sorted({f.region or "" for f in table.values()})
    choices = (
        f"valid regions of {country}: {', '.join(valid)}"
        if valid
        else (f"sub-national figures exist only for {REGION_TABLES}; leave region out for the national figure")
    )
    raise ConfigurationError(f"region={region!r} is not a region of {country} in codecarbon's data; {choices}")


def cloud_figure(provider: object, region: object) -> Figure:
    """Return the figure of a cloud provider's region (both case-insensitive).

    Raises:
        ConfigurationError: one of the two is missing, or unknown (the valid choices listed).
    """
    table = cloud_regions()
    known = ", ".join(sorted(table))
    if provider is None or region is None:
        raise ConfigurationError(
            f"cloud_provider={provider!r}, cloud_region={region!r}: give both, e.g. "
            f"cloud_provider='gcp', cloud_region='europe-west1'; providers: {known}"
        )
    by_region = table.get(str(provider).strip().lower())
    if by_region is None:
        raise ConfigurationError(
            f"cloud_provider={provider!r} is not in codecarbon's cloud/impact.csv; known providers: {known}; "
            "otherwise pass the region's country, e.g. country='USA'"
        )
    figure = by_region.get(str(region).strip().lower())
    if figure is None:
        import difflib

        close = difflib.get_close_matches(str(region).strip().lower(), by_region, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigurationError(
            f"cloud_region={region!r} is not a {provider} region in codecarbon's cloud/impact.csv; {hint}"
            f"known regions: {', '.join(sorted(by_region))}"
        )
    return figure


def timezone_country(environ: Mapping[str, str], timezone_name: str | None) -> tuple[Figure | None, str]:
    """Guess the country from a time zone through ``zone.tab``; return its figure (or None) and an explanation."""
    name, origin = (timezone_name, "timezone_name") if timezone_name else system_timezone(environ)
    alpha2 = zone_country(name or "")
    figure = _lookup_country(alpha2) if alpha2 else None
    if figure is not None:
        return figure, f"time zone {name!r} (from {origin}) is in {alpha2} per the tz database's zone.tab"
    where = f"in {alpha2}, which has no figure" if alpha2 else "in no country per the tz database's zone.tab"
    return None, f"no country given; time zone {name!r} (from {origin}) is {where}"
