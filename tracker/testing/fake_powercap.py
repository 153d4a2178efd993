"""A temporary ``/sys/class/powercap`` tree for testing the RAPL sensor.

Laid out as the kernel lays it out (``Documentation/ABI/testing/sysfs-class-powercap``): the
zones live nested under their control type (``intel-rapl/intel-rapl:0/intel-rapl:0:0``, as in
``/sys/devices/virtual/powercap``), and the class directory lists every zone, subzones
included, as a symlink at its top level. Each zone holds ``name``, ``energy_uj``,
``max_energy_range_uj`` and ``enabled``.

Zones are addressed by a label: ``package-N``, ``core-N``, ``uncore-N``, ``dram-N``, ``psys``,
``mmio-package-N``, or by their directory name (``intel-rapl:0:2``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PowercapTree", "build_powercap_tree"]

#: A typical Intel range: 2**32 energy units of 61.035 µJ (Haswell and newer).
INTEL_RANGE_UJ = 262143328850


class PowercapTree:
    """A fake powercap tree on disk; every change is written in place, as sysfs updates.

    Attributes:
        root: the class directory to pass as ``find_rapl(root=...)``.
        zones: zone label -> zone directory.
        max_energy_range_uj: the counter range of every zone, in µJ; counters wrap to 0 on reaching it.
    """

    __slots__ = ("root", "zones", "max_energy_range_uj")

    def __init__(self, root: Path, max_energy_range_uj: int = INTEL_RANGE_UJ) -> None:
        self.root = root
        self.zones: dict[str, Path] = {}
        self.max_energy_range_uj = max_energy_range_uj

    def zone_dir(self, zone: str) -> Path:
        """The directory of a zone, by label or directory name."""
        if zone in self.zones:
            return self.zones[zone]
        for path in self.zones.values():
            if path.name == zone:
                return path
        raise KeyError(f"no zone {zone!r} in this tree; zones: {sorted(self.zones)}")

    def energy_file(self, zone: str) -> Path:
        """The ``energy_uj`` file of a zone."""
        return self.zone_dir(zone) / "energy_uj"

    def energy_uj(self, zone: str) -> int:
        """The zone's current counter, in µJ."""
        return int(self.energy_file(zone).read_text())

    def set_energy_uj(self, zone: str, value: int) -> None:
        """Set the zone's counter to ``value`` µJ (0 <= value < the range)."""
        if not 0 <= value < self.max_energy_range_uj:
            raise ValueError(f"energy_uj={value} is outside [0, {self.max_energy_range_uj})")
        with open(self.energy_file(zone), "r+") as f:
            f.truncate(0)
            f.write(f"{value}\n")

    def add_energy_j(self, zone: str, joules: float) -> int:
        """Advance the zone's counter by ``joules`` J, wrapping at the range; returns the new value in µJ."""
        value = (self.energy_uj(zone) + round(joules * 1_000_000)) % self.max_energy_range_uj
        self.set_energy_uj(zone, value)
        return value

    def make_unreadable(self, zone: str) -> None:
        """Make the zone's ``energy_uj`` unreadable, as Linux 5.10+ does for non-root (CVE-2020-8694).

        Mode 0400 when running as root, as the kernel sets it (root still reads it, so a test must
        read it from a process that has dropped root); 0000 otherwise, since the owner could read 0400.
        """
        os.chmod(self.energy_file(zone), 0o400 if os.geteuid() == 0 else 0o000)

    def remove(self, zone: str) -> None:
        """Remove the zone's ``energy_uj``, as when a zone disappears (driver unloaded)."""
        self.energy_file(zone).unlink()


def build_powercap_tree(
    root: Path,
    packages: int = 1,
    dram: bool = True,
    psys: bool = False,
    mmio: bool = False,
    core: bool = True,
    max_energy_range_uj: int = INTEL_RANGE_UJ,
    vendor: str = "intel",
    uncore: bool = False,
) -> PowercapTree:
    """Write a powercap tree under ``root`` (created if needed); every counter starts at 0.

    Args:
        root: where to write it; it plays ``/sys/class/powercap``.
        packages: how many package zones (sockets), ``intel-rapl:0`` .. ``intel-rapl:{packages-1}``.
        dram: a ``dram`` subzone in each package (Intel servers).
        psys: a top-level ``psys`` platform zone after the packages (Skylake and newer clients).
        mmio: ``intel-rapl-mmio:N`` zones duplicating each package (newer Intel).
        core: a ``core`` (PP0) subzone in each package.
        max_energy_range_uj: each counter's range, in µJ.
        vendor: ``"intel"`` or ``"amd"``; AMD (Zen, same ``intel-rapl`` driver) has no dram,
            psys or mmio zone, so those flags are ignored for it.
        uncore: an ``uncore`` (PP1) subzone in each package.

    Returns:
        The tree, with methods to drive its counters and to break it.
    """
    if vendor not in ("intel", "amd"):
        raise ValueError(f"vendor={vendor!r}: expected 'intel' or 'amd'")
    if vendor == "amd":
        dram = psys = mmio = False
    tree = PowercapTree(Path(root), max_energy_range_uj=max_energy_range_uj)
    control = tree.root / "intel-rapl"
    _write(control / "enabled", "1")
    for n in range(packages):
        package = _zone(tree, control, f"intel-rapl:{n}", f"package-{n}", f"package-{n}")
        subzones = [("core", core), ("uncore", uncore), ("dram", dram)]
        for m, kind in enumerate(k for k, wanted in subzones if wanted):
            _zone(tree, package, f"intel-rapl:{n}:{m}", kind, f"{kind}-{n}")
    if psys:
        _zone(tree, control, f"intel-rapl:{packages}", "psys", "psys")
    if mmio:
        mmio_control = tree.root / "intel-rapl-mmio"
        _write(mmio_control / "enabled", "1")
        for n in range(packages):
            _zone(tree, mmio_control, f"intel-rapl-mmio:{n}", f"package-{n}", f"mmio-package-{n}")
    return tree


def _zone(tree: PowercapTree, parent: Path, dirname: str, name: str, label: str) -> Path:
    """Write one zone under ``parent`` and its symlink at the top of the class directory."""
    path = parent / dirname
    _write(path / "name", name)
    _write(path / "energy_uj", "0")
    _write(path / "max_energy_range_uj", str(tree.max_energy_range_uj))
    _write(path / "enabled", "1")
    os.symlink(path.relative_to(tree.root), tree.root / dirname)
    tree.zones[label] = path
    return path


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
