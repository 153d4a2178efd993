"""The architecture, checked from the source (``ast``): imports point down the layers, no cycles, small functions.

Layers, lowest first (ARCHITECTURE.md): ``errors``/``_version``/``units``/``energy`` -> ``sensors`` -> ``measure`` ->
``carbon`` -> ``logs`` -> ``job`` -> ``session`` -> ``report`` -> ``cli`` -> the package face (``tracker``) ->
``integrations``. ``testing`` (fakes at the hardware boundary) sits on ``sensors`` and nothing in the
library imports it. Every import counts, at the top of a module or inside a function.

Run alone: ``python -m pytest -q tests/test_architecture.py``.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tracker", "integrations")
LAYERS = ("base", "sensors", "measure", "carbon", "logs", "job", "session", "report", "cli", "face", "integrations")
MAX_FUNCTION_LINES = 50


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, ast.Module]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "integrations":
        return "integrations"
    if module == "tracker":
        return "face"
    if parts[1] in ("errors", "_version", "units", "energy"):
        return "base"
    if parts[1] in ("cli", "__main__"):
        return "cli"
    return parts[1]


def imported(module: str, tree: ast.Module) -> set[str]:
    """The project modules ``module`` imports (``from a.b import c`` counts ``a.b.c`` when it is a module)."""
    known, names = modules(), set()
    package = module if module in known and _is_package(module) else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known)
    return {n for n in names if n in known and n != module}


def _is_package(module: str) -> bool:
    return (ROOT / Path(*module.split(".")) / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    return {name: imported(name, tree) for name, tree in modules().items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated last), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def allowed(importer: str, target: str) -> bool:
    mine, theirs = layer(importer), layer(target)
    if theirs == "testing":
        return mine == "testing"
    if mine == "testing":
        return theirs in ("base", "sensors", "testing")
    return LAYERS.index(theirs) <= LAYERS.index(mine)


def test_no_import_cycle():
    assert find_cycle(graph()) is None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_imports_point_down_the_layers():
    upward = sorted(f"{a} -> {b}" for a, targets in graph().items() for b in targets if not allowed(a, b))
    assert upward == []


def test_no_module_of_the_package_imports_its_face():
    # `from tracker import __version__` inside the package would import the face (tracker._version instead).
    inside = [name for name, targets in graph().items() if name.startswith("tracker.") and "tracker" in targets]
    assert inside == []


def test_integrations_use_the_package_face_only():
    inside = {
        f"{name} -> {target}"
        for name, targets in graph().items()
        if layer(name) == "integrations"
        for target in targets
        if target.startswith("tracker.")
    }
    assert inside == set()


@pytest.mark.parametrize("package", PACKAGES)
def test_no_function_is_longer_than_50_lines(package):
    long = [
        f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for name, tree in modules().items()
        if name.split(".")[0] == package
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def private_names(path: Path, class_name: str) -> set[str]:
    """The private attributes of a class: its ``_`` methods and class attributes, and the ``self._x`` it assigns."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name]
    names = {n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    names |= {
        t.id
        for n in cls.body
        if isinstance(n, (ast.Assign, ast.AnnAssign))
        for t in ast.walk(n)
        if isinstance(t, ast.Name)
    }
    names |= {
        n.attr
        for n in ast.walk(cls)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self"
    }
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def test_no_test_reaches_into_a_private_attribute_of_the_tracker():
    # Tests use the tracker's public face (sampling="manual" and sample(), sampling, edge_deadline_s), so that
    # its insides can change without rewriting them; a name a test's own class defines on `self` is its own.
    session = ROOT / "tracker" / "session"
    private = private_names(session / "energy_tracker.py", "EnergyTracker")
    private |= private_names(session / "timeline.py", "Timeline") | {"_sampler", "_timeline", "_meter", "_stack"}
    reaches = sorted(
        f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}"
        for path in (ROOT / "tests").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute)
        and node.attr in private
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    )
    assert reaches == []


def test_the_face_holds_the_users_names_that_architecture_md_lists():
    # A name for the integrations' plumbing goes in tracker.session.integration, not on the face.
    face = next(
        line for line in (ROOT / "ARCHITECTURE.md").read_text().splitlines() if "| `tracker/__init__.py` |" in line
    )
    listed = set(face.split("|")[3].split("`")[1::2]) - {
        "_EXPORTS",
        "tracker.session.integration",
        "integrations/",
        "tracker.testing",
    }
    (exports,) = [node for node in ast.walk(modules()["tracker"]) if isinstance(node, ast.Dict)]
    exported = {key.value for key in exports.keys}
    assert listed == exported
