"""The fakes in ``tracker.testing`` held against the real vendor bindings, so a test on a fake means the real thing.

``pynvml`` (package ``nvidia-ml-py``) imports without a driver: its functions, constants, error
classes and structures are compared as objects. ``amdsmi`` loads ``libamd_smi.so`` when imported, so
its installed source is read with :mod:`ast` instead (function names and parameters, the keys of the
dicts it returns, exception classes, status codes, init flags), without loading the library.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
from pathlib import Path

import pytest

from tracker.testing.fake_amdsmi import fake_amdsmi
from tracker.testing.fake_nvml import FakeGpu, fake_pynvml

# The modules, not the functions of the same name that tracker.testing exports.
fake_amd = importlib.import_module("tracker.testing.fake_amdsmi")
fake_nvml = importlib.import_module("tracker.testing.fake_nvml")
# What the fakes add for tests: the fake object itself and the driver's wall clock of the sample buffer.
FAKE_ONLY = {"fake", "wall_clock"}
REPO = Path(__file__).resolve().parents[1]


# -- pynvml ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pynvml():
    return pytest.importorskip("pynvml")


@pytest.fixture(scope="module")
def fake():
    return fake_pynvml([FakeGpu()])


def _public(module) -> list[str]:
    return sorted(n for n in vars(module) if not n.startswith("__") and n not in FAKE_ONLY)


def _positional(function) -> tuple[int, int]:
    """How many positional arguments a function needs, and how many it takes."""
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = [p for p in inspect.signature(function).parameters.values() if p.kind in kinds]
    return sum(p.default is inspect.Parameter.empty for p in params), len(params)


def test_every_name_the_fake_nvml_defines_exists_in_nvidia_ml_py(fake, pynvml):
    missing = [name for name in _public(fake) if not hasattr(pynvml, name)]
    assert missing == []


def test_every_fake_nvml_function_takes_the_arguments_the_real_one_takes(fake, pynvml):
    for name in _public(fake):
        if not name.startswith("nvml") or not inspect.isfunction(getattr(pynvml, name)):
            continue
        real_needs, real_takes = _positional(getattr(pynvml, name))
        fake_needs, fake_takes = _positional(getattr(fake, name))
        # A call the real binding accepts with its required arguments is accepted by the fake, and the fake
        # accepts nothing the real binding would refuse.
        assert fake_needs == real_needs, name
        assert fake_takes <= real_takes, name


def test_fake_nvml_constants_have_the_real_values(fake, pynvml):
    constants = {n: v for n, v in vars(fake).items() if n.startswith("NVML_") and isinstance(v, int)}
    assert constants, "the fake defines NVML_* constants"
    assert {n: getattr(pynvml, n) for n in constants} == constants


def test_fake_nvml_errors_are_named_and_numbered_as_the_real_ones(pynvml):
    for name, error_class in fake_nvml.ERROR_CLASSES.items():
        real = getattr(pynvml, name)
        assert issubclass(real, pynvml.NVMLError), name
        code = next(c for c, cls in fake_nvml.NVMLError._valClassMapping.items() if cls is error_class)
        assert pynvml.NVMLError(code).__class__ is real, name
        assert isinstance(fake_nvml.NVMLError(code), error_class)


def test_fake_nvml_structures_have_fields_of_the_real_structures(pynvml):
    structures = [
        n for n in vars(fake_nvml) if n.startswith(("c_nvml", "nvml")) and isinstance(vars(fake_nvml)[n], type)
    ]
    assert structures
    for name in structures:
        real_fields = {field[0] for field in getattr(pynvml, name)._fields_}
        assert set(getattr(fake_nvml, name).__slots__) <= real_fields, name


# -- amdsmi ------------------------------------------------------------------------------------------------------------


def _amdsmi_source() -> Path:
    spec = importlib.util.find_spec("amdsmi")  # finds the package without importing it (which loads the library)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the amdsmi wheel is not installed (pip install -c constraints.txt -e '.[test]')")
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.fixture(scope="module")
def amdsmi_trees() -> dict[str, ast.Module]:
    package = _amdsmi_source()
    names = ("__init__", "amdsmi_interface", "amdsmi_exception", "amdsmi_wrapper")
    return {name: ast.parse((package / f"{name}.py").read_text(encoding="utf-8")) for name in names}


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}


def _classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _exported(init: ast.Module) -> set[str]:
    return {alias.name for node in ast.walk(init) if isinstance(node, ast.ImportFrom) for alias in node.names}


def _returned_keys(function: ast.FunctionDef) -> set[str]:
    """The string keys of every dict literal in a function: the dicts the binding builds and returns."""
    return {
        key.value
        for node in ast.walk(function)
        if isinstance(node, ast.Dict)
        for key in node.keys
        if isinstance(key, ast.Constant) and isinstance(key.value, str)
    }


def _assigned_ints(tree: ast.Module) -> dict[str, int]:
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, int):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    values[target.id] = node.value.value
    return values


def _fake_amd_functions() -> dict[str, object]:
    module = fake_amdsmi()
    return {n: f for n, f in vars(module).items() if n.startswith("amdsmi_") and inspect.ismethod(f)}


def test_every_fake_amdsmi_function_exists_in_the_binding_with_its_parameters(amdsmi_trees):
    real = _functions(amdsmi_trees["amdsmi_interface"])
    exported = _exported(amdsmi_trees["__init__"])
    for name, function in _fake_amd_functions().items():
        assert name in real and name in exported, name
        real_params = real[name].args
        needs = len(real_params.args) - len(real_params.defaults)
        fake_needs, fake_takes = _positional(function)
        assert (fake_needs, fake_takes) == (needs, len(real_params.args)), name


@pytest.mark.parametrize("name", ["amdsmi_get_energy_count", "amdsmi_get_power_info", "amdsmi_get_gpu_asic_info"])
def test_the_fake_amdsmi_returns_the_keys_the_binding_returns(amdsmi_trees, name):
    real_keys = _returned_keys(_functions(amdsmi_trees["amdsmi_interface"])[name])
    smi = fake_amd.FakeAmdSmi([fake_amd.FakeAmdGpu()])
    smi.amdsmi_init()
    handle = smi.amdsmi_get_processor_handles()[0]
    assert set(getattr(smi, name)(handle)) <= real_keys


def test_every_key_the_amd_sensor_reads_is_one_the_binding_returns(amdsmi_trees):
    functions = _functions(amdsmi_trees["amdsmi_interface"])
    returned = set().union(*(_returned_keys(functions[n]) for n in _fake_amd_functions()))
    sensor = ast.parse((REPO / "tracker" / "sensors" / "amd.py").read_text(encoding="utf-8"))
    read = {
        node.args[0].value
        for node in ast.walk(sensor)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    } | {
        node.slice.value
        for node in ast.walk(sensor)
        if isinstance(node, ast.Subscript)
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, str)
    }
    legacy = {"power"}  # the accumulator's name before amdsmi 6.4, still read from older bindings
    assert read - legacy <= returned


def test_the_fake_amdsmi_exceptions_are_the_bindings(amdsmi_trees):
    real = _classes(amdsmi_trees["amdsmi_exception"])
    exported = _exported(amdsmi_trees["__init__"])
    for name in ("AmdSmiException", "AmdSmiLibraryException", "AmdSmiRetryException", "AmdSmiTimeoutException",
                 "AmdSmiParameterException"):  # fmt: skip
        fake_class = getattr(fake_amd, name)
        assert name in real and name in exported, name
        real_bases = {base.id for base in real[name].bases if isinstance(base, ast.Name)}
        fake_bases = {base.__name__ for base in fake_class.__bases__}
        assert fake_bases == real_bases, name


def test_the_fake_amdsmi_status_codes_and_init_flags_are_the_bindings(amdsmi_trees):
    wrapper = _assigned_ints(amdsmi_trees["amdsmi_wrapper"])
    assert {name: wrapper[name] for name in fake_amd.STATUS} == fake_amd.STATUS
    flags = _classes(amdsmi_trees["amdsmi_interface"])["AmdSmiInitFlags"]
    real_flags = {
        node.targets[0].id: wrapper[node.value.attr]
        for node in flags.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Attribute)
    }
    assert {flag.name: flag.value for flag in fake_amd.AmdSmiInitFlags} == {
        name: real_flags[name] for name in fake_amd.AmdSmiInitFlags.__members__
    }


def test_the_fake_amdsmi_library_error_reads_as_the_bindings(amdsmi_trees):
    error = fake_amd.AmdSmiLibraryException(-fake_amd.STATUS["AMDSMI_STATUS_NOT_SUPPORTED"])
    assert error.get_error_code() == 2
    assert str(error) == "Error code:\n\t2 | AMDSMI_STATUS_NOT_SUPPORTED - Feature not supported"
