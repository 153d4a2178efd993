"""The measurement methods: the one registry of how a figure can be obtained.

Every sensor's ``method`` is a name from :data:`METHODS`. Its entry says which kind it serves,
whether the figure is *measured* (a hardware counter or power reading) or *estimated* (a model
or a TDP), the uncertainty band applied to its energy, and the words the paper paragraph uses.
Accounting, the report, the paper paragraph, ``energy-tracker devices``, the summary and the start line read
this table and nothing else; a new sensor backend adds one line here.

========================  ===========  ======================================================
method                    band         why
========================  ===========  ======================================================
``energy_counter``        ±5 %         NVML sensor gain, Yang et al. SC'24 (arXiv:2312.02741)
``power_polling``         ±5 % + 3σ    the same gain, plus the trapezoid's sampling error (meter)
``power_instant``         ±5 % + 3σ    the same (NVML_FI_DEV_POWER_INSTANT, polled)
``power_samples``         ±5 % + edges the same gain, plus the bound at each edge of what the driver
                                       had not sampled yet (``Reading.energy_error_j``)
``power_average``         ±5 % + edges the same gain, plus the bound on the trailing mean's lag at each edge
``rapl``, ``rapl_dram``   ±10 %        Khan et al. 2018 (RAPL vs plug power), judgement
``tdp_estimate``          ±40 %        Fischer 2025 (arXiv:2509.22092): TDP models err up to 40 %
``tdp_user``              ±40 %        the same model with the user's TDP
``tdp_default``           ×0.5 – ×2    unknown CPU: a per-thread default, wider still
``ram_model``/``ram_user``×0.5 – ×2    published models span 0.08–0.375 W/GB (docs/measurement.md §3.3)
``acpi_power_meter``      ×0.5 – ×2    the node's meter (hwmon ``power_meter``): no accuracy is documented for
                                       ACPI meters as a class (each declares its own, ``power1_accuracy``, kept
                                       in its info), so the rule for an undocumented figure; never in
                                       ``energy_kwh`` (docs/measurement.md, the node's own meter)
anything else             ×0.5 – ×2    an unknown method is treated as an estimate
========================  ===========  ======================================================
"""

from typing import NamedTuple

from tracker.energy import ABSENT as ABSENT  # a kind no sensor measured, in the ``<kind>_method`` columns
from tracker.sensors import CPU, GPU, NODE, RAM

ENERGY_COUNTER, POWER_POLLING = "energy_counter", "power_polling"
POWER_SAMPLES, POWER_INSTANT, POWER_AVERAGE = "power_samples", "power_instant", "power_average"
RAPL, RAPL_DRAM = "rapl", "rapl_dram"
TDP_ESTIMATE, TDP_USER, TDP_DEFAULT = "tdp_estimate", "tdp_user", "tdp_default"
RAM_MODEL, RAM_USER = "ram_model", "ram_user"
ACPI_POWER_METER = "acpi_power_meter"

DEFAULT_BAND = (0.50, 2.00)


class Method(NamedTuple):
    """One way of obtaining a component's energy.

    Attributes:
        name: what sensors carry in ``method`` and the logs in ``<kind>_method``.
        kind: the component it serves, ``gpu``, ``cpu`` or ``ram``, or ``node`` (the whole machine).
        measured: read from hardware (``True``) or estimated from a model (``False``).
        band: the low and high factors applied to its energy (before any sampling error).
        phrase: how the paper paragraph says it was obtained; may hold ``{tdp}``, ``{w_per_gib}``
            and ``{power_w}``, filled in from the sensor's info.
        short: how the run's first log line says it (an estimate in capitals, never read as measured).
        counter: its figure is a cumulative hardware counter, so an outage loses no energy (the next
            reading books it).
    """

    name: str
    kind: str
    measured: bool
    band: tuple[float, float]
    phrase: str
    short: str
    counter: bool = False


GPU_GAIN, RAPL_BAND, TDP_BAND = (0.95, 1.05), (0.90, 1.10), (0.60, 1.40)
METHODS = {m.name: m for m in (
    Method(ENERGY_COUNTER, GPU, True, GPU_GAIN, short="NVML energy counter", counter=True,
           phrase="measured with the GPU's built-in energy counter (NVIDIA NVML)"),
    Method(POWER_POLLING, GPU, True, GPU_GAIN, short="NVML power, sampled",
           phrase="measured by sampling the GPU's power draw through NVIDIA NVML and integrating it over time"),
    Method(POWER_SAMPLES, GPU, True, GPU_GAIN, short="NVML driver power samples",
           phrase="measured from the power samples the NVIDIA driver records, integrated over time"),
    Method(POWER_INSTANT, GPU, True, GPU_GAIN, short="NVML instant power, sampled",
           phrase="measured by sampling the GPU's instantaneous power through NVIDIA NVML and integrating it "
           "over time"),
    Method(POWER_AVERAGE, GPU, True, GPU_GAIN, short="NVML 1 s mean power, sampled",
           phrase="measured from the GPU's one-second average power through NVIDIA NVML, integrated over time"),
    Method(RAPL, CPU, True, RAPL_BAND, short="RAPL counter", counter=True,
           phrase="measured with the processor's RAPL energy counters"),
    Method(RAPL_DRAM, RAM, True, RAPL_BAND, short="RAPL DRAM counter", counter=True,
           phrase="measured with the memory's RAPL energy counters"),
    Method(TDP_ESTIMATE, CPU, False, TDP_BAND, short="ESTIMATE: utilisation x TDP",
           phrase="estimated from CPU utilisation and a thermal design power of {tdp}"),
    Method(TDP_USER, CPU, False, TDP_BAND, short="ESTIMATE: utilisation x your TDP",
           phrase="estimated from CPU utilisation and a thermal design power of {tdp} given by the authors"),
    Method(TDP_DEFAULT, CPU, False, DEFAULT_BAND, short="ESTIMATE: utilisation x a default TDP",
           phrase="estimated from CPU utilisation and an assumed thermal design power of {tdp}, the processor "
           "model not being in the TDP table"),
    Method(RAM_MODEL, RAM, False, DEFAULT_BAND, short="ESTIMATE: RAM power model",
           phrase="estimated at {w_per_gib} W per GiB of memory"),
    Method(RAM_USER, RAM, False, DEFAULT_BAND, short="ESTIMATE: your RAM power",
           phrase="estimated as a constant {power_w} given by the authors"),
    Method(ACPI_POWER_METER, NODE, True, DEFAULT_BAND, short="ACPI power meter (whole node, not added)",
           phrase="measured with the node's own ACPI power meter (Linux hwmon power_meter), integrated over time, "
           "and reported beside the components, not added to them"),
)}  # fmt: skip


def band(name: str) -> tuple[float, float]:
    """The low and high factors of a method's energy (an unknown method: ×0.5 – ×2)."""
    method = METHODS.get(name)
    return method.band if method else DEFAULT_BAND


def is_measured(name: str) -> bool:
    """Whether a method reads hardware; an unknown method counts as an estimate."""
    method = METHODS.get(name)
    return method is not None and method.measured


def labelled(method: str) -> str:
    """A ``+``-joined method as the summary and the report show it beside a figure, an estimate said as such.

    ``energy_counter``, ``tdp_default, estimated``, ``power_polling+tdp_estimate, partly estimated``.
    """
    measured = [is_measured(name) for name in method.split("+")]
    return method if all(measured) else f"{method}, {'partly ' if any(measured) else ''}estimated"


def phrase(name: str) -> str:
    """The paper's words for a method, with its ``{tdp}``-style placeholders unfilled."""
    method = METHODS.get(name)
    return method.phrase if method else f"estimated by the method {name!r}"


def is_counter(name: str) -> bool:
    """Whether a method's figure is a cumulative hardware counter (an outage loses no energy)."""
    method = METHODS.get(name)
    return method is not None and method.counter


def short(name: str) -> str:
    """The start line's words for a method (an unknown method: its name)."""
    method = METHODS.get(name)
    return method.short if method else name
