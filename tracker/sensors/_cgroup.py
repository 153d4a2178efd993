"""What the process's cgroups allow it: the memory limit and the CPU quota, from ``/sys/fs/cgroup``.

Both cgroup versions are read: v2 (``memory.max``, ``cpu.max``) and v1 (``memory.limit_in_bytes``,
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``). A limit anywhere along the process's cgroup path
applies, so the smallest one found wins. The roots are parameters, for tests with a fake tree.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CGROUP_ROOT", "PROC_SELF_CGROUP", "cgroup_dirs", "cpu_quota", "memory_limit_bytes", "read_cgroup_file"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def cgroup_dirs(
    controller: str, *, cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP
) -> list[tuple[int, Path]]:
    """The process's cgroup directories and their ancestors, nearest first, as ``(version, dir)``.

    v2 directories (``cgroup_root/<path>``) come first, then v1 ones
    (``cgroup_root/<controller>/<path>``); paths come from ``/proc/self/cgroup``. Directories
    that do not exist are left out. A limit anywhere along the path applies, so callers take the
    smallest value they find.
    """
    paths = _self_cgroup_paths(proc_cgroup, controller)
    found = []
    for version, base in ((2, Path(cgroup_root)), (1, Path(cgroup_root) / controller)):
        parts = [p for p in paths.get(version, "/").split("/") if p and p != ".."]
        for depth in range(len(parts), -1, -1):
            directory = base.joinpath(*parts[:depth])
            if directory.is_dir():
                found.append((version, directory))
    return found


def _self_cgroup_paths(proc_cgroup: Path, controller: str) -> dict[int, str]:
    """``{2: path}`` from the ``0::path`` line, ``{1: path}`` from the line naming ``controller``."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return {}
    paths = {}
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if not controllers:
            paths[2] = path
        elif controller in controllers.split(","):
            paths[1] = path
    return paths


def read_cgroup_file(path: Path) -> str | None:
    """A cgroup file's stripped text, ``None`` if it cannot be read."""
    try:
        return path.read_text().strip()
    except OSError:
        return None


def memory_limit_bytes(*, cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> int | None:
    """The smallest cgroup memory limit over the process's cgroup path, in bytes; ``None`` if none is set."""
    limits = []
    for version, directory in cgroup_dirs("memory", cgroup_root=cgroup_root, proc_cgroup=proc_cgroup):
        text = read_cgroup_file(directory / ("memory.max" if version == 2 else "memory.limit_in_bytes"))
        if text and text.isdigit():
            limits.append(int(text))
    return min(limits, default=None)


def cpu_quota(*, cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> float | None:
    """The smallest cgroup CPU quota over the process's cgroup path, in CPUs; ``None`` if unlimited."""
    quotas = []
    for version, directory in cgroup_dirs("cpu", cgroup_root=cgroup_root, proc_cgroup=proc_cgroup):
        if version == 2:
            quota, _, period = (read_cgroup_file(directory / "cpu.max") or "max").partition(" ")
        else:
            quota = read_cgroup_file(directory / "cpu.cfs_quota_us") or "-1"
            period = read_cgroup_file(directory / "cpu.cfs_period_us") or ""
        if quota.isdigit() and period.isdigit() and int(period) > 0:
            quotas.append(int(quota) / int(period))
    return min(quotas, default=None)
