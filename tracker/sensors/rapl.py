"""CPU package and DRAM energy from the Linux powercap sysfs (RAPL), Intel and AMD.

The kernel exposes each RAPL domain as a zone (``Documentation/ABI/testing/sysfs-class-powercap``):
``intel-rapl:N`` is package N (``name`` = ``package-N`` or ``package-N-die-D``), with subzones
``intel-rapl:N:M`` named ``core``, ``uncore`` or ``dram``; Skylake and newer clients add a
top-level ``psys`` zone, and newer Intel parts duplicate the packages as ``intel-rapl-mmio:N``.
AMD Zen exposes its packages through the same ``intel-rapl`` driver (Linux 5.8 for Zen 2,
5.11 for Zen 3), without dram.

Domains nest (package ⊇ core + uncore, psys ⊇ package), so only package zones and ``dram``
subzones are measured; summing them counts nothing twice.

``energy_uj`` is a cumulative counter in µJ that wraps at ``max_energy_range_uj``; the meter
handles the wrap from :attr:`~tracker.sensors.Reading.counter_range_j`. Since Linux 5.10
(mainline 949dd0104c49, backported to 5.4.77) ``energy_uj`` is readable by root only, because
its fine-grained readings leak secrets (PLATYPUS, CVE-2020-8694).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracker.errors import SensorError, SensorPermissionError
from tracker.sensors import CPU, RAM, Absent, Reading
from tracker.sensors._sysfs import class_root, read_int
from tracker.sensors.methods import RAPL, RAPL_DRAM

__all__ = ["DEFAULT_ROOT", "RaplSensor", "find_rapl"]

DEFAULT_ROOT = Path("/sys/class/powercap")

# ``intel-rapl:N`` only: subzones (``intel-rapl:N:M``) are found inside their package, and the
# ``intel-rapl-mmio:N`` zones repeat the packages' energy through another interface.
_PACKAGE_ZONE = r"intel-rapl:(\d+)"  # a pattern string: re compiles it on first use, not at import

PERMISSION_HINT = (
    "energy_uj is readable by root only since Linux 5.10 (CVE-2020-8694); to measure instead of "
    "estimating, let this user read it: sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj "
    "/sys/class/powercap/intel-rapl:*:*/energy_uj (until reboot; a systemd-tmpfiles 'z' line with "
    "mode 0444 keeps it)"
)
_FALLBACK = {CPU: "meanwhile the CPU is estimated from its TDP", RAM: "meanwhile RAM power is modelled"}
# More than any one RAPL zone draws (the largest server packages are rated 500 W): the counter cannot
# wrap faster than range / MAX_ZONE_W, so a zone read at least that often wraps at most once between
# two reads, and a wrap is told from a delta without ambiguity.
MAX_ZONE_W = 1000.0

log = logging.getLogger(__name__)


class RaplSensor:
    """One RAPL zone: a CPU package (method ``rapl``) or its DRAM (method ``rapl_dram``).

    Built by :func:`find_rapl`. Each :meth:`read` returns the raw counter: ``energy_j`` is
    ``energy_uj / 1e6`` in J and ``counter_range_j`` is ``max_energy_range_uj / 1e6`` in J (the
    kernel's modulus is one energy unit, about 61 µJ, more: a negligible error per wrap).
    At 300 W a typical Intel range (262 kJ) wraps in about 15 minutes, an AMD one (65 kJ) in
    about 4: two wraps between reads look like none. So the zone declares ``max_interval_s``, half
    the time its counter takes to wrap at ``MAX_ZONE_W`` (two jittered reads of one sampler may be
    two slots apart), and the session reads it at least that often whatever ``interval_s`` says; a
    read that comes later than one wrap time anyway (a stalled process) is warned about, once.

    Args:
        zone_dir: the zone's directory, e.g. ``/sys/class/powercap/intel-rapl:0``.
        name: the sensor name, ``cpu:package-0`` or ``ram:dram-0``.
        kind: ``"cpu"`` or ``"ram"``.
        counter_range_j: ``max_energy_range_uj`` in J.
        clock: monotonic clock in seconds.
        info: what the zone is, for the log.

    Attributes:
        max_interval_s: the longest the sampler may wait between readings, s (see above).
    """

    def __init__(
        self,
        zone_dir: Path,
        *,
        name: str,
        kind: str,
        counter_range_j: float,
        clock: Callable[[], float] = time.monotonic,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.name, self.kind = name, kind
        self.method = RAPL if kind == CPU else RAPL_DRAM
        self.info = dict(info or {})
        self.counter_range_j = counter_range_j
        self.max_interval_s = counter_range_j / MAX_ZONE_W / 2
        self._energy_file = Path(zone_dir) / "energy_uj"
        self._clock = clock
        self._last_s: float | None = None
        self._warned = False

    def read(self) -> Reading:
        """Read the zone's energy counter.

        Raises:
            SensorPermissionError: ``energy_uj`` became unreadable.
            SensorReadError: the zone vanished or returned garbage.
        """
        energy_uj = read_int(self._energy_file, self.name, PERMISSION_HINT)
        now = self._clock()
        wrap_s = self.counter_range_j / MAX_ZONE_W
        if self._last_s is not None and now - self._last_s > wrap_s and not self._warned:
            self._warned = True
            log.warning(
                "energy-tracker: %s was not read for %.3g s, longer than its counter takes to wrap at %g W (%.3g s): "
                "that stretch may miss whole wraps of %.3g J each",
                self.name, now - self._last_s, MAX_ZONE_W, wrap_s, self.counter_range_j,
            )  # fmt: skip
        self._last_s = now
        return Reading(self.name, self.kind, now, energy_j=energy_uj / 1e6, counter_range_j=self.counter_range_j)

    def close(self) -> None:
        """Nothing to release: no file is held open between reads."""


def find_rapl(
    *, root: Path | str | None = None, clock: Callable[[], float] = time.monotonic
) -> tuple[list[RaplSensor], list[Absent]]:
    """Find the readable RAPL package and DRAM zones.

    Args:
        root: the powercap class directory; ``None`` is ``/sys/class/powercap``, which may be
            absent (no RAPL here, a VM, not Linux). An explicit root must exist.
        clock: monotonic clock in seconds for the readings.

    Returns:
        ``(sensors, absent)``: one sensor per package zone (kind ``cpu``) and per ``dram`` subzone
        (kind ``ram``), and, per kind that cannot be measured, why. When any zone of a kind cannot
        be read, that whole kind is absent, so that a partial sum never passes for the machine.

    Raises:
        ConfigurationError: ``root`` was given and is not a directory.
    """
    base = class_root(root, DEFAULT_ROOT, "intel-rapl:N zones")
    if base is None:
        return [], [Absent("rapl", CPU, "not supported", detail=f"{DEFAULT_ROOT} does not exist (no RAPL here)")]
    try:
        zones = _package_zones(base)
    except OSError as e:
        return [], [Absent("rapl", CPU, "not supported", detail=f"cannot list {base}: {e.strerror}")]
    if not zones:
        return [], [Absent("rapl", CPU, "not supported", detail=f"no intel-rapl:N package zone in {base}")]
    by_kind = {CPU: [], RAM: []}
    for package in zones:
        by_kind[CPU].append(package)
        by_kind[RAM].extend(_dram_zones(package))
    sensors: list[RaplSensor] = []
    absent: list[Absent] = []
    for kind, dirs in by_kind.items():
        found, missing = _sensors_of_kind(kind, dirs, clock)
        sensors.extend(found)
        absent.extend(missing)
    return sensors, absent


def _package_zones(base: Path) -> list[Path]:
    """The top-level ``intel-rapl:N`` zones whose name is a package (never psys), by N."""
    found = []
    for entry in base.iterdir():
        match = re.fullmatch(_PACKAGE_ZONE, entry.name)
        if match and _zone_name(entry).startswith("package"):
            found.append((int(match.group(1)), entry))
    return [path for _, path in sorted(found)]


def _dram_zones(package: Path) -> list[Path]:
    """The ``dram`` subzones nested in a package zone (never core or uncore)."""
    nested = sorted(p for p in package.iterdir() if p.name.startswith(package.name + ":"))
    return [p for p in nested if _zone_name(p) == "dram"]


def _zone_name(zone: Path) -> str:
    try:
        return (zone / "name").read_text().strip()
    except OSError:
        return ""


def _sensors_of_kind(kind: str, dirs: list[Path], clock: Callable[[], float]) -> tuple[list[RaplSensor], list[Absent]]:
    """Sensors for the zones of one kind, or one :class:`Absent` if any of them cannot be read."""
    if not dirs:
        detail = "no dram zone in the powercap tree (AMD and most client CPUs have none)"
        return [], [Absent("rapl", kind, "not supported", detail=detail)]
    try:
        return [_sensor(kind, d, clock) for d in dirs], []
    except SensorPermissionError as e:
        return [], [
            Absent("rapl", kind, "permission denied", detail=str(e.args[0]), hint=f"{e.hint}; {_FALLBACK[kind]}")
        ]
    except SensorError as e:
        return [], [Absent("rapl", kind, "not supported", detail=str(e))]


def _sensor(kind: str, zone: Path, clock: Callable[[], float]) -> RaplSensor:
    """Build one zone's sensor, reading both of its files once to prove they can be read."""
    package = zone.name.split(":")[1]
    domain = _zone_name(zone) if kind == CPU else f"dram-{package}"
    name = f"{kind}:{domain}"
    range_uj = read_int(zone / "max_energy_range_uj", name, PERMISSION_HINT)
    read_int(zone / "energy_uj", name, PERMISSION_HINT)
    info = {"zone": zone.name, "domain": domain, "path": str(zone), "max_energy_range_uj": range_uj}
    return RaplSensor(zone, name=name, kind=kind, counter_range_j=range_uj / 1e6, clock=clock, info=info)
