"""The table of bad ``EnergyTracker`` options shared by the bad-input tests (tracker, loop and Lightning)."""

from __future__ import annotations

import math

from tracker.errors import ConfigurationError
from tracker.testing import FakeSensor, steady


def sensor():
    return FakeSensor("gpu:0", "gpu", steady(100.0))


class NotASensor:
    name, kind = "gpu:9", "disk"


# (options, exception, text the message must contain); "{file}" and "{dir}" are filled in from `paths`.
OPTIONS = {
    "log_dir-file": ({"log_dir": "{file}"}, ConfigurationError, "{file}"),
    "log_dir-under-file": ({"log_dir": "{file}/energy"}, ConfigurationError, "{file}/energy"),
    "log_dir-proc": ({"log_dir": "/proc/self/energy-logs"}, ConfigurationError, "/proc/self/energy-logs"),
    "log_dir-type": ({"log_dir": 42}, ConfigurationError, "42"),
    "run_name-slash": ({"run_name": "a/b"}, ConfigurationError, "'a/b'"),
    "run_name-empty": ({"run_name": ""}, ConfigurationError, "run_name=''"),
    "run_name-dotdot": ({"run_name": ".."}, ConfigurationError, "'..'"),
    "run_name-type": ({"run_name": 7}, ConfigurationError, "run_name=7"),
    "country-unknown": ({"country": "ZZZ"}, ConfigurationError, "'ZZZ'"),
    "country-type": ({"country": 276}, ConfigurationError, "276"),
    "region-unknown": ({"country": "USA", "region": "XX"}, ConfigurationError, "'XX'"),
    "region-country-without": ({"country": "DEU", "region": "CA"}, ConfigurationError, "'CA'"),
    "cloud_provider-unknown": ({"cloud_provider": "nope", "cloud_region": "x"}, ConfigurationError, "'nope'"),
    "cloud_region-unknown": ({"cloud_provider": "gcp", "cloud_region": "mars-1"}, ConfigurationError, "'mars-1'"),
    "intensity-negative": ({"carbon_intensity_g_per_kwh": -1}, ConfigurationError, "-1"),
    "intensity-str": ({"carbon_intensity_g_per_kwh": "300"}, ConfigurationError, "'300'"),
    "intensity-nan": ({"carbon_intensity_g_per_kwh": math.nan}, ConfigurationError, "nan"),
    "intensity-inf": ({"carbon_intensity_g_per_kwh": math.inf}, ConfigurationError, "inf"),
    "intensity-bool": ({"carbon_intensity_g_per_kwh": True}, ConfigurationError, "True"),
    "intensity_csv-missing": ({"intensity_csv": "{dir}/missing.csv"}, ConfigurationError, "missing.csv"),
    "intensity_csv-dir": ({"intensity_csv": "{dir}"}, ConfigurationError, "{dir}"),
    "intensity_csv-type": ({"intensity_csv": 7}, ConfigurationError, "intensity_csv=7"),
    "intensity_csv-header": ({"intensity_csv": "{dir}/header.csv"}, ConfigurationError, "when,value"),
    "intensity_csv-value": ({"intensity_csv": "{dir}/value.csv"}, ConfigurationError, "'lots'"),
    "intensity_csv-negative": ({"intensity_csv": "{dir}/negative.csv"}, ConfigurationError, "'-3'"),
    "intensity_csv-gap": ({"intensity_csv": "{dir}/gap.csv"}, ConfigurationError, "2024-01-01T02:00Z"),
    "intensity_csv-minute": ({"intensity_csv": "{dir}/minute.csv"}, ConfigurationError, "2024-01-01T00:30Z"),
    "intensity_csv-fields": ({"intensity_csv": "{dir}/fields.csv"}, ConfigurationError, "'1'"),
    "intensity_csv-empty": ({"intensity_csv": "{dir}/empty.csv"}, ConfigurationError, "empty.csv"),
    "pue-below-1": ({"pue": 0.5}, ConfigurationError, "0.5"),
    "pue-zero": ({"pue": 0}, ConfigurationError, "pue=0"),
    "pue-str": ({"pue": "1.2"}, ConfigurationError, "'1.2'"),
    "pue-nan": ({"pue": math.nan}, ConfigurationError, "nan"),
    "pue-inf": ({"pue": math.inf}, ConfigurationError, "inf"),
    "wue-negative": ({"wue_l_per_kwh": -0.5}, ConfigurationError, "wue_l_per_kwh=-0.5"),
    "wue-str": ({"wue_l_per_kwh": "0.5"}, ConfigurationError, "'0.5'"),
    "wue-nan": ({"wue_l_per_kwh": math.nan}, ConfigurationError, "nan"),
    "wue-large": ({"wue_l_per_kwh": 50}, ConfigurationError, "wue_l_per_kwh=50"),
    "grid_water-negative": ({"grid_water_l_per_kwh": -1}, ConfigurationError, "grid_water_l_per_kwh=-1"),
    "grid_water-bool": ({"grid_water_l_per_kwh": True}, ConfigurationError, "True"),
    "water-str": ({"water": "yes"}, ConfigurationError, "'yes'"),
    "discovery-timeout-zero": ({"discovery_timeout_s": 0}, ConfigurationError, "discovery_timeout_s=0"),
    "discovery-timeout-str": ({"discovery_timeout_s": "1"}, ConfigurationError, "'1'"),
    "interval-zero": ({"interval_s": 0}, ConfigurationError, "interval_s=0"),
    "interval-small": ({"interval_s": 0.001}, ConfigurationError, "0.001"),
    "interval-large": ({"interval_s": 4000}, ConfigurationError, "4000"),
    "interval-str": ({"interval_s": "1"}, ConfigurationError, "'1'"),
    "interval-bool": ({"interval_s": True}, ConfigurationError, "True"),
    "epochs-zero": ({"epochs": 0}, ConfigurationError, "epochs=0"),
    "epochs-negative": ({"epochs": -3}, ConfigurationError, "-3"),
    "epochs-float": ({"epochs": 1.5}, ConfigurationError, "1.5"),
    "epochs-str": ({"epochs": "10"}, ConfigurationError, "'10'"),
    "total-steps-zero": ({"total_steps": 0}, ConfigurationError, "total_steps=0"),
    "row-every-n-steps-float": ({"row_every_n_steps": 2.5}, ConfigurationError, "row_every_n_steps=2.5"),
    "row-every-s-negative": ({"row_every_s": -1}, ConfigurationError, "row_every_s=-1"),
    "row-every-s-nan": ({"row_every_s": float("nan")}, ConfigurationError, "row_every_s=nan"),
    "gpu_devices-negative": ({"gpu_devices": [-1]}, ConfigurationError, "-1"),
    "gpu_devices-float": ({"gpu_devices": [1.5]}, ConfigurationError, "1.5"),
    "gpu_devices-bool": ({"gpu_devices": True}, ConfigurationError, "True"),
    "cpu_tdp_w-zero": ({"cpu_tdp_w": 0}, ConfigurationError, "cpu_tdp_w=0"),
    "cpu_tdp_w-negative": ({"cpu_tdp_w": -65}, ConfigurationError, "-65"),
    "cpu_tdp_w-str": ({"cpu_tdp_w": "65"}, ConfigurationError, "'65'"),
    "cpu_tdp_w-nan": ({"cpu_tdp_w": math.nan}, ConfigurationError, "nan"),
    "ram_w-negative": ({"ram_w": -6}, ConfigurationError, "-6"),
    "ram_w-inf": ({"ram_w": math.inf}, ConfigurationError, "inf"),
    "measure-unknown": ({"measure": ("gpu", "disk")}, ConfigurationError, "'disk'"),
    "measure-empty": ({"measure": ()}, ConfigurationError, "()"),
    "measure-type": ({"measure": 5}, ConfigurationError, "measure=5"),
    "measure-none": ({"measure": None}, ConfigurationError, "measure=None"),
    "power_trace-str": ({"power_trace": "yes"}, ConfigurationError, "'yes'"),
    "power_trace-int": ({"power_trace": 1}, ConfigurationError, "power_trace=1"),
    "embodied-str": ({"embodied": "yes"}, ConfigurationError, "embodied='yes'"),
    "embodied_lifetime_years-zero": ({"embodied_lifetime_years": 0}, ConfigurationError, "embodied_lifetime_years=0"),
    "embodied_lifetime_years-str": ({"embodied_lifetime_years": "6"}, ConfigurationError, "'6'"),
    "embodied_utilisation-above-1": ({"embodied_utilisation": 1.5}, ConfigurationError, "embodied_utilisation=1.5"),
    "embodied_utilisation-nan": ({"embodied_utilisation": math.nan}, ConfigurationError, "nan"),
    "jitter-negative": ({"jitter": -0.1}, ConfigurationError, "-0.1"),
    "jitter-large": ({"jitter": 1.5}, ConfigurationError, "1.5"),
    "jitter-str": ({"jitter": "0.5"}, ConfigurationError, "'0.5'"),
    "distributed-str": ({"distributed": "yes"}, ConfigurationError, "distributed='yes'"),
    "job_id-empty": ({"job_id": " "}, ConfigurationError, "job_id=' '"),
    "job_id-int": ({"job_id": 42}, ConfigurationError, "job_id=42"),
    "sensors-type": ({"sensors": 5}, ConfigurationError, "sensors=5"),
    "sensors-str": ({"sensors": "gpu"}, ConfigurationError, "'gpu'"),
    "sensors-not-a-sensor": ({"sensors": [NotASensor()]}, ConfigurationError, "NotASensor"),
    "sensors-same-name": ({"sensors": "twins"}, ConfigurationError, "'gpu:0'"),
    "clock-not-callable": ({"clock": 5}, ConfigurationError, "clock=5"),
    "clock-none": ({"clock": None}, ConfigurationError, "clock=None"),
    "utc_clock-not-callable": ({"utc_clock": 5}, ConfigurationError, "utc_clock=5"),
    "nvml-not-a-module": ({"nvml": "pynvml"}, ConfigurationError, "'pynvml'"),
    "powercap_root-missing": ({"powercap_root": "{dir}/no-powercap"}, ConfigurationError, "no-powercap"),
    "powercap_root-file": ({"powercap_root": "{file}"}, ConfigurationError, "{file}"),
    "powercap_root-type": ({"powercap_root": 3}, ConfigurationError, "powercap_root=3"),
    "rank-negative": ({"rank": -1}, ConfigurationError, "rank=-1"),
    "rank-str": ({"rank": "0"}, ConfigurationError, "'0'"),
    "rank-bool": ({"rank": True}, ConfigurationError, "rank=True"),
    "host-type": ({"host": 5}, ConfigurationError, "host=5"),
    "host-empty": ({"host": ""}, ConfigurationError, "host=''"),
    "launch-type": ({"launch": 5}, ConfigurationError, "launch=5"),
    "config-type": ({"config": {"pue": 1.0}}, ConfigurationError, "'pue'"),
    "unknown-option": ({"cuntry": "DEU"}, TypeError, "cuntry"),
}
HARDWARE = ("sensors", "clock", "utc_clock", "nvml", "powercap_root", "rank", "host", "launch", "config")


def fill(value, paths):
    if isinstance(value, str):
        return value.format(file=paths["file"], dir=paths["dir"])
    return value


def options_for(case, paths):
    options, error, needle = OPTIONS[case]
    options = {k: fill(v, paths) for k, v in options.items()}
    if options.get("sensors") == "twins":
        options["sensors"] = [sensor(), sensor()]
    return options, error, fill(needle, paths)


def defaults(options, paths):
    """What every case adds unless it is the option under test: no logs, a fake sensor, a fixed grid."""
    base = {"log_dir": None, "sensors": [sensor()], "carbon_intensity_g_per_kwh": 300.0}
    grid = {"country", "region", "cloud_provider", "cloud_region", "intensity_csv", "carbon_intensity_g_per_kwh"}
    if grid & set(options):
        base.pop("carbon_intensity_g_per_kwh")
    if {"nvml", "powercap_root"} & set(options):
        base.pop("sensors")
    if "config" in options:
        base = {}
    return {**base, **options}
