"""The notebooks in notebooks/: committed without outputs, and they run against a profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
REFERENCE = ROOT / "calibration" / "reference" / "vm.json"
NAMES = ["inspect_thresholds.ipynb", "what_if.ipynb"]


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_are_committed_without_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, f"{name}: clear the outputs before committing"
    assert "PROFILE = None" in code[0].source


@pytest.fixture
def this_interpreter_kernel(tmp_path, monkeypatch):
    """A "python3" kernelspec that runs this interpreter (its ipykernel), found before any user or system one."""
    from ipykernel.kernelspec import write_kernel_spec

    write_kernel_spec(tmp_path / "jupyter" / "kernels" / "python3")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel picks its inline backend


def execute(name: str):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=60, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    return nb


def outputs(nb):
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def pngs(nb) -> int:
    return sum("image/png" in out.get("data", {}) for out in outputs(nb))


def text(nb) -> str:
    return "\n".join(out.get("text", "") + out.get("data", {}).get("text/html", "") for out in outputs(nb))


@pytest.mark.slow
def test_inspect_thresholds_runs_on_a_profile_given_by_environment(this_interpreter_kernel, tmp_path, monkeypatch):
    data = json.loads(REFERENCE.read_text(encoding="utf-8"))
    for entry in data["kernels"].values():  # a second profile to compare with: thresholds doubled
        if entry.get("threshold"):
            entry["threshold"] *= 2
    (tmp_path / "other.json").write_text(json.dumps(data))
    monkeypatch.setenv("OFFLOAD_TUNER_PROFILE", str(REFERENCE))
    monkeypatch.setenv("OFFLOAD_TUNER_COMPARE_WITH", str(tmp_path / "other.json"))
    nb = execute("inspect_thresholds.ipynb")
    with_costs = sum("costs" in entry for entry in data["kernels"].values())
    assert pngs(nb) == with_costs + 2  # overview, one per kernel, comparison
    assert str(REFERENCE) in text(nb) and "intervals overlap" in text(nb)


@pytest.mark.slow
def test_what_if_runs_on_a_profile_given_by_environment(this_interpreter_kernel, monkeypatch):
    monkeypatch.setenv("OFFLOAD_TUNER_PROFILE", str(REFERENCE))
    nb = execute("what_if.ipynb")
    assert pngs(nb) == 1
    assert "loop budget 1 ms" in text(nb) and str(REFERENCE) in text(nb)
