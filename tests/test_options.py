"""Every option is declared once (tracker.session.config); the tracker, integrations, docs and CLI follow."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from integrations.loop import EnergyLoopCallback
from tests.helpers import PATIENT
from tracker import EnergyTracker, cli
from tracker.errors import ConfigurationError, UnknownOptionError
from tracker.measure.sampler import POLLED_INTERVAL_S
from tracker.session.config import CONFIG_OPTIONS, HARDWARE_OPTIONS, Config, Hardware, add_flags, options_from_flags
from tracker.testing import FakeSensor, steady


def sensor():
    return FakeSensor("gpu:0", "gpu", steady(100.0))


def test_config_given_with_options_is_an_error_that_names_them():
    config = Config(log_dir=None, carbon_intensity_g_per_kwh=300.0)
    with pytest.raises(ConfigurationError, match=r"config= given together with pue="):
        EnergyTracker(config=config, pue=2, sensors=[sensor()])
    with pytest.raises(ConfigurationError, match=r"log_dir="):
        EnergyTracker("runs", config=config, sensors=[sensor()])


def test_config_alone_and_hardware_options_beside_it_are_accepted():
    config = Config(log_dir=None, carbon_intensity_g_per_kwh=300.0, pue=1.5)
    energy = EnergyTracker(config=config, sensors=[sensor()], rank=0, **PATIENT)
    assert energy.config is config


def test_every_option_is_in_the_docstring_with_its_help():
    doc = EnergyTracker.__doc__ or ""
    for declared in [*dataclasses.fields(Config), *dataclasses.fields(Hardware)]:
        assert f"{declared.name}: {declared.metadata['help']}" in doc


def test_an_unknown_option_names_itself_and_is_a_type_error_as_python_would_raise():
    for build in (lambda: EnergyTracker(cuntry="DEU"), lambda: EnergyLoopCallback(cuntry="DEU")):
        with pytest.raises(UnknownOptionError, match="cuntry") as raised:
            build()
        assert isinstance(raised.value, TypeError)


def test_every_flag_is_an_option_and_gives_what_config_takes():
    parser = argparse.ArgumentParser()
    add_flags(parser)
    args = parser.parse_args(
        ["--pue", "1.2", "--gpu-devices", "0,GPU-abc", "--measure", "gpu,cpu", "--power-trace", "--interval-s", "0.5"]
    )
    given = options_from_flags(args)
    assert given == {
        "pue": 1.2,
        "gpu_devices": (0, "GPU-abc"),
        "measure": ("gpu", "cpu"),
        "power_trace": True,
        "interval_s": 0.5,
    }
    assert options_from_flags(parser.parse_args([])) == {}  # not given: Config's default
    assert set(given) <= set(CONFIG_OPTIONS)


def test_run_help_states_the_polled_interval_of_the_code(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    assert f"{POLLED_INTERVAL_S} when a GPU has only polled power" in " ".join(capsys.readouterr().out.split())


def test_options_are_config_or_hardware_never_both():
    assert not set(CONFIG_OPTIONS) & set(HARDWARE_OPTIONS)
    assert "config" not in CONFIG_OPTIONS + HARDWARE_OPTIONS


def test_jitter_is_validated_once_with_one_message():
    from tracker.measure.sampler import Sampler

    with pytest.raises(ConfigurationError) as by_config:
        Config(jitter=1.5)
    with pytest.raises(ConfigurationError) as by_sampler:
        Sampler([], lambda readings: None, jitter=1.5)
    assert str(by_config.value) == str(by_sampler.value)


def test_options_are_frozen_compared_by_value_and_replaced_with_validation():
    config = Config(log_dir=None, carbon_intensity_g_per_kwh=300.0, tags=["a"])
    with pytest.raises(dataclasses.FrozenInstanceError, match="pue"):
        config.pue = 2.0
    assert config == Config(log_dir=None, carbon_intensity_g_per_kwh=300.0, tags=("a",))
    changed = config.replace(pue=1.5)
    assert (changed.pue, config.pue, changed.tags, changed.intensity.g_per_kwh) == (1.5, 1.0, ("a",), 300.0)
    assert hash(changed) == hash(config.replace(pue=1.5)) and changed != config
    with pytest.raises(ConfigurationError, match="pue"):
        config.replace(pue=0.5)
    with pytest.raises(UnknownOptionError, match=r"Config\(cuntry=\.\.\.\) is not an option"):
        Config(cuntry="DEU")


def test_every_option_is_declared_once_in_order_with_its_name():
    declared = {f.name: f for f in dataclasses.fields(Config)}
    assert CONFIG_OPTIONS == tuple(declared) and CONFIG_OPTIONS[:2] == ("log_dir", "run_name")
    assert HARDWARE_OPTIONS == tuple(f.name for f in dataclasses.fields(Hardware)) and "sensors" in HARDWARE_OPTIONS
    assert declared["pue"].metadata["flag"].name == "--pue" and declared["pue"].default == 1.0


def test_options_are_validated_in_declaration_order():
    with pytest.raises(ConfigurationError, match=r"^log_dir="):
        Config(pue=0.5, log_dir="")
    with pytest.raises(ConfigurationError, match=r"^pue="):
        Config(jitter=2.0, pue=0.5)


def test_constructing_a_config_reads_nothing_resolving_it_names_the_bad_value():
    config = Config(log_dir=None, intensity_csv="/nonexistent/hours.csv")
    assert config.intensity_csv == "/nonexistent/hours.csv"  # a value: no file is read until resolve()
    with pytest.raises(ConfigurationError, match="hours.csv"):
        config.resolve()
    with pytest.raises(ConfigurationError, match="'ZZZ'"):
        EnergyTracker(config=Config(log_dir=None, country="ZZZ"), sensors=[sensor()])
    resolved = Config(log_dir=None, country="DE").resolve()
    assert (resolved.intensity.country, resolved.intensity.method) == ("DEU", "argument")
