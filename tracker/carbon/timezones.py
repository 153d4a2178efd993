"""The system time zone and the country of a time zone, from the tz database; no network, no import-time work.

Used by :mod:`tracker.carbon.tables` to guess the country of a run when none is given. ``zone.tab`` is
read from the system database or, failing that, the ``tzdata`` package, as :mod:`zoneinfo` searches.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

__all__ = ["system_timezone", "zone_country"]


def _tz_path() -> tuple[str, ...]:
    """The directories :mod:`zoneinfo` searches (its ``TZPATH``), found without importing it (~4 ms).

    As ``zoneinfo._tzpath.reset_tzpath`` computes it: ``PYTHONTZPATH``, else the build's ``TZPATH``,
    relative entries left out; once :mod:`zoneinfo` is imported, its own (the user may have reset it).
    """
    zoneinfo = sys.modules.get("zoneinfo")
    if zoneinfo is not None:
        return tuple(zoneinfo.TZPATH)
    setting = os.environ.get("PYTHONTZPATH")
    if setting is None:
        import sysconfig  # here: only a guess from the time zone needs it

        setting = sysconfig.get_config_var("TZPATH")
    return tuple(filter(os.path.isabs, setting.split(os.pathsep))) if setting else ()


@functools.lru_cache(maxsize=4)
def tz_text(name: str) -> str | None:
    """The text of a file of the tz database (``zone.tab``, ``tzdata.zi``), read once per process; None if absent.

    From the system database or, failing that, the ``tzdata`` package: the search order of :mod:`zoneinfo`.
    """
    for root in _tz_path():
        if (Path(root) / name).is_file():
            return (Path(root) / name).read_text(encoding="utf-8")
    spec = importlib.util.find_spec("tzdata")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "zoneinfo" / name
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return None


def zone_country(name: str) -> str | None:
    """The alpha-2 country code of the time zone ``name`` per the tz database's ``zone.tab``, links followed.

    ``zone.tab`` names canonical zones only; ``tzdata.zi``'s ``L target link`` lines add the links
    (US/Pacific, GB). Only the lines that mention ``name`` (and its link targets) are looked at.
    """
    zones = tz_text("zone.tab")
    return None if zones is None else country_in(zones, tz_text("tzdata.zi") or "", name)


def country_in(zones: str, links: str, name: str) -> str | None:
    """The country of ``name`` by the text of ``zone.tab`` and of ``tzdata.zi`` (see :func:`zone_country`)."""
    if not name:
        return None
    found = _zone_tab_country(zones, name)
    return found if found is not None else _link_country(zones, links, name, len(links))


def _zone_tab_country(zones: str, name: str) -> str | None:
    # The last line of zone.tab whose third tab-separated field is the name (a later line wins, as in a dict).
    found = None
    for _, line in _lines_with(zones, name, len(zones)):
        fields = line.split("\t")
        if not line.startswith("#") and len(fields) >= 3 and fields[2] == name:
            found = fields[0]
    return found


def _link_country(zones: str, links: str, name: str, before: int) -> str | None:
    """The country of the first ``L target name`` line before offset ``before`` whose target has one by then.

    A link to a link counts only when the target's own line comes earlier in the file.
    """
    for start, line in _lines_with(links, name, before):
        fields = line.split()
        if len(fields) == 3 and fields[0] == "L" and fields[2] == name:
            country = _zone_tab_country(zones, fields[1])
            country = country if country is not None else _link_country(zones, links, fields[1], start)
            if country is not None:
                return country
    return None


def _lines_with(text: str, needle: str, before: int) -> Iterator[tuple[int, str]]:
    """``(offset, line)`` for the lines (as ``str.splitlines`` cuts them) of ``text[:before]`` holding ``needle``."""
    end, found = -1, text.find(needle, 0, before)
    while found >= 0:
        if found > end:  # not in the piece just given
            start = text.rfind("\n", 0, found) + 1
            end = text.find("\n", found)
            end = len(text) if end < 0 else end
            for line in text[start:end].splitlines(keepends=True):
                if needle in line:
                    yield start, line.rstrip("\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029")
                start += len(line)
        found = text.find(needle, found + 1, before)


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
