"""training-energy-tracker: what each epoch of training costs in energy and CO2.

The package's face: it re-exports the user's names (and ``integration``, for integrations/) and holds
no logic. Importing it imports none of torch, lightning, codecarbon, matplotlib or pandas, reads no
file and starts nothing.
"""

from __future__ import annotations

from typing import Any

from tracker._version import __version__

# The names a user needs: the tracker and its options, its summary, the reader and its records, the errors.
# ``integration`` is the one name for the framework integrations (integrations/): their option handling and
# vocabulary (tracker.session.integration). Everything else is imported from its module.
_EXPORTS = {
    "EnergyTracker": "tracker.session.energy_tracker",
    "MLflowSink": "tracker.session.sinks",
    "TensorBoardSink": "tracker.session.sinks",
    "WandbSink": "tracker.session.sinks",
    "Config": "tracker.session.config",
    "Summary": "tracker.session.summary",
    "load_run": "tracker.logs.reader",
    "load_runs": "tracker.logs.reader",
    "Run": "tracker.logs.reader",
    "EpochRecord": "tracker.logs.schema",
    "DeviceRecord": "tracker.logs.schema",
    "TrackerError": "tracker.errors",
    "ConfigurationError": "tracker.errors",
    "UnknownOptionError": "tracker.errors",
    "UsageError": "tracker.errors",
    "SensorError": "tracker.errors",
    "integration": "tracker.session.integration",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    # Lazy re-exports (PEP 562): `import tracker` stays a few milliseconds.
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tracker' has no attribute {name!r}")
    import importlib

    value = importlib.import_module(module)
    if not module.endswith(f".{name}"):  # a name of the module; else the module itself (``integration``)
        value = getattr(value, name)
    globals()[name] = value
    return value
