"""The tracker's exceptions.

Hardware errors (``pynvml.NVMLError``, ``OSError``) are translated into these at one
boundary per backend, always chained with ``from``::

    TrackerError
    ├── ConfigurationError (also a ValueError)   bad argument or environment, raised at construction
    │   └── UnknownOptionError (also a TypeError) an option name that does not exist
    ├── UsageError (also a RuntimeError)         methods called out of order, raised by that call
    └── SensorError                               fields: sensor, path, hint
        ├── SensorUnavailable                     the source is absent (no library, no device, not supported)
        ├── SensorPermissionError                 the source exists but may not be read ("forbidden", not "absent")
        └── SensorReadError                       a reading failed after the sensor was set up
            └── SensorGone                        the device is gone (fell off the bus, unplugged)

After ``start()`` none of these reaches the training thread: the sampler turns a failing
sensor into one warning and a ``status`` value in the log, and retries it with back-off.
"""

from __future__ import annotations


class TrackerError(Exception):
    """Base class of every exception raised by training-energy-tracker."""


class ConfigurationError(TrackerError, ValueError):
    """A bad argument or environment value, found before any training starts.

    The message names the value given and says what would be valid.
    """


class UnknownOptionError(ConfigurationError, TypeError):
    """An option name that no tracker option has (a ``TypeError`` too, as Python's own would be)."""


class SensorError(TrackerError):
    """A hardware source could not be used.

    Args:
        message: what went wrong.
        sensor: the source or sensor name (``"nvml"``, ``"rapl"``, ``"gpu:0"``).
        path: the file or device involved, if any.
        hint: what the user can do about it, if anything.
    """

    def __init__(self, message: str, *, sensor: str = "", path: str = "", hint: str = "") -> None:
        super().__init__(message)
        self.sensor = sensor
        self.path = path
        self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} ({self.hint})" if self.hint else text


class SensorUnavailable(SensorError):
    """The source is absent here: no library, no device, or the device does not support it."""


class SensorPermissionError(SensorError):
    """The source exists but this process may not read it (e.g. RAPL is root-only since Linux 5.10)."""


class SensorReadError(SensorError):
    """A reading failed on a sensor that was working (device lost, file vanished, driver error)."""


class UsageError(TrackerError, RuntimeError):
    """A tracker method called out of order (an epoch index used twice, a phase opened inside itself).

    Raised by the call that is out of order, before the epoch or phase it would start.
    """


class SensorGone(SensorReadError):
    """The device is gone (an NVIDIA GPU fell off the bus, a device was unplugged).

    The sampler marks the sensor ``lost`` and re-probes it rarely instead of retrying at every tick.
    """
