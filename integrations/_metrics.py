"""What the Lightning callback logs and writes, as pure functions of summaries and metrics (no Lightning).

The ``energy/*`` metrics are not here: their keys are declared in ``tracker/session/vocabulary.py`` and
their figures worked out in ``integrations/_vocabulary.py``; this module handles the Trainer's own metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from tracker import Summary, integration

# Names log_metrics refuses (a tracker column, the JSON column of late metrics, a formula's first
# character): a Trainer's metric by such a name is written as user_<name>, never raised into training.
TRACKER_COLUMNS = frozenset(integration.EPOCH_COLUMNS) | {integration.MORE_METRICS}

PROGRESS_BAR_KEY = "CO2"  # the progress bar's entry: the run's CO2e so far, in units that move ("12.3 g")
ENERGY_PREFIX = "energy/"


def user_metrics(callback_metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The Trainer's metrics for ``epochs.csv``: tensors as numbers, ours left out, tracker names prefixed."""
    found = {}
    for key, value in callback_metrics.items():
        if key.startswith(ENERGY_PREFIX) or key == PROGRESS_BAR_KEY:
            continue
        number = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
        found[_column(str(key))] = number
    return found


class TrainerMetricsPerRow:
    """The Trainer's own metrics (not ``energy/*``) logged during each open row.

    A row's are those new or changed since it opened, less those a row inside it took.

    The Trainer's ``callback_metrics`` keep every value logged so far; a validation row would otherwise
    carry the last epoch's training loss, and an epoch's row the validation's ``val_loss`` (a validation
    runs inside the epoch and writes its row first).
    """

    def __init__(self) -> None:
        self._before: dict[str, dict[str, Any]] = {}
        self._taken: dict[str, set[str]] = {}

    def begin(self, phase: str, metrics: Mapping[str, Any]) -> None:
        """A row opens: what is logged so far is not its own."""
        self._before[phase], self._taken[phase] = dict(metrics), set()

    def end(self, phase: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
        """A row closes: its own metrics, which the rows still open around it no longer take."""
        before, taken = self._before.pop(phase, {}), self._taken.pop(phase, set())
        mine = {k: v for k, v in metrics.items() if k not in taken and not _same(before.get(k, _MISSING), v)}
        for outer in self._taken.values():
            outer.update(mine)
        return mine


_MISSING = object()


def _same(a: Any, b: Any) -> bool:
    # numbers and text compare by value; anything else (a tensor of several values) counts as logged again
    return a is b or (isinstance(a, (int, float, str)) and isinstance(b, (int, float, str)) and a == b)


def progress_text(summary: Summary | None) -> str:
    """The progress bar's figure: the run's CO2e so far in scaled units (``12.3 g``)."""
    return summary.co2_text() if summary is not None else "0 kg"


def batch_size(batch: Any) -> int | None:
    """The first dimension of the first tensor in a batch (tensors, lists, tuples, dicts), or None."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    items = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else ()
    return next((n for n in map(batch_size, items) if n is not None), None)


def _column(key: str) -> str:
    """A metric's column name: line breaks and NUL out, ``user_`` before a name ``log_metrics`` refuses."""
    key = key.replace("\r", "_").replace("\n", "_").replace("\x00", "")
    return f"user_{key}" if key in TRACKER_COLUMNS or key.startswith(integration.FORMULA_STARTS) else key
