"""The system time zone and the country of a time zone, from the tz database; no network, no import-time work.

Used by :mod:`tracker.carbon.tables` to guess the country of a run when none is given. The tz
database's ``zone.tab`` (zone -> ISO 3166 alpha-2 code) and the links of ``tzdata.zi`` are read
where :mod:`zoneinfo` reads zones: a directory of its ``TZPATH``, else the ``tzdata`` package.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["system_timezone", "zone_country"]


def zone_country(name: str) -> str | None:
    """The alpha-2 country code of the time zone ``name`` per the tz database's ``zone.tab``, links followed."""
    return zone_countries().get(name)


@functools.cache
def zone_countries() -> dict[str, str]:
    """Every zone of ``zone.tab`` and link of ``tzdata.zi`` (US/Pacific, GB) by alpha-2 code; read once per process.

    A link counts when its target has a country by then, in file order; empty without a tz database.
    """
    countries = {}
    for line in (tz_text("zone.tab") or "").splitlines():
        fields = line.split("\t")
        if not line.startswith("#") and len(fields) >= 3:
            countries[fields[2]] = fields[0]
    for line in (tz_text("tzdata.zi") or "").splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0] == "L" and fields[1] in countries:
            countries.setdefault(fields[2], countries[fields[1]])
    return countries


def tz_text(name: str) -> str | None:
    """The text of a file of the tz database (``zone.tab``, ``tzdata.zi``), or None if there is none.

    Searched as :mod:`zoneinfo` searches for zones: each directory of ``zoneinfo.TZPATH``, then the
    ``tzdata`` package's resources.
    """
    import zoneinfo

    for root in zoneinfo.TZPATH:
        if (Path(root) / name).is_file():
            return (Path(root) / name).read_text(encoding="utf-8")
    from importlib import resources

    try:
        return resources.files("tzdata.zoneinfo").joinpath(name).read_text(encoding="utf-8")
    except (ImportError, OSError):
        return None


def system_timezone(environ: Mapping[str, str], etc: Path = Path("/etc")) -> tuple[str | None, str]:
    """Return the system's time zone name and where it was found.

    Looks at ``TZ``, then the target of ``/etc/localtime``, then ``/etc/timezone``.
    """
    tz = environ.get("TZ", "").lstrip(":")
    if tz:
        return _zone_name(tz), "TZ"
    localtime = etc / "localtime"
    if localtime.is_symlink():
        # One level only: the zone file itself may be a link (Europe/Amsterdam -> Brussels since tzdata 2022b).
        return _zone_name(os.readlink(localtime)), str(localtime)
    try:
        return (etc / "timezone").read_text(encoding="utf-8").strip() or None, str(etc / "timezone")
    except OSError:
        return None, "no TZ, /etc/localtime or /etc/timezone"


def _zone_name(value: str) -> str:
    # A path such as /usr/share/zoneinfo/Europe/Berlin (or .../zoneinfo/posix/Europe/Berlin) names the zone.
    name = value.rsplit("zoneinfo/", 1)[-1]
    return name.split("/", 1)[1] if name.startswith(("posix/", "right/")) else name
