"""Callback hooks that never raise into the training loop: a failure is logged, and training goes on.

A framework calls a callback's hooks from inside its training loop, so an exception there ends the
training. Whatever the tracker raises in a hook (a wrong call order, a full disk, a bug of ours) is
logged instead: the first as a warning, later ones at DEBUG, so a failure that repeats at every step
does not flood the log. Measuring goes on where the tracker still can; what it could not measure is
missing from the rows, and the warning says so.

The exception is re-raised on a rank of a job whose callback makes collectives of its own (the
Lightning callback under DDP, ``self._world > 1``): a rank that skipped one would leave the others
waiting in it for good, and a failed rank ends the job through its launcher instead.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

Hook = TypeVar("Hook", bound=Callable[..., Any])

logger = logging.getLogger(__name__)


def guarded(hook: Hook) -> Hook:
    """``hook`` (a method of a callback), logging what it raises (``Exception``, not Ctrl-C) instead of raising it."""

    @functools.wraps(hook)
    def safe(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return hook(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the training must not die of its energy measurement
            if getattr(self, "_world", 1) > 1:
                raise
            first = not getattr(self, "_hook_failed", False)
            self._hook_failed = True
            logger.log(
                logging.WARNING if first else logging.DEBUG,
                "energy-tracker: %s.%s failed (%s: %s); training goes on, and what was not measured is "
                "missing from the rows%s",
                type(self).__name__,
                hook.__name__,
                type(exc).__name__,
                exc,
                " (later failures are logged at DEBUG)" if first else "",
            )
            return None

    return safe  # type: ignore[return-value]
