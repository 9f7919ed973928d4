"""Every command the README and the documentation pages show works after the install they show for it: what a
command needs beyond that is checked before anything is measured, and said with the extra that provides it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import offload_tuner_kernels  # noqa: F401  (registers the bundled kernels: the synthetic profile names them)
from offload_tuner.inspection._cli import EXIT_USAGE, _parser, main
from tests.support import write_profile_json

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = {path: path.read_text() for path in sorted((ROOT / "docs").glob("*.md"))}
"""The documentation site's pages: the commands moved there from the README are held to the same checks."""
PAGES = {ROOT / "README.md": README, **DOCS}
FENCED = re.compile(r"^```[^\n]*\n(.*?)^```", flags=re.M | re.S)


def subcommands_named(text: str) -> set[str]:
    """`offload-tuner X` in inline code or after a prompt, and at the start of a line in a code block (in prose,
    a sentence may begin with the project's name)."""
    code = "\n".join(FENCED.findall(text))
    return set(re.findall(r"(?:`|\$ )offload-tuner (\w+)", text)) | set(
        re.findall(r"^offload-tuner (\w+)", code, flags=re.M)
    )


ROWS = "offload_tuner_kernels.rows:bytes_by_status"


@pytest.mark.parametrize("page", list(PAGES), ids=lambda path: path.relative_to(ROOT).as_posix())
def test_each_page_names_only_extras_modules_files_and_subcommands_that_exist(page):
    text = PAGES[page]
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named_extras = set(re.findall(r"\.\[(\w+)\]", text))
    assert named_extras <= extras, named_extras - extras
    modules = set(re.findall(r"python -m (benchmarks\.\w+)", text))
    assert [m for m in modules if not (ROOT / (m.replace(".", "/") + ".py")).is_file()] == []
    scripts = set(re.findall(r"python ((?:examples|benchmarks)/\w+\.py)", text))
    assert [s for s in scripts if not (ROOT / s).is_file()] == []
    subcommands = set(_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    used = subcommands_named(text)
    assert used <= subcommands, used - subcommands
    links = [link.split("#")[0] for link in re.findall(r"\]\(((?!https?:|#)[^)\s]+)\)", text)]
    assert [link for link in links if not (page.parent / link).exists()] == []


def test_the_readme_and_the_pages_between_them_name_extras_benchmarks_scripts_and_commands():
    """Each kind the check above covers is really there to check: a page set that names none would pass it."""
    text = "\n".join(PAGES.values())
    assert {"calibrate", "test", "plot", "dask", "docs"} <= set(re.findall(r"\.\[(\w+)\]", text))
    assert re.search(r"python -m benchmarks\.\w+", README) and re.search(r"python examples/\w+\.py", text)
    assert {"calibrate", "show", "explain", "plot", "drift", "retune", "check"} <= subcommands_named(text)
    assert re.findall(r"\]\(docs/[\w-]+\.md\)", README), "the README links to the documentation pages"


def test_calibrate_without_its_extra_names_it_and_measures_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # as if only `pip install -e .` had run
    out = tmp_path / "profile.json"
    assert main(["calibrate", "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "needs sklearn (the 'calibrate' extra)" in err and "pip install -e '.[calibrate]'" in err
    assert "calibrating" not in err and not out.exists()


@pytest.mark.slow
def test_the_workload_benchmark_without_matplotlib_says_so_first_and_skips_only_the_figure(
    tmp_path, monkeypatch, capsys
):
    """After `pip install -e '.[calibrate]'` the benchmark used to measure for a minute, then die drawing."""
    from benchmarks import workload

    profile = write_profile_json(tmp_path / "profile.json", {ROWS: None})
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "results"
    assert (
        workload.main(["--smoke", "--profile", str(profile), "--out-dir", str(out), "--kernel", "bytes_by_status"]) == 0
    )
    err = capsys.readouterr().err.splitlines()
    first_note = next(i for i, line in enumerate(err) if "the figure needs matplotlib" in line)
    assert first_note < next(i for i, line in enumerate(err) if line.startswith("benchmarking "))
    assert "pip install -e '.[plot]'" in err[first_note]
    assert any(line.startswith("figure skipped:") for line in err)
    assert sorted(p.name for p in out.iterdir()) == ["workload-smoke.json", "workload-smoke.md"]
    assert json.loads((out / "workload-smoke.json").read_text())["workloads"][0]["kernel"] == ROWS


def test_the_workload_benchmark_stops_before_measuring_when_numpy_is_missing(tmp_path):
    """detect_spikes registers only with numpy: say so up front instead of after five other kernels."""
    profile = write_profile_json(tmp_path / "profile.json", {})
    code = (
        "import sys; sys.modules['numpy'] = None\n"
        "from benchmarks import workload\n"
        f"workload.main(['--smoke', '--profile', {str(profile)!r}, '--out-dir', {str(tmp_path / 'out')!r}])\n"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "kernels not registered: offload_tuner_kernels.numeric:detect_spikes" in run.stderr
    assert "numpy is missing: pip install -e '.[calibrate]'" in run.stderr
    assert "benchmarking" not in run.stderr and not (tmp_path / "out").exists()


def test_the_workload_benchmark_refuses_another_hosts_profile_with_a_message(tmp_path, capsys):
    from benchmarks import workload

    profile = write_profile_json(tmp_path / "p.json", {ROWS: None}, host={"hostname": "elsewhere"})
    with pytest.raises(SystemExit, match="calibrated on another host.*pass --profile PATH"):
        workload.main(["--smoke", "--profile", str(profile), "--out-dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
