"""The node's own meter: the ACPI power meter through Linux hwmon (kind ``node``).

The kernel's ``acpi_power_meter`` driver (``Documentation/hwmon/acpi_power_meter.rst``) exposes an
ACPI 4.0 power meter (ACPI ID ``ACPI000D``) as a hwmon chip named ``power_meter``, whose files follow
``Documentation/hwmon/sysfs-interface.rst``: ``power1_average`` is the average power use in µW over
``power1_average_interval`` ms, and ``power1_is_battery`` is 1 when the meter measures a battery.
The driver creates its files mode 0444 (readable by every user) and evaluates the firmware's
``_PMM`` at most once per the meter's sampling time, returning the cached value in between; older
kernels put the files in the chip's device directory (``hwmonN/device/``), newer ones in
``hwmonN/`` itself, and both are looked in, as libsensors does.

The meter measures the whole machine (its supply's input, fans, disks, NICs and conversion losses
with the components), so its energy is shown beside the components' and never added to them.
A reading is a trailing mean: it is integrated with its lag undone
(:class:`~tracker.sensors._power_integrals.AverageCounter`, as for a GPU's 1 s mean power), the window
being ``power1_average_interval`` read once when the meter is found (0 when it cannot be read: a plain
trapezoid). A read may take as long as the firmware's evaluation (an IPMI round trip on many
servers): the sampler reads a slow sensor in the background only, so no edge waits on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tracker.errors import SensorError, SensorPermissionError
from tracker.sensors import NODE, Absent, Reading
from tracker.sensors._power_integrals import AverageCounter
from tracker.sensors._sysfs import class_root, read_int
from tracker.sensors.methods import ACPI_POWER_METER

__all__ = ["DEFAULT_ROOT", "METER_NAME", "PowerMeterSensor", "find_power_meters"]

DEFAULT_ROOT = Path("/sys/class/hwmon")
METER_NAME = "power_meter"  # the driver's hwmon name (ACPI_POWER_METER_NAME)
SOURCE = "hwmon"
PERMISSION_HINT = (
    "the acpi_power_meter driver makes power1_average readable by every user (mode 0444); a site that "
    "restricted it can let this user read it again (chmod o+r /sys/class/hwmon/hwmon*/power1_average, or "
    "hwmon*/device/power1_average on older kernels)"
)
_STRINGS = ("power1_accuracy", "power1_model_number", "power1_oem_info")


class PowerMeterSensor:
    """One ACPI power meter: the whole node's power, as a counter built from its trailing means.

    Built by :func:`find_power_meters`. Each :meth:`read` reads ``power1_average`` (µW) once.

    Args:
        attributes: the directory holding ``power1_average``.
        name: the sensor name, ``node:hwmonN``.
        window_s: the meter's averaging interval, s (0: integrate the readings as instantaneous).
        clock: monotonic clock in seconds.
        info: what the meter is, for the log.
    """

    def __init__(
        self,
        attributes: Path,
        *,
        name: str,
        window_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.name, self.kind, self.method = name, NODE, ACPI_POWER_METER
        self.info = dict(info or {})
        self._power_file = Path(attributes) / "power1_average"
        self._counter = AverageCounter(window_s)
        self._clock = clock

    def read(self) -> Reading:
        """Read the meter's average power, W, and the energy so far, J, with its error bound.

        Raises:
            SensorPermissionError: ``power1_average`` became unreadable.
            SensorReadError: the meter vanished or returned garbage.
        """
        watts = read_int(self._power_file, self.name, PERMISSION_HINT) / 1e6
        now = self._clock()
        energy_j, error_j = self._counter.energy(now, watts)
        return Reading(self.name, NODE, now, energy_j=energy_j, power_w=watts, energy_error_j=error_j)

    def close(self) -> None:
        """Nothing to release: no file is held open between reads."""


def find_power_meters(
    *, root: Path | str | None = None, clock: Callable[[], float] = time.monotonic
) -> tuple[list[PowerMeterSensor], list[Absent]]:
    """Find the readable ACPI power meters (hwmon chips named ``power_meter``).

    Args:
        root: the hwmon class directory; ``None`` is ``/sys/class/hwmon``, which may be absent
            (not Linux, a container without sysfs). An explicit root must exist.
        clock: monotonic clock in seconds for the readings.

    Returns:
        ``(sensors, absent)``: one sensor per meter that measures the supply (several meters, one per power
        supply, add up to the node), or none and why: no meter, a battery's meter, or one that cannot be
        read (then none is used, so that a partial sum never passes for the node).

    Raises:
        ConfigurationError: ``root`` was given and is not a directory.
    """
    base = class_root(root, DEFAULT_ROOT, "hwmonN chips")
    if base is None:
        return [], [Absent(SOURCE, NODE, "not supported", detail=f"{DEFAULT_ROOT} does not exist (no hwmon here)")]
    try:
        meters = _meters(base)
    except OSError as e:
        return [], [Absent(SOURCE, NODE, "not supported", detail=f"cannot list {base}: {e.strerror}")]
    measuring = [(chip, files) for chip, files in meters if (files / "power1_average").exists()]
    supply = [(chip, files) for chip, files in measuring if _flag(files / "power1_is_battery") != 1]
    if not supply:
        return [], [Absent(SOURCE, NODE, "no device", detail=_none_found(base, meters, measuring))]
    try:
        return [_sensor(chip, files, clock) for chip, files in supply], []
    except SensorPermissionError as e:
        return [], [Absent(SOURCE, NODE, "permission denied", detail=str(e.args[0]), hint=e.hint)]
    except SensorError as e:
        return [], [Absent(SOURCE, NODE, "not supported", detail=str(e))]


def _meters(base: Path) -> list[tuple[Path, Path]]:
    """``(chip, attribute directory)`` of each chip named ``power_meter``, by hwmon number."""
    found = []
    for chip in sorted(base.iterdir(), key=_chip_number):
        files = next((f for f in (chip, chip / "device") if _text(f / "name") == METER_NAME), None)
        if files is not None:
            found.append((chip, files))
    return found


def _none_found(base: Path, meters: list[Any], measuring: list[Any]) -> str:
    """Why no meter is used: none here, none that measures (a capping-only meter), or a battery's."""
    if not meters:
        return f"no hwmon chip named {METER_NAME!r} in {base} (no ACPI power meter, ACPI000D, on this machine)"
    if not measuring:
        return f"the ACPI power meter in {base} reports no power (no power1_average: it only caps)"
    return f"the ACPI power meter in {base} measures a battery (power1_is_battery = 1), not the node's supply"


def _chip_number(chip: Path) -> tuple[int, str]:
    digits = chip.name.removeprefix("hwmon")
    return (int(digits), "") if digits.isdigit() else (-1, chip.name)


def _text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _flag(path: Path) -> int | None:
    text = _text(path)
    return int(text) if text.isdigit() else None


def _measures(chip: Path, files: Path) -> list[str]:
    """The devices the firmware says the meter measures (the driver's ``measures/`` links), empty if unsaid."""
    for where in (files / "measures", chip / "device" / "measures"):
        try:
            return sorted(entry.name for entry in where.iterdir())
        except OSError:
            continue
    return []


def _sensor(chip: Path, files: Path, clock: Callable[[], float]) -> PowerMeterSensor:
    """Build one meter's sensor, reading ``power1_average`` once to prove it can be read."""
    name = f"{NODE}:{chip.name}"
    read_int(files / "power1_average", name, PERMISSION_HINT)
    interval_ms = _flag(files / "power1_average_interval")
    info: dict[str, Any] = {"chip": chip.name, "path": str(files), "average_interval_ms": interval_ms}
    info.update({key.removeprefix("power1_"): _text(files / key) for key in _STRINGS if _text(files / key)})
    info["model"] = " ".join(filter(None, ["ACPI power meter", info.get("model_number")]))  # devices.csv's model
    info["measures"] = _measures(chip, files)
    window_s = interval_ms / 1000 if interval_ms else 0.0
    return PowerMeterSensor(files, name=name, window_s=window_s, clock=clock, info=info)
