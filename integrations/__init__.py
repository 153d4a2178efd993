"""Thin adapters from training frameworks to the public ``tracker`` API.

Importing them first checks that ``tracker`` is this package: a file or folder of the user's own
named ``tracker`` (a ``tracker.py`` beside the training script) found first on ``sys.path`` would
otherwise fail later with ``cannot import name 'EnergyTracker' from 'tracker'``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _check_tracker_is_ours() -> None:
    """Raise ImportError naming the file that shadows the ``tracker`` package, if one does."""
    ours = Path(__file__).resolve().parent.parent / "tracker" / "__init__.py"
    try:
        spec = importlib.util.find_spec("tracker")
    except (ImportError, ValueError):
        spec = None
    found = Path(spec.origin).resolve() if spec is not None and spec.origin else None
    if found != ours:
        raise ImportError(
            f"'tracker' is {found or 'not importable'}, not training-energy-tracker's package ({ours.parent}): "
            "a file or folder of yours named tracker comes first on sys.path; rename it (e.g. to my_tracker.py)"
        )


_check_tracker_is_ours()
