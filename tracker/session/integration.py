"""What the framework integrations need beyond the user's names: ``tracker.integration`` on the package face.

An integration (``integrations/``) takes a callback's keyword options once, at the callback's
construction, and builds its trackers later, when the framework starts training:
:class:`CallbackOptions` does the splitting into :class:`~tracker.session.config.Config` and
:class:`~tracker.session.config.Hardware` options and their validation once, for every callback,
and :meth:`CallbackOptions.tracker` builds an :class:`~tracker.session.energy_tracker.EnergyTracker`
with one call. The vocabulary an integration speaks (phase and status names, the device kinds, the
columns, the energy unit, the rules of who measures what) is re-exported here from its one declaration,
so that ``integrations/`` imports nothing but the package face.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from tracker.energy import J_PER_KWH
from tracker.errors import ConfigurationError
from tracker.job.placement import assign, framework_launch
from tracker.logs.schema import (
    COMPLETE,
    EPOCH_COLUMNS,
    FORMULA_STARTS,
    INTERRUPTED,
    MORE_METRICS,
    PREDICT,
    SANITY_CHECK,
    TEST,
    TRAIN,
    VALIDATION,
)
from tracker.logs.totals import Totals
from tracker.logs.writer import check_log_dir
from tracker.sensors import GPU
from tracker.session.config import HARDWARE_OPTIONS, Config, Hardware, split_options
from tracker.session.energy_tracker import EnergyTracker
from tracker.session.vocabulary import (
    ENERGY_METRICS,
    EPOCH_CO2_KG,
    EPOCH_KWH,
    EVAL_KWH,
    FORECAST_CO2_KG,
    FORECAST_KWH,
    GPU_POWER_W,
    TERMS,
    TOTAL_CO2_KG,
    TOTAL_KWH,
    counted,
)

__all__ = [
    "ENERGY_METRICS",
    "EPOCH_CO2_KG",
    "EPOCH_KWH",
    "EVAL_KWH",
    "FORECAST_CO2_KG",
    "FORECAST_KWH",
    "GPU_POWER_W",
    "TERMS",
    "TOTAL_CO2_KG",
    "TOTAL_KWH",
    "counted",
    "COMPLETE",
    "EPOCH_COLUMNS",
    "FORMULA_STARTS",
    "GPU",
    "INTERRUPTED",
    "J_PER_KWH",
    "MORE_METRICS",
    "PREDICT",
    "SANITY_CHECK",
    "TEST",
    "TRAIN",
    "VALIDATION",
    "CallbackOptions",
    "Totals",
    "assign",
    "framework_launch",
]


class CallbackOptions:
    """A callback's options, split and validated once (at the callback's construction); builds its trackers.

    Args:
        options: the keyword options the user gave the callback (any ``EnergyTracker`` option).
        where: the callback's name, for the messages (``"EnergyCallback"``).
        sets: the :class:`~tracker.session.config.Hardware` options the callback sets itself (``rank``,
            ``launch``); the user may not give them.
        defaults: :class:`~tracker.session.config.Config` options whose default the callback changes
            (``log_dir=None``: the framework's directory, found when training starts).
        check_dir: prove the log directory writable now, not at the first hook.
        logs_metrics: where the framework logs the ``energy/*`` metrics itself (its loggers); ``sinks=``
            is then refused, since a sink would log them twice.

    Attributes:
        config: the validated, resolved :class:`~tracker.session.config.Config`.
        given: the names of the options the user gave.

    Raises:
        ConfigurationError: an option is invalid (``EnergyTracker``'s messages), the log directory
            cannot be written (with ``check_dir``), or ``sinks`` is given where the framework logs the metrics.
        UnknownOptionError: a name is not an option the callback takes (also a ``TypeError``).
    """

    def __init__(
        self,
        options: Mapping[str, Any],
        where: str,
        *,
        sets: Collection[str] = (),
        defaults: Mapping[str, Any] | None = None,
        check_dir: bool = False,
        logs_metrics: str | None = None,
    ) -> None:
        given, hardware = split_options(options, where, [name for name in HARDWARE_OPTIONS if name not in sets])
        if logs_metrics and given.get("sinks"):
            raise ConfigurationError(
                f"{where}(sinks={given['sinks']!r}): the energy/* metrics already go to {logs_metrics}, so a sink "
                "would log them twice; leave sinks out and add the MLflow, TensorBoard or W&B logger there"
            )
        Hardware(**hardware)
        self.given = frozenset(options)
        self.config = Config(**{**(defaults or {}), **given}).resolve()
        if check_dir and self.config.log_dir is not None:
            check_log_dir(self.config.log_dir)  # a file, /proc, unwritable: fail here
        self._hardware = hardware

    def tracker(self, config: Config | None = None, **hardware: Any) -> EnergyTracker:
        """A new tracker of these options (``config``: a changed copy of :attr:`config`), not started.

        Args:
            config: the options to measure with (default :attr:`config`).
            **hardware: the :class:`~tracker.session.config.Hardware` options the callback sets
                (``sets``), or overrides (``sensors=[]`` for a rank that measures nothing).

        Raises:
            ConfigurationError: the hardware named does not exist, or the log directory cannot be written.
        """
        return EnergyTracker(config=config or self.config, **{**self._hardware, **hardware})
