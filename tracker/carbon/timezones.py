"""The system time zone and the country of a time zone, from the tz database; no network, no import-time work.

Used by :mod:`tracker.carbon.tables` to guess the country of a run when none is given. ``zone.tab`` is
read from the system database or, failing that, the ``tzdata`` package, as :mod:`zoneinfo` searches.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["system_timezone", "zone_countries"]


def _tz_file(name: str) -> Path | None:
    # The search order of the standard library's zoneinfo: the system database, then the tzdata package.
    import zoneinfo  # here: only a guess from the time zone needs it, and its import is slow

    for root in zoneinfo.TZPATH:
        if (Path(root) / name).is_file():
            return Path(root) / name
    spec = importlib.util.find_spec("tzdata")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "zoneinfo" / name
        if path.is_file():
            return path
    return None


@functools.cache
def zone_countries() -> dict[str, str]:
    """Time zone name -> alpha-2 country code, from the tz database's ``zone.tab``, links followed."""
    path = _tz_file("zone.tab")
    if path is None:
        return {}
    table: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        if not line.startswith("#") and len(fields) >= 3:
            table[fields[2]] = fields[0]
    # zone.tab names canonical zones only; tzdata.zi's "L target link" lines add the links (US/Pacific, GB).
    links = _tz_file("tzdata.zi")
    for line in links.read_text(encoding="utf-8").splitlines() if links else ():
        fields = line.split()
        if len(fields) == 3 and fields[0] == "L" and fields[1] in table:
            table.setdefault(fields[2], table[fields[1]])
    return table


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
