"""What gets installed: only import names of ours (never `kernels`, an unrelated PyPI package), and the
bundled plan ships with the kernels so `offload-tuner calibrate` works from a regular, non-editable install.
The wheel also says what a published package says: one version everywhere, its license, that it is typed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import distribution
from pathlib import Path

import pytest

import offload_tuner

ROOT = Path(__file__).resolve().parent.parent
OURS = {"offload_tuner", "offload_tuner_kernels"}
# What a wheel build reads from the tree (pyproject.toml names no other file or folder).
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE", "offload_tuner", "kernels", "calibration")
OLD_NAME = re.compile(
    r"^\s*(?:import|from)\s+kernels\b|(?<![\w.])kernels\.(?:clustering|ranking|rows|expand|numeric|records)\b",
    flags=re.M,
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built for real from a copy of the tree (the build writes build/ and *.egg-info where it runs)."""
    src = tmp_path_factory.mktemp("src")
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        text=True,
    )
    (built,) = out.glob("offload_tuner-*.whl")
    return built


def test_the_wheel_installs_only_our_top_level_names(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert top_level == OURS
    assert "offload_tuner_kernels/clustering.py" in names and not any(n.startswith("kernels/") for n in names)


def test_the_wheel_ships_the_plan_of_the_repository_byte_for_byte(wheel):
    shipped = zipfile.ZipFile(wheel).read("offload_tuner_kernels/plan.json")
    assert shipped == (ROOT / "calibration" / "plan.json").read_bytes()


def _metadata(wheel: Path) -> dict[str, list[str]]:
    """The wheel's METADATA headers (the part before the long description), each name to its values."""
    archive = zipfile.ZipFile(wheel)
    (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    headers: dict[str, list[str]] = {}
    for line in archive.read(name).decode().split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(": ")
        headers.setdefault(key, []).append(value)
    return headers


def test_the_wheel_is_typed_and_runs_as_a_module(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "offload_tuner/py.typed" in names
    assert "offload_tuner/__main__.py" in names


def test_the_wheel_carries_the_license_its_metadata_names(wheel):
    archive = zipfile.ZipFile(wheel)
    headers = _metadata(wheel)
    assert headers["License-Expression"] == ["MIT"]
    assert headers["License-File"] == ["LICENSE"]
    (shipped,) = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
    text = archive.read(shipped).decode()
    assert text == (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "2026 the offload-tuner developers" in text
    # PEP 639: a license expression excludes license classifiers.
    assert not [c for c in headers.get("Classifier", []) if c.startswith("License ::")]


def test_the_wheel_declares_what_it_supports(wheel):
    classifiers = set(_metadata(wheel)["Classifier"])
    for expected in ("Framework :: AsyncIO", "Typing :: Typed", "Operating System :: POSIX :: Linux"):
        assert expected in classifiers
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    supported = re.search(r"Supported: CPython 3\.(\d+)-3\.(\d+)", ci)
    assert supported, "the CI script no longer says which Pythons are supported"
    low, high = map(int, supported.groups())
    versions = {
        c.rsplit(" ", 1)[1] for c in classifiers if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert versions == {f"3.{minor}" for minor in range(low, high + 1)}
    assert _metadata(wheel)["Requires-Python"] == [f">=3.{low}"]


def test_one_version_everywhere(wheel, tmp_path):
    """The wheel's metadata, ``offload_tuner.__version__``, the installed command and ``python -m`` agree."""
    (version,) = _metadata(wheel)["Version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert wheel.name.startswith(f"offload_tuner-{version}-")
    assert offload_tuner.__version__ == version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "version" in project["dynamic"] and "version" not in project, "pyproject.toml must not repeat the version"
    command = shutil.which("offload-tuner", path=str(Path(sys.executable).parent))
    assert command, "the offload-tuner script is not installed beside this interpreter"
    printed = [
        subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
        for argv in ([command, "--version"], [sys.executable, "-m", "offload_tuner", "--version"])
    ]
    assert printed == [f"offload-tuner {version}"] * 2


def test_the_changelog_has_an_entry_for_this_version():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in changelog
    assert re.search(rf"^## \[{re.escape(offload_tuner.__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M)


def test_the_editable_install_names_only_our_packages():
    top_level = set(distribution("offload-tuner").read_text("top_level.txt").split())
    assert top_level == OURS
    plan = ROOT / "kernels" / "plan.json"
    assert plan.is_symlink() and plan.resolve() == (ROOT / "calibration" / "plan.json").resolve()


def test_nothing_in_the_repository_uses_the_old_name():
    tracked = subprocess.run(
        ["git", "ls-files", "*.py", "*.ipynb", "*.md", "*.json", ".ci/*"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    offenders = [
        f"{name}: {match.group(0).strip()}"
        for name in tracked
        if name != "tests/test_packaging.py" and not name.startswith("benchmarks/results/")
        for match in [OLD_NAME.search((ROOT / name).read_text(encoding="utf-8"))]
        if match
    ]
    assert offenders == []


@pytest.mark.slow
def test_a_regular_install_calibrates_the_bundled_kernels_from_outside_the_tree(wheel, tmp_path):
    """Installed from the wheel (not editable), run elsewhere: the bundled plan is found as package data and
    forkserver workers import the kernels by their installed name."""
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        text=True,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = (
        "import importlib.util, offload_tuner, offload_tuner_kernels; "
        "print(offload_tuner.__file__); print(offload_tuner_kernels.__file__); "
        "print(importlib.util.find_spec('kernels'))"
    )
    lines = subprocess.run(
        [sys.executable, "-c", probe], cwd=work, env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert all(line.startswith(str(site)) for line in lines[:2]), lines
    assert lines[2] == "None"
    out = work / "profile.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "offload_tuner.inspection._cli",
            "calibrate",
            "--effort",
            "quick",
            "--kernel",
            "rank_latencies",
            "--out",
            str(out),
            "-q",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    entry = json.loads(out.read_text())["kernels"]["offload_tuner_kernels.ranking:rank_latencies"]
    plan = json.loads((ROOT / "calibration" / "plan.json").read_text())
    assert entry["status"] != "failed"
    assert entry["workload_range"] == plan["kernels"]["offload_tuner_kernels.ranking:rank_latencies"]["workload_range"]
