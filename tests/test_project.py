"""Facts a newcomer relies on: the README's commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.findall(r"^(python3 -m venv .*)$", readme, flags=re.M)
    assert len(commands) == 2, commands  # one to calibrate, one to test, near the top
    test_command = next(c for c in commands if c.endswith("pytest"))
    assert test_command in ci.splitlines()


def test_readme_calibrate_command_uses_the_console_script():
    readme = (ROOT / "README.md").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'offload-tuner = "offload_tuner.inspection._cli:main"' in pyproject
    assert re.search(r"^python3 -m venv .* && offload-tuner calibrate$", readme, flags=re.M)
