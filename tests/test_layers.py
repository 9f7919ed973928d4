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
