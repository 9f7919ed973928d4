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


def test_getting_started_gives_the_readme_commands_verbatim():
    """The documentation site's first page for a newcomer must not drift from the README (and so from CI)."""
    venv_line = r"^(python3 -m venv .*)$"
    readme = re.findall(venv_line, (ROOT / "README.md").read_text(), flags=re.M)
    page = re.findall(venv_line, (ROOT / "docs" / "getting-started.md").read_text(), flags=re.M)
    assert len(readme) == 2 and page == readme


def test_readme_shows_install_commands_and_an_example_on_its_first_screen():
    """A newcomer decides from the first screen: the two commands and a Python example, in a short README."""
    readme = (ROOT / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:60])
    assert len(readme.encode()) <= 12_000
    assert len(re.findall(r"^python3 -m venv .*$", first_screen, flags=re.M)) == 2
    for name in ("@kernel(", "set_executor(recommended_pool())", "await run_kernel(", "decide("):
        assert name in first_screen, name
