"""training-energy-tracker: what each epoch of training costs in energy and CO2.

The package's face: it re-exports the public names and holds no logic. Importing it imports
none of torch, lightning, codecarbon, matplotlib or pandas, reads no file and starts nothing.
"""

from __future__ import annotations

from typing import Any

from tracker._version import __version__

_EXPORTS = {
    "EnergyTracker": "tracker.session.energy_tracker",
    "Summary": "tracker.session.summary",
    "Config": "tracker.session.config",
    "Hardware": "tracker.session.config",
    "split_options": "tracker.session.config",
    "HARDWARE_OPTIONS": "tracker.session.config",
    "assign": "tracker.job.placement",
    "keep_once": "tracker.logs.merge",
    "Totals": "tracker.logs.totals",
    "load_run": "tracker.logs.reader",
    "load_runs": "tracker.logs.reader",
    "Run": "tracker.logs.reader",
    "discover": "tracker.sensors.discovery",
    "Reading": "tracker.sensors",
    "Sensor": "tracker.sensors",
    "EpochRecord": "tracker.logs.schema",
    "DeviceRecord": "tracker.logs.schema",
    "EPOCH_COLUMNS": "tracker.logs.schema",
    "MORE_METRICS": "tracker.logs.schema",
    "FORMULA_STARTS": "tracker.logs.schema",
    "COMPLETE": "tracker.logs.schema",
    "INTERRUPTED": "tracker.logs.schema",
    "TRAIN": "tracker.logs.schema",
    "OTHER_PHASE": "tracker.logs.schema",
    "INFERENCE": "tracker.logs.schema",
    "VALIDATION": "tracker.logs.schema",
    "SANITY_CHECK": "tracker.logs.schema",
    "TEST": "tracker.logs.schema",
    "PREDICT": "tracker.logs.schema",
    "check_log_dir": "tracker.logs.writer",
    "J_PER_KWH": "tracker.energy",
    "GPU": "tracker.sensors",
    "CPU": "tracker.sensors",
    "RAM": "tracker.sensors",
    "KINDS": "tracker.sensors",
    "TrackerError": "tracker.errors",
    "ConfigurationError": "tracker.errors",
    "UnknownOptionError": "tracker.errors",
    "UsageError": "tracker.errors",
    "SensorError": "tracker.errors",
    "SensorUnavailable": "tracker.errors",
    "SensorPermissionError": "tracker.errors",
    "SensorReadError": "tracker.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    # Lazy re-exports (PEP 562): `import tracker` stays a few milliseconds.
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tracker' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
