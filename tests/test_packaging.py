"""What gets installed: only import names of ours (never `kernels`, an unrelated PyPI package), and the
bundled plan ships with the kernels so `offload-tuner calibrate` works from a regular, non-editable install."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import distribution
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"offload_tuner", "offload_tuner_kernels"}
# What a wheel build reads from the tree (pyproject.toml names no other file or folder).
BUILD_INPUTS = ("pyproject.toml", "README.md", "offload_tuner", "kernels", "calibration")
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
