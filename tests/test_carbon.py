"""Carbon intensity resolution, hourly series, PUE, CO2 and equivalents (tracker.carbon.intensity)."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker.carbon import tables as carbon_data
from tracker.carbon import timezones
from tracker.carbon.hourly import HourlySeries
from tracker.carbon.intensity import (
    ENV_COUNTRY,
    EQUIVALENTS,
    J_PER_KWH,
    Intensity,
    co2_kg,
    equivalents,
    kwh,
    resolve_intensity,
    validate_g_per_kwh,
    validate_pue,
)
from tracker.errors import ConfigurationError

REPO = Path(__file__).resolve().parents[1]
UTC = timezone.utc
T0 = datetime(2024, 1, 1, tzinfo=UTC)
CACHED = [
    carbon_data._read_json,
    carbon_data.world_average,
    carbon_data.regions,
    carbon_data.cloud_regions,
    timezones.zone_countries,
]


def clear_caches() -> None:
    for function in CACHED:
        function.cache_clear()


def codecarbon_json(relative: str) -> dict:
    root = Path(next(iter(importlib.util.find_spec("codecarbon").submodule_search_locations)))
    return json.loads((root / "data" / "private_infra" / relative).read_text(encoding="utf-8"))


def resolve(**kwargs):
    kwargs.setdefault("environ", {})
    return resolve_intensity(**kwargs)


# --- countries ---------------------------------------------------------------------------------


def test_country_value_is_the_json_figure():
    figure = codecarbon_json("global_energy_mix.json")["DEU"]
    intensity = resolve(country="DEU")
    assert intensity.g_per_kwh == figure["carbon_intensity"]
    assert (intensity.method, intensity.country, intensity.region) == ("argument", "DEU", None)
    assert intensity.source == f"codecarbon global_energy_mix.json (Our World in Data / Ember), {figure['year']}"


@pytest.mark.parametrize("code", ["de", "DE", "deu", " Deu "])
def test_country_alpha2_and_alpha3_any_case(code):
    assert resolve(country=code).country == "DEU"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("Germny", "DEU (Germany)"), ("Germany", "DEU (Germany)"), ("Frnace", "FRA (France)")],
)
def test_unknown_country_lists_close_matches(value, expected):
    with pytest.raises(ConfigurationError, match=r"alpha-3") as info:
        resolve(country=value)
    assert f"country={value!r}" in str(info.value)
    assert expected in str(info.value)


@pytest.mark.parametrize("value", ["XX", "", 276, ["DEU"]])
def test_invalid_country_is_a_configuration_error(value):
    with pytest.raises(ConfigurationError, match="is not a country"):
        resolve(country=value)


# --- resolution order --------------------------------------------------------------------------


def test_argument_beats_environment_and_timezone():
    intensity = resolve(country="FRA", environ={ENV_COUNTRY: "DEU"}, timezone_name="Europe/Berlin")
    assert (intensity.method, intensity.country) == ("argument", "FRA")


def test_environment_beats_timezone():
    intensity = resolve(environ={ENV_COUNTRY: "fr"}, timezone_name="Europe/Berlin")
    assert (intensity.method, intensity.country) == ("environment", "FRA")
    assert intensity.detail == f"{ENV_COUNTRY}='fr'"


def test_timezone_gives_the_country():
    intensity = resolve(timezone_name="Europe/Berlin")
    assert (intensity.method, intensity.country) == ("timezone", "DEU")
    assert intensity.g_per_kwh == codecarbon_json("global_energy_mix.json")["DEU"]["carbon_intensity"]
    assert "Europe/Berlin" in intensity.detail and "zone.tab" in intensity.detail


def test_timezone_without_country_gives_world_average():
    intensity = resolve(timezone_name="Etc/UTC")
    table = codecarbon_json("carbon_intensity_per_source.json")
    assert (intensity.method, intensity.g_per_kwh, intensity.country) == ("world_average", 475.0, None)
    assert intensity.g_per_kwh == table["world_average"]
    assert table["world_average_source"] in intensity.source
    assert "Etc/UTC" in intensity.detail


def test_blank_environment_variable_is_ignored():
    assert resolve(environ={ENV_COUNTRY: "  "}, timezone_name="Europe/Paris").method == "timezone"


def test_bad_environment_variable_names_the_variable():
    with pytest.raises(ConfigurationError, match=f"{ENV_COUNTRY}='Germny'.*DEU \\(Germany\\)"):
        resolve(environ={ENV_COUNTRY: "Germny"})


def test_tz_variable_is_used_when_no_timezone_name():
    intensity = resolve(environ={"TZ": ":Europe/Paris"})
    assert (intensity.method, intensity.country) == ("timezone", "FRA")
    assert "from TZ" in intensity.detail


def test_timezone_link_names_are_followed():
    assert resolve(timezone_name="US/Pacific").country == "USA"


def test_alpha2_codes_are_pycountrys():
    import pycountry

    for country in pycountry.countries:
        assert carbon_data.alpha2_to_alpha3(country.alpha_2.lower()) == country.alpha_3
    assert carbon_data.alpha2_to_alpha3("XX") is None


def test_every_zone_and_link_of_the_tz_database_has_its_country():
    if timezones.tz_text("zone.tab") is None:
        pytest.skip("no tz database (zone.tab) on this machine")
    import zoneinfo

    assert timezones.zone_country("Europe/Berlin") == "DE" and timezones.zone_country("US/Pacific") == "US"
    assert timezones.zone_country("Etc/UTC") is None and timezones.zone_country("Nowhere/Land") is None
    named = set(timezones.zone_countries())
    assert len(named) > 500 and named <= zoneinfo.available_timezones()


def test_a_link_takes_its_targets_country_in_file_order(monkeypatch):
    zones = "# CC\t+0\tC/Three\nAA\t+0\tA/One\nBB\t+0\tB/Two\nDD\t+0\tA/One\n"
    links = "L A/One X/Link\nL X/Link Y/Chain\nL Late/Target W/Early\nL B/Two Late/Target\nL A/One B/Two\n"
    monkeypatch.setattr(timezones, "tz_text", {"zone.tab": zones, "tzdata.zi": links}.get)
    timezones.zone_countries.cache_clear()
    try:
        found = {name: timezones.zone_country(name) for name in ("A/One", "B/Two", "X/Link", "Y/Chain", "W/Early")}
        assert found == {"A/One": "DD", "B/Two": "BB", "X/Link": "DD", "Y/Chain": "DD", "W/Early": None}
    finally:
        monkeypatch.undo()
        timezones.zone_countries.cache_clear()


def test_system_timezone_from_localtime_symlink(tmp_path):
    (tmp_path / "zoneinfo" / "Europe").mkdir(parents=True)
    (tmp_path / "zoneinfo" / "Europe" / "Berlin").write_bytes(b"TZif")
    (tmp_path / "localtime").symlink_to(tmp_path / "zoneinfo" / "Europe" / "Berlin")
    assert carbon_data.system_timezone({}, etc=tmp_path) == ("Europe/Berlin", str(tmp_path / "localtime"))


def test_system_timezone_from_etc_timezone(tmp_path):
    (tmp_path / "timezone").write_text("Europe/Rome\n")
    assert carbon_data.system_timezone({}, etc=tmp_path)[0] == "Europe/Rome"
    assert carbon_data.system_timezone({}, etc=tmp_path / "absent")[0] is None


# --- cloud and sub-national regions ------------------------------------------------------------


def test_cloud_region():
    intensity = resolve(cloud_provider="GCP", cloud_region="europe-west1")
    assert (intensity.g_per_kwh, intensity.method) == (122.0, "cloud_region")
    assert (intensity.country, intensity.region) == ("BEL", "gcp:europe-west1")
    assert intensity.source.startswith("codecarbon cloud/impact.csv (Google Cloud Platform")


def test_unknown_cloud_region_lists_the_providers_regions():
    with pytest.raises(ConfigurationError, match=r"cloud_region='europe-west99'.*europe-west1.*us-west4"):
        resolve(cloud_provider="gcp", cloud_region="europe-west99")


def test_unknown_cloud_provider_lists_providers():
    with pytest.raises(ConfigurationError, match=r"cloud_provider='aws'.*known providers: gcp"):
        resolve(cloud_provider="aws", cloud_region="us-east-1")


def test_cloud_provider_needs_a_region():
    with pytest.raises(ConfigurationError, match="give both"):
        resolve(cloud_provider="gcp")


@pytest.mark.parametrize("region", ["CA", "ca", "US-CA", "California"])
def test_us_state_converted_from_lb_per_mwh(region):
    lb_per_mwh = codecarbon_json("2023/usa_emissions.json")["california"]["emissions"]
    intensity = resolve(country="USA", region=region)
    assert intensity.g_per_kwh == lb_per_mwh * 0.45359237
    assert (intensity.country, intensity.region, intensity.method) == ("USA", "US-CA", "argument")
    assert "eGRID2023" in intensity.source


def test_china_province_and_nordic_zone():
    assert resolve(country="CN", region="Beijing").region == "CN-BJ"
    assert resolve(country="CHN", region="bj").g_per_kwh == 555.4
    zone = codecarbon_json("nordic_emissions.json")["data"]["SE3"]
    intensity = resolve(country="SWE", region="se3")
    assert (intensity.g_per_kwh, intensity.region) == (zone["emission_factor"], "SE3")


def test_unknown_region_lists_valid_regions():
    with pytest.raises(ConfigurationError, match=r"region='Cali'.*US-AK.*US-CA"):
        resolve(country="USA", region="Cali")


def test_region_of_a_country_without_table_says_which_are_supported():
    with pytest.raises(ConfigurationError, match=r"region='BY'.*only for USA"):
        resolve(country="DEU", region="BY")


# --- argument conflicts and explicit values ----------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"g_per_kwh": 300.0, "country": "DEU"},
        {"g_per_kwh": 300.0, "hourly_csv": "x.csv"},
        {"country": "DEU", "cloud_provider": "gcp", "cloud_region": "europe-west1"},
    ],
)
def test_conflicting_arguments(kwargs):
    with pytest.raises(ConfigurationError, match="give one source of carbon intensity"):
        resolve(**kwargs)


def test_region_needs_country():
    with pytest.raises(ConfigurationError, match="region='CA' needs country="):
        resolve(region="CA")


@pytest.mark.parametrize(("region", "country", "code"), [("US-CA", "USA", "US-CA"), ("SE3", "SWE", "SE3")])
def test_region_code_names_its_country(region, country, code):
    intensity = resolve(region=region)
    assert (intensity.country, intensity.region, intensity.method) == (country, code, "argument")


def test_explicit_value():
    intensity = resolve(g_per_kwh=400, environ={ENV_COUNTRY: "DEU"})
    assert (intensity.g_per_kwh, intensity.method, intensity.country) == (400.0, "explicit", None)
    assert type(intensity.g_per_kwh) is float
    assert resolve(g_per_kwh=0.0).g_per_kwh == 0.0


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf, "400", True, [400]])
def test_invalid_explicit_value(value):
    with pytest.raises(ConfigurationError, match=r"g_per_kwh=.*finite number >= 0"):
        validate_g_per_kwh(value)
    with pytest.raises(ConfigurationError):
        resolve(g_per_kwh=value)


# --- hourly CSV --------------------------------------------------------------------------------


def write_csv(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture
def hourly(tmp_path):
    # Rows out of order on purpose: the file need not be sorted.
    csv_path = write_csv(
        tmp_path / "ci.csv",
        """
        timestamp,g_per_kwh
        2024-01-01T01:00:00Z,200
        2024-01-01T00:00:00,100
        2024-01-01T03:00:00+01:00,300
        """,
    )
    return resolve(hourly_csv=csv_path, now=T0 + timedelta(minutes=10))


def test_hourly_values_apply_hour_by_hour(hourly):
    assert (hourly.method, hourly.g_per_kwh, hourly.country) == ("hourly_csv", 200.0, None)
    assert hourly.coverage == (T0, T0 + timedelta(hours=3))
    assert hourly.at(T0 + timedelta(minutes=59, seconds=59)) == 100.0
    assert hourly.at(T0 + timedelta(hours=1)) == 200.0
    assert hourly.at(datetime(2024, 1, 1, 2, 30)) == 300.0  # naive = UTC
    assert hourly.at(datetime(2024, 1, 1, 3, 30, tzinfo=timezone(timedelta(hours=1)))) == 300.0


def test_hourly_interval_spanning_two_hours_is_time_weighted(hourly):
    assert hourly.mean_over(T0 + timedelta(minutes=30), T0 + timedelta(minutes=90)) == 150.0
    assert hourly.mean_over(T0 + timedelta(minutes=45), T0 + timedelta(minutes=75)) == 150.0
    assert hourly.mean_over(T0 + timedelta(minutes=30), T0 + timedelta(minutes=120)) == (100 * 30 + 200 * 60) / 90
    assert hourly.mean_over(T0, T0 + timedelta(hours=3)) == 200.0
    assert hourly.mean_over(T0 + timedelta(minutes=5), T0 + timedelta(minutes=5)) == 100.0
    assert hourly.covers(T0 + timedelta(minutes=30), T0 + timedelta(hours=3))


def test_hourly_beyond_the_series_uses_nearest_hour_and_says_so(hourly):
    late = (T0 + timedelta(hours=2, minutes=30), T0 + timedelta(hours=5))
    assert hourly.mean_over(*late) == 300.0
    assert not hourly.covers(*late)
    assert hourly.at(T0 - timedelta(hours=7)) == 100.0
    assert not hourly.covers(T0 - timedelta(minutes=1), T0 + timedelta(minutes=1))
    assert hourly.mean_over(T0 - timedelta(minutes=30), T0 + timedelta(minutes=30)) == 100.0


def test_interval_ending_before_it_starts(hourly):
    with pytest.raises(ValueError, match="before it starts"):
        hourly.mean_over(T0 + timedelta(hours=1), T0)


def test_constant_intensity_is_its_own_mean():
    intensity = resolve(g_per_kwh=250.0)
    assert intensity.at(T0) == intensity.mean_over(T0, T0 + timedelta(days=3)) == 250.0
    assert intensity.covers(T0, T0 + timedelta(days=3)) and intensity.coverage is None


def test_hourly_must_cover_now(tmp_path):
    path = write_csv(tmp_path / "ci.csv", "timestamp,g_per_kwh\n2024-01-01T00:00Z,100\n2024-01-01T01:00Z,100\n")
    with pytest.raises(ConfigurationError, match=r"covers 2024-01-01 00:00 to 2024-01-01 02:00 UTC.*2024-01-01 02:00"):
        resolve(hourly_csv=path, now=T0 + timedelta(hours=2))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"line 1 must be the header 'timestamp,g_per_kwh', got 'an empty file'"),
        ("time,value\n2024-01-01T00:00Z,1\n", r"line 1 must be the header.*got 'time,value'"),
        ("timestamp,g_per_kwh\n", "no data rows"),
        ("timestamp,g_per_kwh\n2024-01-01T00:00Z,100\nyesterday,100\n", r"line 3: timestamp 'yesterday' is not ISO"),
        ("timestamp,g_per_kwh\n2024-01-01T00:00Z,-5\n", r"line 2: g_per_kwh '-5' is not a finite number >= 0"),
        ("timestamp,g_per_kwh\n2024-01-01T00:00Z,lots\n", r"line 2: g_per_kwh 'lots'"),
        ("timestamp,g_per_kwh\n2024-01-01T00:00Z,nan\n", r"line 2: g_per_kwh 'nan'"),
        ("timestamp,g_per_kwh\n2024-01-01T00:30Z,100\n", r"line 2: .* not on the hour"),
        ("timestamp,g_per_kwh\n2024-01-01T00:00Z,100,7\n", r"line 2: expected 2 fields"),
        (
            "timestamp,g_per_kwh\n2024-01-01T00:00Z,1\n2024-01-01T02:00Z,1\n",
            r"lines 2 and 3 leave hours out between 2024-01-01T00:00Z and 2024-01-01T02:00Z",
        ),
        (
            "timestamp,g_per_kwh\n2024-01-01T00:00Z,1\n2024-01-01T01:00+01:00,1\n",
            r"lines 2 and 3 give the same hour 2024-01-01T00:00Z",
        ),
    ],
)
def test_malformed_hourly_csv(tmp_path, text, message):
    path = write_csv(tmp_path / "bad.csv", text)
    with pytest.raises(ConfigurationError, match=message) as info:
        resolve(hourly_csv=path, now=T0)
    assert str(path) in str(info.value)


def test_missing_hourly_csv(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot read the file"):
        resolve(hourly_csv=tmp_path / "absent.csv", now=T0)


@given(
    values=st.lists(st.floats(0, 2000), min_size=1, max_size=48),
    a=st.integers(-7200, 200_000),
    b=st.integers(0, 200_000),
    c=st.integers(0, 200_000),
)
def test_mean_over_is_additive_and_bounded(values, a, b, c):
    series = HourlySeries(T0, tuple(values))
    start, mid, end = (T0 + timedelta(seconds=a + x) for x in (0, b, b + c))
    intensity = Intensity(1.0, "hourly_csv", "test", series=series)
    whole = intensity.mean_over(start, end)
    assert min(values) - 1e-9 <= whole <= max(values) + 1e-9
    if b and c:
        parts = intensity.mean_over(start, mid) * b + intensity.mean_over(mid, end) * c
        assert whole * (b + c) == pytest.approx(parts, rel=1e-9, abs=1e-6)


def test_intensity_is_a_record_whose_repr_leaves_the_series_out():
    series = HourlySeries(T0, (100.0, 200.0))
    intensity = Intensity(150.0, "hourly_csv", "test", series=series)
    assert intensity._replace(series=None) == Intensity(150.0, "hourly_csv", "test")
    assert intensity.series == HourlySeries(T0, (100.0, 200.0)) and intensity.coverage == (T0, T0 + timedelta(hours=2))
    assert (
        repr(intensity)
        == "Intensity(g_per_kwh=150.0, method='hourly_csv', source='test', country=None, region=None, detail='')"
    )


# --- PUE, CO2, units, equivalents --------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [(1, 1.0), (1.0, 1.0), (1.58, 1.58)])
def test_valid_pue(value, expected):
    assert validate_pue(value) == expected and type(validate_pue(value)) is float


@pytest.mark.parametrize("value", [0.9, 0, -1, math.nan, math.inf, "1.2", True, None])
def test_invalid_pue(value):
    with pytest.raises(ConfigurationError, match=r"PUE is facility energy / IT energy.*1\.58.*Uptime Institute 2023"):
        validate_pue(value)


def test_pue_message_quotes_the_value():
    with pytest.raises(ConfigurationError, match=r"^pue=0\.9: "):
        validate_pue(0.9)


def test_co2_and_units():
    assert J_PER_KWH == 3_600_000 and isinstance(J_PER_KWH, int)
    assert kwh(3_600_000) == 1.0
    assert kwh(1_800_000) == 0.5
    assert co2_kg(2.0, 1.0, 500.0) == 1.0
    assert co2_kg(energy_kwh=10.0, pue=1.5, g_per_kwh=400.0) == 6.0
    assert co2_kg(0.0, 1.58, 475.0) == 0.0


def test_equivalents():
    found = {e.unit: e for e in equivalents(co2_kg=2.15, energy_kwh=1.2)}
    assert found["km"].amount == pytest.approx(20.0)
    assert (found["km"].factor, found["km"].factor_unit) == (107.5, "gCO2/km")
    assert found["passenger-km"].amount == pytest.approx(2150 / 171)
    assert found["charges"].amount == pytest.approx(100.0)
    assert all(e.source and any(str(y) in e.source for y in range(2018, 2026)) for e in found.values())
    assert [e.name for e in equivalents(0.0, 0.0)] == [f.name for f in EQUIVALENTS]


# --- no network, cheap import, codecarbon absent -----------------------------------------------

_NETWORK_EVENTS = ("socket.", "urllib.", "http.", "ftplib.", "smtplib.")
_audit = {"active": False, "events": []}


def _audit_hook(event, args):
    if _audit["active"] and event.startswith(_NETWORK_EVENTS):
        _audit["events"].append(event)


sys.addaudithook(_audit_hook)


def test_resolving_touches_no_network(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network touched")

    import socket

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    path = write_csv(tmp_path / "ci.csv", "timestamp,g_per_kwh\n2024-01-01T00:00Z,100\n")
    clear_caches()  # so every table is read inside the guard
    _audit["active"], _audit["events"] = True, []
    try:
        resolve(country="de")
        resolve(country="USA", region="CA")
        resolve(cloud_provider="gcp", cloud_region="europe-west1")
        resolve(timezone_name="Europe/Berlin")
        resolve(timezone_name="Etc/UTC")
        resolve(environ={ENV_COUNTRY: "FRA"})
        resolve(hourly_csv=path, now=T0)
        with pytest.raises(ConfigurationError):
            resolve(country="Germny")
    finally:
        _audit["active"] = False
    assert _audit["events"] == []


def test_import_is_cheap_and_never_imports_codecarbon():
    script = textwrap.dedent(
        """
        import sys
        opened = []
        sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == "open" else None)
        import tracker.carbon.intensity
        data = [p for p in opened if not p.endswith((".py", ".pyc")) and "__pycache__" not in p]
        assert not data, f"files read at import: {data}"
        assert "codecarbon" not in sys.modules
        tracker.carbon.intensity.resolve_intensity(country="DEU", environ={})
        tracker.carbon.intensity.resolve_intensity(cloud_provider="gcp", cloud_region="us-west1", environ={})
        assert "codecarbon" not in sys.modules, "codecarbon was imported"
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.fixture
def without_codecarbon(monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "codecarbon" else real(name, *args, **kwargs)

    clear_caches()
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    yield
    monkeypatch.undo()
    clear_caches()


@pytest.mark.parametrize(
    "kwargs",
    [{"country": "DEU"}, {"cloud_provider": "gcp", "cloud_region": "europe-west1"}, {"timezone_name": "Etc/UTC"}],
)
def test_lookups_without_codecarbon_say_how_to_install_it(without_codecarbon, kwargs):
    with pytest.raises(ConfigurationError, match=r"pip install codecarbon.*g_per_kwh="):
        resolve(**kwargs)


def test_explicit_and_hourly_work_without_codecarbon(without_codecarbon, tmp_path):
    assert resolve(g_per_kwh=300.0).g_per_kwh == 300.0
    with open(tmp_path / "ci.csv", "w", newline="") as f:
        csv.writer(f).writerows([["timestamp", "g_per_kwh"], ["2024-01-01T00:00:00", "120.5"]])
    assert resolve(hourly_csv=tmp_path / "ci.csv", now=T0).g_per_kwh == 120.5


def test_missing_codecarbon_file_is_a_configuration_error(tmp_path, monkeypatch):
    clear_caches()
    monkeypatch.setattr(carbon_data, "codecarbon_data_dir", lambda: tmp_path)
    try:
        with pytest.raises(ConfigurationError, match=r"global_energy_mix.json is missing.*pip install -U codecarbon"):
            resolve(country="DEU")
    finally:
        monkeypatch.undo()
        clear_caches()
