"""Every user option, validated in one place before any training starts.

:class:`Config` is shared by :class:`~tracker.session.energy_tracker.EnergyTracker` and the integrations, so
a bad option gives the same message whichever way in is used: what was wrong, the value given,
and what to write instead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracker.errors import ConfigurationError
from tracker.measure.sampler import validate_interval
from tracker.sensors import KINDS, Sensor, positive_watts

DEFAULT_LOG_DIR = "energy_logs"


# Plausible magnitudes, W: a machine's CPUs at full load (8 sockets of 400 W fit), and its RAM (2 TB at the
# highest published 0.375 W/GB is 750 W; MEASUREMENT §3.3).
WATTS_RANGE = {"cpu_tdp_w": (1.0, 4000.0), "ram_w": (0.1, 1000.0)}
# A run directory's name: a file name in every file system (255 bytes), with room for the "-999" suffix.
MAX_RUN_NAME_BYTES = 200


def _watts(name: str, value: Any) -> float | None:
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


def _epochs(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(
            f"epochs={value!r}: give the number of epochs the run will have as a positive int, or None if unknown"
        )
    return value


def _measure(value: Any) -> tuple[str, ...]:
    kinds = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, (list, tuple, set)) else ()
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ConfigurationError(f"measure={value!r}: give some of {list(KINDS)}, e.g. measure=('gpu', 'cpu')")
    return kinds


def _gpu_devices(value: Any) -> tuple[int | str, ...] | None:
    if value is None:
        return None
    items = (value,) if isinstance(value, (int, str)) else tuple(value)
    bad = [v for v in items if isinstance(v, bool) or not isinstance(v, (int, str)) or (isinstance(v, int) and v < 0)]
    if bad:
        raise ConfigurationError(
            f"gpu_devices={value!r}: give CUDA device indices (0, 1, ...) or GPU UUIDs ('GPU-…'), or None for all"
        )
    return items


def _run_name(value: Any) -> str | None:
    if value is None:
        return None
    plain = "give a plain directory name such as 'baseline-lr3e-4'"
    if not isinstance(value, str) or not value or value.strip() != value or value in (".", ".."):
        raise ConfigurationError(f"run_name={value!r}: {plain}")
    shown = repr(value) if len(value) <= 60 else f"{value[:40]!r}… ({len(value)} characters)"
    bad = sorted({c for c in value if c in "/\\" or c == os.sep or not c.isprintable()})
    if bad:
        raise ConfigurationError(f"run_name={shown} holds {''.join(bad)!r}, which a directory name cannot; {plain}")
    size = len(value.encode("utf-8", errors="surrogatepass"))
    if size > MAX_RUN_NAME_BYTES:
        raise ConfigurationError(
            f"run_name={shown} is {size} bytes; a directory name may have at most {MAX_RUN_NAME_BYTES} here; {plain}"
        )
    return value


def _distributed(value: Any) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ConfigurationError(
            f"distributed={value!r}: give True (one job directory, one shard per rank), False (this process "
            "alone), or None to decide from the launcher's WORLD_SIZE"
        )
    return value


def _job_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(
            f"job_id={value!r}: give the id every process of the job shares as a non-empty str (e.g. the "
            "scheduler's job id), or None to take TORCHELASTIC_RUN_ID, SLURM_ARRAY_JOB_ID or SLURM_JOB_ID"
        )
    return value


def _jitter(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigurationError(f"jitter={value!r}: give a fraction of the interval between 0 and 1 (default 1.0)")
    return float(value)


@dataclass(frozen=True)
class Config:
    """The validated options of a tracker; see :class:`~tracker.session.energy_tracker.EnergyTracker` for each.

    Constructing it validates every field and resolves the carbon intensity (from codecarbon's
    bundled files, never the network).

    Raises:
        ConfigurationError: an option is invalid; the message names the value and what is valid.
    """

    log_dir: str | os.PathLike[str] | None = DEFAULT_LOG_DIR
    run_name: str | None = None
    country: str | None = None
    region: str | None = None
    cloud_provider: str | None = None
    cloud_region: str | None = None
    carbon_intensity_g_per_kwh: float | None = None
    intensity_csv: str | os.PathLike[str] | None = None
    pue: float = 1.0
    interval_s: float | None = None
    epochs: int | None = None
    gpu_devices: Sequence[int | str] | None = None
    cpu_tdp_w: float | None = None
    ram_w: float | None = None
    measure: Sequence[str] = KINDS
    power_trace: bool = False
    jitter: float = 1.0
    distributed: bool | None = None
    job_id: str | None = None
    intensity: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from tracker.carbon import intensity as carbon

        set_ = object.__setattr__
        set_(self, "run_name", _run_name(self.run_name))
        set_(self, "pue", carbon.validate_pue(self.pue))
        set_(self, "interval_s", None if self.interval_s is None else validate_interval(self.interval_s))
        set_(self, "epochs", _epochs(self.epochs))
        set_(self, "gpu_devices", _gpu_devices(self.gpu_devices))
        set_(self, "cpu_tdp_w", _watts("cpu_tdp_w", self.cpu_tdp_w))
        set_(self, "ram_w", _watts("ram_w", self.ram_w))
        set_(self, "measure", _measure(self.measure))
        set_(self, "jitter", _jitter(self.jitter))
        set_(self, "distributed", _distributed(self.distributed))
        set_(self, "job_id", _job_id(self.job_id))
        if not isinstance(self.power_trace, bool):
            raise ConfigurationError(f"power_trace={self.power_trace!r}: give True or False")
        if self.log_dir is not None and (
            not isinstance(self.log_dir, (str, os.PathLike)) or not os.fspath(self.log_dir).strip()
        ):
            raise ConfigurationError(
                f"log_dir={self.log_dir!r}: give a directory path such as 'runs/energy' ('.' for the current "
                "directory), or None to write nothing"
            )
        if self.intensity_csv is not None and not isinstance(self.intensity_csv, (str, os.PathLike)):
            raise ConfigurationError(f"intensity_csv={self.intensity_csv!r}: give a timestamp,g_per_kwh CSV's path")
        set_(
            self,
            "intensity",
            carbon.resolve_intensity(
                country=self.country,
                region=self.region,
                cloud_provider=self.cloud_provider,
                cloud_region=self.cloud_region,
                g_per_kwh=self.carbon_intensity_g_per_kwh,
                hourly_csv=None if self.intensity_csv is None else Path(self.intensity_csv),
            ),
        )


def check_hardware(
    *,
    sensors: Any = None,
    clock: Any = time.monotonic,
    nvml: Any = None,
    powercap_root: Any = None,
    rank: Any = 0,
    host: Any = None,
    exchange: Any = None,
    config: Any = None,
) -> None:
    """Check the options that inject hardware, clocks or distributed hooks (tests, custom hardware, DDP).

    Raises:
        ConfigurationError: naming the option and the value given, and what would be valid.
    """
    if config is not None and not isinstance(config, Config):
        raise ConfigurationError(f"config={config!r}: give a tracker.session.config.Config, or the options themselves")
    if sensors is not None:
        _sensors(sensors)
    for name, value, what in (("clock", clock, "monotonic seconds"), ("exchange", exchange, "every rank's usages")):
        if not callable(value) and (name == "clock" or value is not None):
            raise ConfigurationError(f"{name}={value!r} is not callable; give a function returning {what}")
    if nvml is not None and not callable(getattr(nvml, "nvmlInit", None)):
        raise ConfigurationError(f"nvml={nvml!r} is not a pynvml module (no nvmlInit); leave it out to use pynvml")
    is_path = isinstance(powercap_root, (str, os.PathLike))
    if powercap_root is not None and (not is_path or not Path(powercap_root).is_dir()):
        raise ConfigurationError(
            f"powercap_root={powercap_root!r} is not a directory; give the powercap sysfs class directory, "
            "normally '/sys/class/powercap', or leave it out"
        )
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
        raise ConfigurationError(f"rank={rank!r}: give this process's global rank, a non-negative int (0 alone)")
    if host is not None and (not isinstance(host, str) or not host):
        raise ConfigurationError(f"host={host!r}: give the host's name as a non-empty str, or None for this machine's")


def _sensors(sensors: Any) -> None:
    if isinstance(sensors, (str, bytes)) or not isinstance(sensors, (list, tuple)):
        raise ConfigurationError(f"sensors={sensors!r}: give a list of sensors (see tracker.sensors.Sensor)")
    names = [getattr(s, "name", None) for s in sensors]
    for sensor in sensors:
        if not isinstance(sensor, Sensor) or sensor.kind not in KINDS or not isinstance(sensor.name, str):
            raise ConfigurationError(
                f"sensors: {sensor!r} is not a Sensor; give objects with name, kind (one of {list(KINDS)}), "
                "method, info, read() and close(), such as tracker.testing.FakeSensor"
            )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigurationError(f"sensors: more than one is named {twice[0]!r}; each sensor needs its own name")
