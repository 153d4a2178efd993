"""Where each finished row goes besides ``epochs.csv``: the user's ``on_row`` callable.

A row reaches the user's code as the records the files hold: an :class:`~tracker.logs.schema.EpochRecord`
and its :class:`~tracker.logs.schema.DeviceRecord` s. Whatever the user's code raises stays here: the
first failure is a warning, later ones are logged at DEBUG, and training goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tracker.logs.schema import DEVICE_COLUMNS, EPOCH_COLUMNS, DeviceRecord, EpochRecord

logger = logging.getLogger(__name__)

OnRow = Callable[[EpochRecord, tuple[DeviceRecord, ...]], Any]


def as_records(
    row: Mapping[str, Any], device_rows: Sequence[Mapping[str, Any]]
) -> tuple[EpochRecord, tuple[DeviceRecord, ...]]:
    """The records of a row as written (its metric columns left out) and of its devices."""
    record = EpochRecord(*(row[name] for name in EPOCH_COLUMNS))
    return record, tuple(DeviceRecord(*(d[name] for name in DEVICE_COLUMNS)) for d in device_rows)


class Guarded:
    """Calls a user's function; what it raises is logged (a warning the first time, then DEBUG), never raised.

    Args:
        function: the user's function.
        name: how the warning names it (``on_row``, ``the mlflow sink``).
    """

    __slots__ = ("function", "name", "failed")

    def __init__(self, function: Callable[..., Any], name: str) -> None:
        self.function = function
        self.name = name
        self.failed = False

    def __call__(self, *args: Any) -> None:
        """Call the function with ``args``; log what it raises."""
        try:
            self.function(*args)
        except Exception as exc:  # noqa: BLE001 - the training must not die of what is done with a row
            first, self.failed = not self.failed, True
            logger.log(
                logging.WARNING if first else logging.DEBUG,
                "energy-tracker: %s failed (%s: %s); the row is in epochs.csv and training goes on%s",
                self.name,
                type(exc).__name__,
                exc,
                " (later failures are logged at DEBUG)" if first else "",
            )
