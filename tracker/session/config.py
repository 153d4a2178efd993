"""Every option of a tracker, declared once, and validated in one place before any training starts.

Each option is a field of :class:`Config` (what to measure and how to account for it) or of
:class:`Hardware` (what to measure it with: injected sensors, clocks and a framework's placement), both
frozen keyword-only dataclasses, declared with :func:`option`: its default, and in the field's
metadata its validator, its help text and its command-line flag. Everything else derives from
these fields (``dataclasses.fields``):

- ``Config(...)`` and ``Hardware(...)`` run each field's validator (a bad option gives the same
  message whichever way in is used: what was wrong, the value given, and what to write instead);
- :class:`~tracker.session.energy_tracker.EnergyTracker` and the integrations accept exactly these
  names (:func:`split_options`; a callback through ``tracker.session.integration.CallbackOptions``),
  and the ``Args`` of ``EnergyTracker``'s docstring are
  :func:`options_doc`;
- ``energy-tracker run``'s flags are :func:`add_flags`, read back by :func:`options_from_flags`.

**Adding an option** is a one-place change: add a field to :class:`Config` (or :class:`Hardware`)
with ``option(default, check, "help")`` (``flag=Flag(...)`` to offer it on the command line, no
flag to keep it off), then read ``config.<name>`` where it is used. A check that spans several
options goes in ``__post_init__``. ``Config`` is a value: constructing it reads no file; what the
options name on this machine (the carbon intensity, the CPU scope) is worked out by
:meth:`Config.resolve`, which ``EnergyTracker`` calls at construction.
"""

import difflib
import functools
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from tracker.carbon.water import check_grid_water, check_wue
from tracker.errors import ConfigurationError, UnknownOptionError
from tracker.job.placement import Launch
from tracker.measure.edge import EDGE_DEADLINE_S
from tracker.measure.sampler import (
    BACKGROUND,
    COUNTER_INTERVAL_S,
    MANUAL,
    POLLED_INTERVAL_S,
    validate_interval,
    validate_jitter,
)
from tracker.sensors import KINDS, Sensor, cpu_scope, positive_watts
from tracker.sensors.discovery import DISCOVERY_TIMEOUT_S
from tracker.session.prometheus import check_gateway, check_port
from tracker.session.sinks import SINKS, check_sinks

DEFAULT_LOG_DIR = "energy_logs"

Check = Callable[[Any, str], Any]


class Flag(NamedTuple):
    """How an option is given to ``energy-tracker run``.

    Attributes:
        name: the flag, e.g. ``--pue``.
        type: converts the flag's text (``float``; ``None``: the text itself).
        metavar: the flag's value in ``--help``.
        switch: a flag without a value that sets the option to ``True``.
    """

    name: str
    type: Callable[[str], Any] | None = None
    metavar: str | None = None
    switch: bool = False


def option(default: Any, check: Check | None, help: str, flag: Flag | None = None) -> Any:
    """Declare an option: a dataclass field whose metadata holds its validator, help text and flag.

    Args:
        default: the value when the option is not given.
        check: ``check(value, name)`` returns the valid value or raises ``ConfigurationError``;
            ``None`` for an option checked elsewhere (the carbon options, by :meth:`Config.resolve`).
        help: one sentence for the docstring and ``--help``, with units.
        flag: how ``energy-tracker run`` takes it; ``None`` keeps it off the command line.
    """
    return field(default=default, metadata={"check": check, "help": help, "flag": flag})


class Options:
    """The base of :class:`Config` and :class:`Hardware`, frozen dataclasses of keyword-only options.

    ``Cls(**options)`` names an unknown option in an :class:`UnknownOptionError` (also a ``TypeError``)
    and then validates each option in declaration order (each field's ``check``).
    """

    def __new__(cls, *args: Any, **options: Any) -> Any:
        """Refuse an unknown option by name, before the dataclass's ``__init__`` would say less."""
        names = [f.name for f in fields(cls)]
        unknown = [name for name in options if name not in names]
        if unknown:
            raise unknown_option(cls.__name__, unknown[0], names)
        return super().__new__(cls)

    def __post_init__(self) -> None:
        for declared in fields(self):
            check = declared.metadata["check"]
            if check is not None:
                object.__setattr__(self, declared.name, check(getattr(self, declared.name), declared.name))

    def replace(self, **changes: Any) -> Any:
        """A new instance with ``changes`` (validated again, as the constructor does)."""
        return replace(self, **changes)  # type: ignore[type-var]


# Plausible magnitudes, W: a machine's CPUs at full load (8 sockets of 400 W fit), and its RAM (2 TB at the
# highest published 0.375 W/GB is 750 W; docs/measurement.md §3.3).
WATTS_RANGE = {"cpu_tdp_w": (1.0, 4000.0), "ram_w": (0.1, 1000.0)}
# A run directory's name: a file name in every file system (255 bytes), with room for the "-999" suffix.
MAX_RUN_NAME_BYTES = 200


def _watts(value: Any, name: str) -> float | None:
    if value is None:
        return None
    watts = positive_watts(value, name)
    low, high = WATTS_RANGE[name]
    if not low <= watts <= high:
        raise ConfigurationError(
            f"{name}={value!r} W is implausible: give the power of this machine's "
            f"{'CPUs at full load' if name == 'cpu_tdp_w' else 'RAM'} in watts, from {low:g} to {high:g} "
            f"(e.g. {name}={'165' if name == 'cpu_tdp_w' else '10'}), or None to estimate it"
        )
    return watts


def _epochs(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(
            f"{name}={value!r}: give the number of epochs the run will have as a positive int, or None if unknown"
        )
    return value


def _steps(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        what = "optimizer steps the run will have" if name == "total_steps" else "optimizer steps per row"
        raise ConfigurationError(f"{name}={value!r}: give the number of {what} as a positive int (e.g. "
                                 f"{name}={100_000 if name == 'total_steps' else 100}), or None")  # fmt: skip
    return value


def _row_seconds(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value == float("inf"):
        raise ConfigurationError(
            f"{name}={value!r}: give the seconds after which a row of the open epoch is written as a positive "
            f"number (e.g. {name}=600 for a row every 10 minutes), or None"
        )
    return float(value)


def _measure(value: Any, name: str) -> tuple[str, ...]:
    kinds = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, (list, tuple, set)) else ()
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ConfigurationError(f"{name}={value!r}: give some of {list(KINDS)}, e.g. {name}=('gpu', 'cpu')")
    return kinds


def _gpu_devices(value: Any, name: str) -> tuple[int | str, ...] | None:
    if value is None:
        return None
    items = (value,) if isinstance(value, (int, str)) else tuple(value)
    bad = [v for v in items if isinstance(v, bool) or not isinstance(v, (int, str)) or (isinstance(v, int) and v < 0)]
    if bad:
        raise ConfigurationError(
            f"{name}={value!r}: give CUDA device indices (0, 1, ...) or GPU UUIDs ('GPU-…'), or None for all"
        )
    return items


def _run_name(value: Any, name: str) -> str | None:
    if value is None:
        return None
    plain = "give a plain directory name such as 'baseline-lr3e-4'"
    if not isinstance(value, str) or not value or value.strip() != value or value in (".", ".."):
        raise ConfigurationError(f"{name}={value!r}: {plain}")
    shown = repr(value) if len(value) <= 60 else f"{value[:40]!r}… ({len(value)} characters)"
    bad = sorted({c for c in value if c in "/\\" or c == os.sep or not c.isprintable()})
    if bad:
        raise ConfigurationError(f"{name}={shown} holds {''.join(bad)!r}, which a directory name cannot; {plain}")
    size = len(value.encode("utf-8", errors="surrogatepass"))
    if size > MAX_RUN_NAME_BYTES:
        raise ConfigurationError(
            f"{name}={shown} is {size} bytes; a directory name may have at most {MAX_RUN_NAME_BYTES} here; {plain}"
        )
    return value


def _experiment(value: Any, name: str) -> str | None:
    if value is None or (isinstance(value, str) and value.strip()):
        return value
    raise ConfigurationError(f"{name}={value!r}: give the experiment's name as a non-empty str, e.g. 'resnet-sweep'")


def _tags(value: Any, name: str) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, (list, tuple)) else None
    if items is None or not all(isinstance(t, str) and t.strip() for t in items):
        raise ConfigurationError(f"{name}={value!r}: give labels as a list of non-empty str, e.g. ['lr=3e-4']")
    return items


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _none_or(kind: type, words: str) -> Check:
    """A check for ``None`` or a ``kind``; ``words`` say what to give."""

    def check(value: Any, name: str) -> Any:
        if value is not None and not isinstance(value, kind):
            raise ConfigurationError(f"{name}={value!r}: give {words}")
        return value

    return check


def _job_id(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(
            f"{name}={value!r}: give the id every process of the job shares as a non-empty str (e.g. the "
            "scheduler's job id), or None to take TORCHELASTIC_RUN_ID, SLURM_JOB_ID or the Kubernetes pod's name"
        )
    return value


def _pue(value: Any, name: str) -> float:
    from tracker.carbon.intensity import validate_pue

    return validate_pue(value)


def _cpu_scope(value: Any, name: str) -> str | None:
    return cpu_scope.check_scope(value)


def _interval(value: Any, name: str) -> float | None:
    return None if value is None else validate_interval(value, name)


def _timeout(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 600:
        raise ConfigurationError(f"{name}={value!r}: give seconds, more than 0 and at most 600 (e.g. {name}=10.0)")
    return float(value)


def _jitter(value: Any, name: str) -> float:
    return validate_jitter(value)


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name}={value!r}: give True or False")
    return value


# Embodied emissions' amortisation, from Luccioni et al. 2023, Section 4.1 (the figures IDRIS gave for
# Jean Zay): a 6-year replacement rate and 85 % average usage.
EMBODIED_LIFETIME_YEARS, EMBODIED_UTILISATION = 6.0, 0.85


def _lifetime(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 30:
        raise ConfigurationError(
            f"{name}={value!r}: give the years the hardware is in service, above 0 and at most 30 "
            f"(e.g. {name}={EMBODIED_LIFETIME_YEARS:g})"
        )
    return float(value)


def _utilisation(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigurationError(
            f"{name}={value!r}: give the share of its lifetime the hardware is in use, above 0 and at most 1 "
            f"(e.g. {name}={EMBODIED_UTILISATION:g} for 85 %)"
        )
    return float(value)


def unknown_option(where: str, name: str, accepted: Sequence[str]) -> UnknownOptionError:
    """``EnergyTracker(countyr=...) is not an option; did you mean country? (give some of: ...)``."""
    close = difflib.get_close_matches(name, accepted, n=1)
    given, names = f"{where}({name}=...) is not an option", ", ".join(accepted)
    if close:
        return UnknownOptionError(f"{given}; did you mean {close[0]}? (give some of: {names})")
    return UnknownOptionError(f"{given}; give some of: {names}")


def _number_or_text(text: str) -> float | str:
    """A flag's text as a number when it reads as one (``--wue 0.5``), else as it is (``--wue aws:eu-west-1``)."""
    try:
        return float(text)
    except ValueError:
        return text


def _optional_path(text: str) -> str | None:
    """``--log-dir``'s text: ``None`` (any case) means None, to write nothing, as the option's help says."""
    return None if text.strip().lower() == "none" else text


def _path(what: str) -> Check:
    def check(value: Any, name: str) -> Any:
        if value is not None and (not isinstance(value, (str, os.PathLike)) or not os.fspath(value).strip()):
            raise ConfigurationError(f"{name}={value!r}: give {what}")  # '' would silently mean the current directory
        return value

    return check


def _device_list(text: str) -> tuple[int | str, ...]:
    return tuple(int(d) if d.isdigit() else d for d in _comma_list(text))


@dataclass(frozen=True, kw_only=True)
class Config(Options):
    """The validated options of a tracker: what to measure and how to account for it.

    Constructing it validates every field and reads nothing; :meth:`resolve` works out the carbon
    intensity (from codecarbon's bundled files, never the network) and the CPU scope.

    Raises:
        ConfigurationError: an option is invalid; the message names the value and what is valid.
    """

    log_dir: str | os.PathLike[str] | None = option(
        DEFAULT_LOG_DIR,
        _path("a directory path such as 'runs/energy' ('.' for the current directory), or None to write nothing"),
        f"where run directories are created (default {DEFAULT_LOG_DIR}); None writes nothing.",
        Flag("--log-dir", _optional_path, "DIR|None"),
    )
    run_name: str | None = option(
        None,
        _run_name,
        "the run directory's name (default <UTC time>-<host>-<pid>; made unique).",
        Flag("--run-name"),
    )
    country: str | None = option(
        None,
        None,
        "ISO 3166 alpha-3 or alpha-2 code of the grid, for its carbon intensity (default: "
        "ENERGY_TRACKER_COUNTRY, else the time zone's country, else the world average).",
        Flag("--country"),
    )
    region: str | None = option(None, None, "a sub-national region of country (e.g. CA, a US state).", Flag("--region"))
    cloud_provider: str | None = option(
        None,
        None,
        "a cloud provider, with cloud_region, for its region's intensity (e.g. gcp).",
        Flag("--cloud-provider"),
    )
    cloud_region: str | None = option(
        None, None, "the cloud provider's region (e.g. europe-west1).", Flag("--cloud-region")
    )
    carbon_intensity_g_per_kwh: float | None = option(
        None, None, "an explicit carbon intensity, g CO2e/kWh.", Flag("--carbon-intensity", float, "G_PER_KWH")
    )
    intensity_csv: str | os.PathLike[str] | None = option(
        None,
        _path("a timestamp,g_per_kwh CSV's path"),
        "an hourly timestamp,g_per_kwh CSV covering the run, applied to each row's hours.",
        Flag("--intensity-csv"),
    )
    pue: float = option(
        1.0,
        _pue,
        "power usage effectiveness of the facility, >= 1.0 (default 1.0: what the machine draws).",
        Flag("--pue", float),
    )
    water: bool = option(
        False,
        _flag,
        "count the run's operational water consumption, L (Li et al. 2023): on-site cooling (wue_l_per_kwh) and "
        "off-site generation (grid_water_l_per_kwh, else the grid country's bundled figure); a term with no "
        "figure is not counted. Giving either figure turns it on too.",
        Flag("--water", switch=True),
    )
    wue_l_per_kwh: float | str | None = option(
        None,
        check_wue,
        "the facility's on-site water usage effectiveness, L per kWh of IT energy (0 for a room cooled without "
        "water), or a cloud region whose published WUE the bundled table holds (e.g. 'aws:eu-west-1'); default: "
        "the cloud_region's published figure where the table has one.",
        Flag("--wue", _number_or_text, "L_PER_KWH|PROVIDER:REGION"),
    )
    grid_water_l_per_kwh: float | None = option(
        None,
        check_grid_water,
        "the water the grid's generation consumes, L per kWh delivered (default: the grid country's figure "
        "in the bundled table, where it has one).",
        Flag("--grid-water", float, "L_PER_KWH"),
    )
    embodied: bool = option(
        False,
        _flag,
        "also count embodied emissions (each GPU's and the host's manufacturing footprint, from the bundled "
        "table tracker/carbon/data/embodied.csv, amortised over the row's hours) in the embodied_co2_kg "
        "columns, beside co2_kg (operational), never in it.",
        Flag("--embodied", switch=True),
    )
    embodied_lifetime_years: float = option(
        EMBODIED_LIFETIME_YEARS,
        _lifetime,
        f"years the hardware is in service, over which its footprint is spread (default {EMBODIED_LIFETIME_YEARS:g}, "
        "the replacement rate in Luccioni et al. 2023, Section 4.1).",
        Flag("--embodied-lifetime-years", float, "YEARS"),
    )
    embodied_utilisation: float = option(
        EMBODIED_UTILISATION,
        _utilisation,
        f"the share of its lifetime the hardware is in use, above 0 and at most 1 (default {EMBODIED_UTILISATION:g}, "
        "the average usage in Luccioni et al. 2023, Section 4.1).",
        Flag("--embodied-utilisation", float, "SHARE"),
    )
    interval_s: float | None = option(
        None,
        _interval,
        f"seconds between background readings (default {COUNTER_INTERVAL_S} with energy counters, "
        f"{POLLED_INTERVAL_S} when a GPU has only polled power).",
        Flag("--interval-s", float),
    )
    epochs: int | None = option(None, _epochs, "the number of epochs, for the forecast of the whole run.")
    total_steps: int | None = option(
        None,
        _steps,
        "the number of optimizer steps the run will have, for the forecast of the whole run from the step "
        "rate (counted with step(); Lightning and Hugging Face: max_steps).",
        Flag("--total-steps", int),
    )
    row_every_n_steps: int | None = option(
        None,
        _steps,
        "write the open epoch's energy as a row every this many optimizer steps (counted with step()), "
        "so a long epoch has rows as it runs; the epoch is the sum of its rows.",
        Flag("--row-every-n-steps", int),
    )
    row_every_s: float | None = option(
        None,
        _row_seconds,
        "write the open epoch's energy as a row at the first step() this many seconds after the row "
        "opened, s; with row_every_n_steps, whichever comes first.",
        Flag("--row-every-s", float),
    )
    gpu_devices: Sequence[int | str] | None = option(
        None,
        _gpu_devices,
        "measure only these CUDA devices, indices or GPU UUIDs (default: all visible).",
        Flag("--gpu-devices", _device_list, "LIST"),
    )
    cpu_tdp_w: float | None = option(
        None, _watts, "the CPU's power in W for the estimate when RAPL is unreadable.", Flag("--cpu-tdp-w", float)
    )
    ram_w: float | None = option(None, _watts, "the RAM's power in W instead of the RAM model.", Flag("--ram-w", float))
    measure: Sequence[str] = option(
        KINDS,
        _measure,
        f"which kinds to measure, some of {','.join(KINDS)} (default: all).",
        Flag("--measure", _comma_list, "KINDS"),
    )
    power_trace: bool = option(
        False, _flag, "also write every reading to power.csv.", Flag("--power-trace", switch=True)
    )
    jitter: float = option(
        1.0,
        _jitter,
        "how much of each sampling slot the reading time is spread over at random, 0 to 1 (default 1: "
        "stratified random sampling, which keeps polled power from aliasing with a periodic load).",
    )
    distributed: bool | None = option(
        None,
        _none_or(
            bool,
            "True (one job directory, one shard per rank), False (this process alone), or None to decide "
            "from the launcher's WORLD_SIZE",
        ),
        "True: a rank of a distributed job (one job directory, a shard per rank, each GPU counted once "
        "and CPU and RAM once per node, see tracker.job.placement); False: this process alone; "
        "None (default): True when the launcher's WORLD_SIZE is above 1 (torchrun, accelerate, deepspeed).",
    )
    job_id: str | None = option(
        None,
        _job_id,
        "what every process of the job shares; every row's job_id column, names the job directory and merges "
        "the ranks that share it in reports (default TORCHELASTIC_RUN_ID, <SLURM_ARRAY_JOB_ID>_<SLURM_ARRAY_TASK_ID>, "
        "SLURM_JOB_ID, POD_NAME, or HOSTNAME inside Kubernetes).",
    )
    experiment: str | None = option(
        None,
        _experiment,
        "the experiment this run belongs to (like codecarbon's project_name): report groups and totals "
        "runs by it (default: the directory that holds the runs).",
        Flag("--experiment"),
    )
    tags: Sequence[str] = option(
        (),
        _tags,
        "labels of this run (e.g. lr=3e-4 and seed=1), written to run.json and shown by report.",
        Flag("--tags", _comma_list, "A,B"),
    )
    cpu_scope: str | None = option(
        None,
        _cpu_scope,
        "whose CPU energy: 'machine' (the whole CPU, other jobs' load included) or 'process' (this process "
        "tree's share of it, by CPU time); default 'process' when a cgroup CPU quota or an affinity mask "
        "confines the run to part of the machine, else 'machine'.",
        Flag("--cpu-scope", None, "machine|process"),
    )
    sinks: Sequence[Any] = option(
        (),
        check_sinks,
        f"send each row's energy/* metrics to these experiment trackers, some of {', '.join(SINKS)} (each an "
        "extra), or sink objects for their settings (tracker.MLflowSink(tracking_uri=...)); off a thread of "
        "their own. Lightning and Hugging Face log energy/* to their own loggers instead.",
        Flag("--sinks", _comma_list, "NAMES"),
    )
    prometheus_port: Any = option(
        None,
        check_port,
        "serve each row's energy (hw_energy_joules_total per device), CO2e and power to Prometheus on this port "
        "(or 'HOST:PORT'); each rank of a launched job on port + its local rank. Off by default: no socket "
        "is opened unless given. Needs the prometheus extra.",
        Flag("--prometheus-port", None, "PORT"),
    )
    prometheus_pushgateway: str | None = option(
        None,
        check_gateway,
        "push the same series to this Prometheus push gateway at each row and at the end (batch jobs), "
        "e.g. 'http://127.0.0.1:9091'.",
        Flag("--prometheus-pushgateway", None, "URL"),
    )
    discovery_timeout_s: float = option(
        DISCOVERY_TIMEOUT_S,
        _timeout,
        f"seconds the GPU driver is waited for at construction (default {DISCOVERY_TIMEOUT_S:g}); past them a hung "
        "driver leaves the GPUs unmeasured, with a warning. Raise it where the driver initialises slowly.",
    )

    def resolve(self) -> "Config":
        """Resolve what the options name on this machine, reading files; returns ``self``.

        The CPU scope (cgroup quota, affinity) and the grid's carbon intensity (codecarbon's bundled
        files, an hourly CSV, the time zone) are worked out here, once per instance, so that the
        start-up line and every row agree on them. ``EnergyTracker`` and the integrations call it at
        construction; constructing a ``Config`` reads nothing.

        Raises:
            ConfigurationError: a carbon option is invalid or unknown (the value and what to write instead).
        """
        _ = self.cpu_scope_choice, self.intensity, self.water_terms
        return self

    @functools.cached_property
    def cpu_scope_choice(self) -> tuple[str, str]:
        """The CPU scope in effect (``machine`` or ``process``) and why (see :meth:`resolve`)."""
        return cpu_scope.resolve_scope(self.cpu_scope, cpu_scope.confinement())

    @functools.cached_property
    def intensity(self) -> Any:
        """The grid's carbon intensity, a ``tracker.carbon.intensity.Intensity`` (see :meth:`resolve`)."""
        from tracker.carbon.intensity import resolve_intensity

        return resolve_intensity(
            country=self.country,
            region=self.region,
            cloud_provider=self.cloud_provider,
            cloud_region=self.cloud_region,
            g_per_kwh=self.carbon_intensity_g_per_kwh,
            hourly_csv=None if self.intensity_csv is None else Path(self.intensity_csv),
        )

    @functools.cached_property
    def water_terms(self) -> Any:
        """The water terms counted (a ``tracker.carbon.water.Water``), or ``None`` when water is not asked for.

        Water is asked for by ``water=True`` or by giving ``wue_l_per_kwh`` or ``grid_water_l_per_kwh``;
        the bundled table is read then, once.
        """
        if not (self.water or self.wue_l_per_kwh is not None or self.grid_water_l_per_kwh is not None):
            return None
        from tracker.carbon.water import resolve_water

        cloud = f"{self.cloud_provider}:{self.cloud_region}" if self.cloud_provider and self.cloud_region else None
        wue, grid = self.wue_l_per_kwh, self.grid_water_l_per_kwh
        return resolve_water(wue=wue, grid_water=grid, country=self.intensity.country, cloud=cloud)


def _callable(returns: str, optional: bool) -> Check:
    def check(value: Any, name: str) -> Any:
        if not callable(value) and not (optional and value is None):
            raise ConfigurationError(f"{name}={value!r} is not callable; give a function returning {returns}")
        return value

    return check


def _sensors(sensors: Any, name: str) -> Any:
    if sensors is None:
        return None
    if isinstance(sensors, (str, bytes)) or not isinstance(sensors, (list, tuple)):
        raise ConfigurationError(f"{name}={sensors!r}: give a list of sensors (see tracker.sensors.Sensor)")
    for sensor in sensors:
        if not isinstance(sensor, Sensor) or sensor.kind not in KINDS or not isinstance(sensor.name, str):
            raise ConfigurationError(
                f"{name}: {sensor!r} is not a Sensor; give objects with name, kind (one of {list(KINDS)}), "
                "method, info, read() and close(), such as tracker.testing.FakeSensor"
            )
    names = [s.name for s in sensors]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigurationError(f"{name}: more than one is named {twice[0]!r}; each sensor needs its own name")
    return sensors


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _nvml(value: Any, name: str) -> Any:
    if value is not None and not callable(getattr(value, "nvmlInit", None)):
        raise ConfigurationError(f"{name}={value!r} is not a pynvml module (no nvmlInit); leave it out to use pynvml")
    return value


def _sysfs_root(normally: str) -> Callable[[Any, str], Any]:
    """The check of an injected sysfs class directory (``normally`` the real one): a directory, or None."""

    def check(value: Any, name: str) -> Any:
        is_path = isinstance(value, (str, os.PathLike))
        if value is not None and (not is_path or not Path(value).is_dir()):
            raise ConfigurationError(
                f"{name}={value!r} is not a directory; give the {normally.rsplit('/', 1)[-1]} sysfs class "
                f"directory, normally {normally!r}, or leave it out"
            )
        return value

    return check


def _rank(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{name}={value!r}: give this process's global rank, a non-negative int (0 alone)")
    return value


def _host(value: Any, name: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigurationError(
            f"{name}={value!r}: give the host's name as a non-empty str, or None for this machine's"
        )
    return value


def _sampling(value: Any, name: str) -> str:
    if value not in (BACKGROUND, MANUAL):
        raise ConfigurationError(
            f"{name}={value!r}: give {BACKGROUND!r} (a thread reads the sensors every interval_s) or {MANUAL!r} "
            "(no thread: the caller reads them with sample())"
        )
    return value


# The longest edge deadline accepted, s: beyond it a hung driver would hold the training thread visibly.
MAX_EDGE_DEADLINE_S = 10.0


def _edge_deadline(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_EDGE_DEADLINE_S:
        raise ConfigurationError(
            f"{name}={value!r}: give the seconds an epoch edge may wait for its sensor reads, above 0 and at most "
            f"{MAX_EDGE_DEADLINE_S:g} (default {EDGE_DEADLINE_S})"
        )
    return float(value)


@dataclass(frozen=True, kw_only=True, eq=False)
class Hardware(Options):
    """The options that inject hardware, clocks or distributed hooks (tests, custom hardware, DDP).

    Compared by identity (it holds functions and modules).

    Raises:
        ConfigurationError: an option is invalid, naming the value given and what would be valid.
    """

    sensors: Sequence[Sensor] | None = option(
        None, _sensors, "use these sensors instead of discovering the machine's (tests, custom hardware)."
    )
    clock: Callable[[], float] = option(
        time.monotonic,
        _callable("monotonic seconds", optional=False),
        "monotonic clock in seconds (tests pass a fake one; it must be the sensors' clock).",
    )
    nvml: Any = option(None, _nvml, "the pynvml module for GPU discovery (tests pass a fake).")
    powercap_root: str | os.PathLike[str] | None = option(
        None, _sysfs_root("/sys/class/powercap"), "the powercap sysfs directory for RAPL discovery (tests pass a fake)."
    )
    hwmon_root: str | os.PathLike[str] | None = option(
        None,
        _sysfs_root("/sys/class/hwmon"),
        "the hwmon sysfs directory where the node's ACPI power meter is looked for (tests pass a fake).",
    )
    utc_clock: Callable[[], datetime] = option(
        _utc_now,
        _callable("the time as an aware UTC datetime", optional=False),
        "the wall clock, returning an aware UTC datetime, for the rows' times (tests pass a fake one).",
    )
    rank: int = option(
        0,
        _rank,
        "this process's global rank, for devices.csv in distributed runs (the launcher's RANK when distributed).",
    )
    host: str | None = option(None, _host, "this machine's name, for devices.csv (default: the node name).")
    on_row: Callable[[Any, Any], Any] | None = option(
        None,
        _callable("nothing (it is given each finished row)", optional=True),
        "called with each finished row, on_row(record, devices): its EpochRecord and a tuple of its "
        "DeviceRecords, on the thread that closed the row (keep it short); what it raises is one warning.",
    )
    launch: Launch | None = option(
        None,
        _none_or(
            Launch,
            "None (the launcher's variables say where this process sits) or the Launch a framework that "
            "started the ranks itself builds (the Lightning callback does)",
        ),
        "where this process sits in its job when a framework that started the ranks says it (the Lightning "
        "callback, from its Trainer); default: from the launcher's variables (RANK, LOCAL_RANK, WORLD_SIZE).",
    )
    sampling: str = option(
        BACKGROUND,
        _sampling,
        f"{BACKGROUND!r} (default): a thread reads the sensors every interval_s; {MANUAL!r}: no thread, the "
        "sensors are read at epoch and phase edges and when EnergyTracker.sample() is called (tests on a fake "
        "clock, a loop that samples itself), interval_s then being how often the caller samples.",
    )
    edge_deadline_s: float = option(
        EDGE_DEADLINE_S,
        _edge_deadline,
        f"the longest an epoch or phase edge waits for its sensor reads, s (default {EDGE_DEADLINE_S}); a read "
        "that returns later counts as a background reading (tests on a loaded machine give more).",
    )


CONFIG_OPTIONS = tuple(f.name for f in fields(Config))
HARDWARE_OPTIONS = tuple(f.name for f in fields(Hardware))


def split_options(
    options: Mapping[str, Any], where: str, hardware: Iterable[str] = HARDWARE_OPTIONS
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split keyword options into :class:`Config`'s and :class:`Hardware`'s.

    Args:
        options: the keyword arguments given.
        where: who takes them, for the message (``"EnergyTracker"``).
        hardware: the :class:`Hardware` options ``where`` accepts (an integration sets some itself).

    Raises:
        UnknownOptionError: a name is neither (also a ``TypeError``, as Python's own would be).
    """
    accepted = (*CONFIG_OPTIONS, *hardware)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise unknown_option(where, unknown[0], accepted)
    config = {k: v for k, v in options.items() if k in CONFIG_OPTIONS}
    return config, {k: v for k, v in options.items() if k not in CONFIG_OPTIONS}


def resolve_config(config: Any, options: Mapping[str, Any]) -> Config:
    """``config`` when given alone, else a :class:`Config` of ``options``.

    Raises:
        ConfigurationError: ``config`` is not a :class:`Config`, or it is given together with options.
    """
    if config is None:
        return Config(**options)
    if not isinstance(config, Config):
        raise ConfigurationError(f"config={config!r}: give a tracker.Config, or the options themselves")
    if options:
        given = ", ".join(f"{k}=" for k in options)
        raise ConfigurationError(
            f"config= given together with {given}: give either config= or the options, not both "
            f"(e.g. config.replace({next(iter(options))}=...))"
        )
    return config


def option_help(name: str) -> str:
    """The help text of the :class:`Config` option ``name``.

    Raises:
        KeyError: ``name`` is not an option of :class:`Config`.
    """
    return {f.name: f for f in fields(Config)}[name].metadata["help"]


def options_doc(indent: str = "        ") -> str:
    """The ``Args`` lines of every option, from their help texts (Google style)."""
    declared = [*fields(Config), *fields(Hardware)]
    return "\n".join(f"{indent}{o.name}: {o.metadata['help']}" for o in declared)


def add_flags(parser: Any) -> None:
    """Add a flag to ``parser`` (argparse) for every option that declares one.

    A flag not given is left out of the parsed namespace, so that the option keeps its default.
    """
    import argparse

    for declared in fields(Config):
        flag = declared.metadata["flag"]
        if flag is None:
            continue
        kwargs: dict[str, Any] = {"dest": declared.name, "default": argparse.SUPPRESS}
        kwargs["help"] = declared.metadata["help"]
        if flag.switch:
            kwargs["action"] = "store_true"
        else:
            kwargs.update(type=flag.type or str, metavar=flag.metavar)
        parser.add_argument(flag.name, **kwargs)


def flag_names() -> dict[str, str]:
    """Each option that ``energy-tracker run`` takes, by name: its flag (``{"country": "--country", ...}``)."""
    return {f.name: f.metadata["flag"].name for f in fields(Config) if f.metadata["flag"] is not None}


def options_from_flags(namespace: Any) -> dict[str, Any]:
    """The options given as flags (:func:`add_flags`), by option name."""
    return {name: value for name, value in vars(namespace).items() if name in CONFIG_OPTIONS}
