"""A temporary ``/sys/class/hwmon`` tree holding ACPI power meters, driven by a power trace.

Laid out as the kernel lays it out (``Documentation/hwmon/sysfs-interface.rst``,
``Documentation/hwmon/acpi_power_meter.rst``): one ``hwmonN`` directory per chip, each with a
``name``; a ``power_meter`` chip holds ``power1_average`` (µW), ``power1_average_interval`` (ms),
``power1_is_battery`` and ``power1_accuracy``, either in ``hwmonN/`` itself (``layout="class"``, newer
kernels) or in ``hwmonN/device/`` (``layout="device"``, older ones). Other chips (``coretemp``,
``acpitz``) stand beside it, as on a real machine.

The meter reports what the driver reports: the mean of the trace over the trailing averaging
interval, written when :meth:`HwmonTree.update` is called (sysfs files do not change by
themselves here), so the true energy of any stretch is the trace's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from tracker.testing.traces import PowerTrace, steady

__all__ = ["HwmonTree", "build_hwmon_tree"]


class HwmonTree:
    """A fake hwmon tree on disk whose power meters follow a trace; the trace's time 0 is the clock at construction.

    Attributes:
        root: the class directory to pass as ``find_power_meters(root=...)`` or ``hwmon_root=``.
        meters: the attribute directory of each power meter (each draws an equal share of the trace).
        trace: the whole node's power.
        interval_ms: each meter's averaging interval, ms.
    """

    __slots__ = ("root", "meters", "trace", "interval_ms", "clock", "origin_s")

    def __init__(self, root: Path, trace: PowerTrace, clock: Callable[[], float], interval_ms: int) -> None:
        self.root, self.trace, self.clock, self.interval_ms = root, trace, clock, interval_ms
        self.meters: list[Path] = []
        self.origin_s = clock()

    def mean_w(self, at_s: float) -> float:
        """The node's mean power over the averaging interval ending at clock reading ``at_s``, W."""
        t = at_s - self.origin_s
        start = max(0.0, t - self.interval_ms / 1000)
        return self.trace.between_j(start, t) / (t - start) if t > start else self.trace.power_w(t)

    def update(self) -> float:
        """Write each meter's ``power1_average`` for the clock's current reading; returns the node's W."""
        watts = self.mean_w(self.clock())
        for meter in self.meters:
            _write(meter / "power1_average", str(round(watts / len(self.meters) * 1e6)))
        return watts

    def true_energy_j(self, t0: float, t1: float) -> float:
        """The exact energy the node drew between two clock readings, J."""
        return self.trace.between_j(t0 - self.origin_s, t1 - self.origin_s)

    def make_unreadable(self) -> None:
        """Make every meter's ``power1_average`` unreadable (a site that restricted it).

        Mode 0000 (as root a test must read it from a process that has dropped root).
        """
        for meter in self.meters:
            os.chmod(meter / "power1_average", 0o000)

    def remove(self) -> None:
        """Remove every meter's ``power1_average``, as when the driver is unloaded."""
        for meter in self.meters:
            (meter / "power1_average").unlink()


def build_hwmon_tree(
    root: Path,
    trace: PowerTrace | None = None,
    clock: Callable[[], float] = time.monotonic,
    meters: int = 1,
    average_interval_ms: int = 1000,
    layout: str = "class",
    is_battery: bool = False,
    name: str = "power_meter",
    accuracy: str = "95.0%",
) -> HwmonTree:
    """Write a hwmon tree under ``root`` (created if needed) with ``meters`` ACPI power meters after two other chips.

    Args:
        root: where to write it; it plays ``/sys/class/hwmon``.
        trace: the whole node's power (default a steady 400 W), shared equally by the meters.
        clock: the clock :meth:`HwmonTree.update` reads (a ``FakeClock`` in tests).
        meters: how many power meters (one per power supply).
        average_interval_ms: each meter's ``power1_average_interval``, ms.
        layout: ``"class"`` (files in ``hwmonN/``) or ``"device"`` (in ``hwmonN/device/``, older kernels).
        is_battery: the meters measure a battery (``power1_is_battery`` = 1).
        name: the chips' ``name`` (another driver's name makes them no power meters).
        accuracy: ``power1_accuracy`` as the driver prints it.

    Returns:
        The tree, its meters already showing the power at the clock's current reading.
    """
    if layout not in ("class", "device"):
        raise ValueError(f"layout={layout!r}: expected 'class' or 'device'")
    tree = HwmonTree(Path(root), trace or steady(400.0), clock, average_interval_ms)
    _write(tree.root / "hwmon0" / "name", "acpitz")
    _write(tree.root / "hwmon0" / "temp1_input", "27800")
    _write(tree.root / "hwmon1" / "name", "coretemp")
    _write(tree.root / "hwmon1" / "temp1_input", "45000")
    for n in range(meters):
        chip = tree.root / f"hwmon{2 + n}"
        files = chip if layout == "class" else chip / "device"
        _write(files / "name", name)
        _write(files / "power1_average_interval", str(average_interval_ms))
        _write(files / "power1_is_battery", "1" if is_battery else "0")
        _write(files / "power1_accuracy", accuracy)
        _write(files / "power1_model_number", f"PSU-{n}")
        # what the firmware says it measures (kept if the tree is built again over an old one)
        (chip / "device" / "measures" / "ACPI0004:00").mkdir(parents=True, exist_ok=True)
        tree.meters.append(files)
    tree.update()
    return tree


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
