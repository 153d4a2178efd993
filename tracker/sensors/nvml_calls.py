"""Calls into ``pynvml`` with its errors translated: the one boundary where ``NVMLError`` becomes the tracker's.

Used by :mod:`tracker.sensors.nvml` (the sensor) and :mod:`tracker.sensors._cuda_visible` (which GPUs
the process may use)::

    NVMLError_NotSupported, _FunctionNotFound,
      _LibraryNotFound, _DriverNotLoaded        -> SensorUnavailable
    NVMLError_NoPermission                      -> SensorPermissionError
    NVMLError_GpuIsLost                         -> SensorGone (a SensorReadError)
    every other code                            -> SensorReadError
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from tracker.errors import SensorGone, SensorPermissionError, SensorReadError, SensorUnavailable

SOURCE = "nvml"
_HINTS = {
    "NOT_SUPPORTED": "this GPU or driver does not provide it",
    "FUNCTION_NOT_FOUND": "the driver is older than the nvidia-ml-py binding; update the driver",
    "LIBRARY_NOT_FOUND": "no NVIDIA driver here (libnvidia-ml.so.1 not found)",
    "DRIVER_NOT_LOADED": "the NVIDIA driver is not loaded",
    "NO_PERMISSION": "this user may not open the GPU; check the permissions of /dev/nvidia*",
    "GPU_IS_LOST": "the GPU fell off the bus; see `nvidia-smi` and Xid errors in the kernel log",
    "LIB_RM_VERSION_MISMATCH": "the driver was upgraded without a reboot; reboot or reload the driver",
}
_UNAVAILABLE = ("NOT_SUPPORTED", "FUNCTION_NOT_FOUND", "LIBRARY_NOT_FOUND", "DRIVER_NOT_LOADED")


def _codes(nvml: Any, names: Sequence[str]) -> set[int]:
    # hasattr: old bindings lack some codes (docs/measurement.md §1.5: feature-detect, never assume).
    return {getattr(nvml, f"NVML_ERROR_{name}") for name in names if hasattr(nvml, f"NVML_ERROR_{name}")}


@contextlib.contextmanager
def nvml_errors(nvml: Any, sensor: str, function: str, path: str = "") -> Iterator[None]:
    """Translate an ``NVMLError`` raised in the block as the module docstring draws it, with ``from``.

    The error names ``sensor`` (``"gpu:0"`` or ``"nvml"``), ``function``, ``path`` (the GPU's UUID) and a hint.
    """
    try:
        yield
    except nvml.NVMLError as e:
        code = getattr(e, "value", None)
        hint = next((text for name, text in _HINTS.items() if code in _codes(nvml, [name])), "")
        kind = SensorReadError
        if code in _codes(nvml, _UNAVAILABLE):
            kind = SensorUnavailable
        elif code in _codes(nvml, ["NO_PERMISSION"]):
            kind = SensorPermissionError
        elif code in _codes(nvml, ["GPU_IS_LOST"]):
            kind = SensorGone
        raise kind(f"{function} failed on {sensor}: {e}", sensor=sensor, path=path, hint=hint) from e


def call(nvml: Any, sensor: str, function: str, *args: Any, path: str = "") -> Any:
    """Call ``nvml.<function>(*args)`` with errors translated; a function the binding lacks is unavailable."""
    method = getattr(nvml, function, None)
    if method is None:
        raise SensorUnavailable(f"{function} is missing from this pynvml", sensor=sensor, hint="update nvidia-ml-py")
    with nvml_errors(nvml, sensor, function, path):
        return method(*args)


def optional(nvml: Any, sensor: str, function: str, *args: Any, path: str = "") -> Any:
    """Like :func:`call`, but ``None`` where the GPU does not support or allow it."""
    try:
        return call(nvml, sensor, function, *args, path=path)
    except (SensorUnavailable, SensorPermissionError):
        return None


def text(value: Any) -> Any:
    """``value`` as ``str`` when the binding returned ``bytes`` (older nvidia-ml-py)."""
    return value.decode() if isinstance(value, bytes) else value
