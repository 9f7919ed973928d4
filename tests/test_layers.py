"""The layers' arrows point one way: runtime <- calibration <- inspection (read from the source, no import)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "offload_tuner"
LAYERS = ("runtime", "calibration", "inspection")
MAY_IMPORT = {
    "runtime": {"runtime"},
    "calibration": {"runtime", "calibration"},
    "inspection": {"runtime", "calibration", "inspection"},
}


def imported_layers(path: Path) -> dict[str, int]:
    """Layer -> first line importing it, for every import of ``offload_tuner.<layer>`` in the file."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "offload_tuner" and len(parts) > 1 and parts[1] in LAYERS:
                found.setdefault(parts[1], node.lineno)
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_only_itself_and_the_layers_below(layer):
    files = sorted((PACKAGE / layer).glob("*.py"))
    assert len(files) > 2, f"no modules found under {PACKAGE / layer}"
    wrong = [
        f"{f.name}:{line} imports offload_tuner.{other}"
        for f in files
        for other, line in imported_layers(f).items()
        if other not in MAY_IMPORT[layer]
    ]
    assert not wrong, wrong


def test_every_module_belongs_to_a_layer():
    """New modules go into a layer's package; the top level keeps only the public face (and ``python -m``)."""
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "__main__.py"]


def test_the_scan_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from offload_tuner.calibration._fit import fit\n")
    assert imported_layers(bad) == {"calibration": 2}


# ------------------------------------------------------------------------------- inside runtime/, and no cycle

RUNTIME_RANKS = {
    # leaves: warnings, the registry, cost-model and backend tables
    "__init__": 0,
    "_warn": 0,
    "_log": 0,  # the offload_tuner logger's records (operational events)
    "_registry": 0,
    "_costmodel": 0,
    "_cores": 0,
    "_pool_repair": 0,  # a fix for CPython 3.11's process pool, applied to the pools we build or install
    "_backends": 1,  # sizes pools from _cores, warns through _warn
    "_transport_model": 0,  # the executor's transport costs (fixed + per byte, in band and out of band)
    "_segments": 1,  # the shared-memory files behind _shm: names, owner locks, write, map, sweep
    # models, profiles and counters
    "_policy": 1,
    "_extrapolate": 2,  # the model's offload size past the calibrated top, from _policy's predictions
    "_dask": 2,
    "_lanes": 2,
    "_shm": 2,  # the shared-memory transport: pickles with _backends' protocol and exceptions
    "_packaging": 3,  # how a process-pool call is packaged: _shm or in band
    "_placement": 2,
    "_profile": 3,
    "_stats": 4,
    "_host": 4,
    "_observe": 5,  # the hook the call path notifies
    # the call path
    "_state": 6,
    "_placer": 7,
    "_entries": 8,
    "_stats_document": 9,  # stats() as a document: the guarded field reads the call path (_entries)
    "_decision": 9,
    "_outcomes": 10,
    "_execution": 11,
    "_runtime": 12,  # the facade
    # feedback: above the call path, never imported by it
    "feedback._retune": 13,
    "feedback._statsfile": 13,
    "feedback._drift": 14,
    "feedback._adapt": 14,
    "feedback._prometheus": 14,  # the [prometheus] extra's collector: imported by offload_tuner on use only
    "feedback._startup": 15,
    "feedback.__init__": 16,
}
"""A runtime module imports only modules of a lower rank, at module level or inside a function alike."""


def module_name(path: Path) -> str:
    """``offload_tuner.runtime._state`` for runtime/_state.py; a package by its ``__init__`` file's name."""
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path, known: dict[str, Path]) -> dict[str, int]:
    """Module -> first line importing it, for every import of another file of offload_tuner (module level, inside
    functions, under ``if TYPE_CHECKING:``: all of them). ``from pkg import name`` counts ``pkg.name`` when that
    is a module, else ``pkg`` itself (its ``__init__``)."""
    found: dict[str, int] = {}

    def add(name: str, line: int) -> None:
        for candidate in (name, f"{name}.__init__"):
            if candidate in known and known[candidate] != path:
                found.setdefault(candidate, line)
                return

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                add(full if full in known or f"{full}.__init__" in known else node.module, node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
    return found


def runtime_rank(module: str) -> int:
    return RUNTIME_RANKS[module.removeprefix("offload_tuner.runtime.")]


def test_every_runtime_module_has_a_rank():
    known = package_modules()
    runtime = sorted(m.removeprefix("offload_tuner.runtime.") for m in known if m.startswith("offload_tuner.runtime."))
    assert len(runtime) > 20, runtime
    assert runtime == sorted(RUNTIME_RANKS), "rank the new module in RUNTIME_RANKS (or drop the stale name)"


def test_runtime_imports_point_down_the_ranks():
    known = package_modules()
    wrong = [
        f"{module}:{line} imports {other} (rank {runtime_rank(other)} >= {runtime_rank(module)})"
        for module, path in known.items()
        if module.startswith("offload_tuner.runtime.")
        for other, line in imported_modules(path, known).items()
        if other.startswith("offload_tuner.runtime.") and runtime_rank(other) >= runtime_rank(module)
    ]
    assert not wrong, wrong


def test_the_call_path_never_imports_feedback():
    known = package_modules()
    wrong = [
        f"{module} imports {other}"
        for module, path in known.items()
        if module.startswith("offload_tuner.runtime.") and ".feedback." not in module
        for other in imported_modules(path, known)
        if ".feedback." in other
    ]
    assert not wrong, wrong


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first search (one per back edge), as the path that closes it."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycle_among_the_package_files():
    known = package_modules()
    graph = {module: set(imported_modules(path, known)) for module, path in known.items()}
    assert len(graph) > 40
    assert not cycles(graph), cycles(graph)


def test_the_scans_see_an_upward_import_and_a_cycle(tmp_path):
    known = package_modules()
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from offload_tuner.runtime import _execution, feedback\n")
    assert imported_modules(bad, known) == {
        "offload_tuner.runtime._execution": 2,
        "offload_tuner.runtime.feedback.__init__": 2,
    }
    assert runtime_rank("offload_tuner.runtime._execution") > runtime_rank("offload_tuner.runtime._state")
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
