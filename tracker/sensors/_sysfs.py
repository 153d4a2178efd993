"""Linux sysfs, read the one way every sysfs source reads it (powercap for RAPL, hwmon for the node's meter).

Each attribute read here is one integer in one file (``Documentation/filesystems/sysfs.rst``: attributes are
ASCII text files, "preferably with only one value per file"),
opened anew at every read; ``OSError`` is translated here, into the sensor errors, and nowhere else.
"""

from __future__ import annotations

from pathlib import Path

from tracker.errors import ConfigurationError, SensorPermissionError, SensorReadError


def read_int(path: Path, sensor: str, hint: str = "") -> int:
    """Read one integer sysfs attribute (µJ for powercap, µW or ms for hwmon); the one place ``OSError`` is translated.

    The file is opened anew each time (about 10 µs, against 1 µs for ``os.pread`` on a kept
    descriptor, measured on a cgroup sysfs file): at a 1 s interval the difference is noise, and
    a fresh open sees permission changes and vanished zones instead of a stale descriptor.

    Raises:
        SensorPermissionError: the file exists but may not be read (with ``hint``: how to let this user read it).
        SensorReadError: the file is gone, unreadable for another reason, or holds no integer.
    """
    try:
        with open(path, "rb", buffering=0) as f:
            return int(f.read())
    except PermissionError as e:
        raise SensorPermissionError(
            f"cannot read {path}: {e.strerror}", sensor=sensor, path=str(path), hint=hint
        ) from e
    except OSError as e:
        raise SensorReadError(f"cannot read {path}: {e.strerror}", sensor=sensor, path=str(path)) from e
    except ValueError as e:
        raise SensorReadError(f"{path} does not hold an integer", sensor=sensor, path=str(path)) from e


def class_root(root: Path | str | None, default: Path, holding: str) -> Path | None:
    """A sysfs class directory: ``root``, else ``default``; ``None`` when no root is given and ``default`` is absent.

    Raises:
        ConfigurationError: ``root`` was given and is not a directory (naming what it should hold).
    """
    if root is None:
        return default if default.is_dir() else None
    path = Path(root)
    if not path.is_dir():
        raise ConfigurationError(
            f"{default.name} root {str(path)!r} is not a directory; expected the {default.name} sysfs class directory "
            f"holding {holding} (normally {default}), or no root to use that one if present"
        )
    return path
