"""A vendor library's initialisation shared by the sensors opened with it (NVML, amdsmi)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tracker.errors import SensorError

log = logging.getLogger(__name__)


class LibraryShares:
    """Counts the users of one ``nvmlInit``/``amdsmi_init``; the library shuts down after the last.

    The opener (``find_gpus``, ``find_amd_gpus``) holds the first share and releases it when it is
    done opening; each sensor acquires one and releases it at ``close()``.

    Args:
        shutdown: the library's shutdown call; a :class:`~tracker.errors.SensorError` from it is logged.
        name: what the shutdown is called, for the log.
    """

    def __init__(self, shutdown: Callable[[], object], name: str) -> None:
        self._shutdown, self._name = shutdown, name
        self._users, self._lock = 1, threading.Lock()

    def acquire(self) -> Callable[[], None]:
        """Take a share; returns the function that gives it back."""
        with self._lock:
            self._users += 1
        return self.release

    def release(self) -> None:
        """Give a share back; the last one shuts the library down."""
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            try:
                self._shutdown()
            except SensorError as e:
                log.debug("%s failed: %s", self._name, e)
