"""The documentation site's sources cover what the code offers: every public name has an API entry, every
command and option of ``offload-tuner`` is described, every exit code and environment variable is listed, and
every measurement record in ``benchmarks/results/history/`` is reachable from its index.

The scanners are plain functions so that a test can feed them a page with something missing and watch them
say so: a check that cannot fail checks nothing."""

from __future__ import annotations

import argparse
import importlib
import re
from pathlib import Path

import offload_tuner
from offload_tuner.inspection import _cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
HISTORY = ROOT / "benchmarks" / "results" / "history"
HISTORY_INDEX = HISTORY / "README.md"


def _resolve(path: str) -> object:
    """The object a ``::: dotted.path`` entry documents: the longest importable module prefix, then attributes."""
    parts = path.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute)
        return obj
    raise ImportError(path)


def missing_api_entries(names: list[str], page: str) -> list[str]:
    """Names of ``offload_tuner`` that no ``::: path`` entry of the page documents (by identity, so an entry for
    the defining module of a lazily loaded name counts, and an entry for a namesake elsewhere does not)."""
    documented = [_resolve(path) for path in re.findall(r"^:::\s*(\S+)", page, flags=re.MULTILINE)]
    return [name for name in names if not any(obj is getattr(offload_tuner, name) for obj in documented)]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _spellings(parser: argparse.ArgumentParser) -> list[str]:
    """How a reader meets each argument of a parser: its option strings, or a positional's metavar in capitals."""
    found = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.option_strings:
            found.extend(action.option_strings)
        else:
            found.append(str(action.metavar or action.dest).upper())
    return found


def _section(page: str, command: str) -> str | None:
    """The text under ``## `command` `` up to the next second-level heading, or None without such a heading."""
    match = re.search(rf"^## `{re.escape(command)}`\s*$(.*?)(?=^## |\Z)", page, flags=re.MULTILINE | re.DOTALL)
    return match.group(1) if match else None


def missing_cli_entries(parser: argparse.ArgumentParser, page: str) -> list[str]:
    """Every subcommand without its own section, every option or positional not named in backticks in its
    subcommand's section, and every top-level option not named anywhere on the page."""
    missing = [f"{parser.prog} {spelling}" for spelling in _spellings(parser) if f"`{spelling}" not in page]
    for name, sub in _subcommands(parser).items():
        section = _section(page, name)
        if section is None:
            missing.append(f"{parser.prog} {name}")
            continue
        missing.extend(
            f"{parser.prog} {name} {s}" for s in _spellings(sub) if not re.search(rf"`{re.escape(s)}\b", section)
        )
    return missing


def unlinked_history(files: list[str], index: str) -> list[str]:
    """History files the index does not link to (Markdown links, relative to the index)."""
    linked = {Path(target).name for target in re.findall(r"\]\(([^)#\s]+)", index)}
    return [name for name in files if name not in linked]


def undocumented_modules(package: Path, page: str) -> list[str]:
    """Modules of the library's layers (``runtime/feedback/_adapt`` and the like, ``__init__`` aside) the
    architecture page's tables do not name in a row (`` `_name` `` or `` `sub/_name` `` as a cell)."""
    named = set(re.findall(r"^\|(?:[^|\n]*\|)?\s*`([\w/]+)`\s*\|", page, flags=re.MULTILINE))
    missing = []
    for path in sorted(package.rglob("_*.py")):
        relative = path.relative_to(package).with_suffix("")
        if relative.name == "__init__" or len(relative.parts) < 2:
            continue
        inner = "/".join(relative.parts[1:])
        if inner not in named and relative.name not in named:
            missing.append(str(relative))
    return missing


def test_every_module_has_a_row_on_the_architecture_page() -> None:
    page = (DOCS / "architecture.md").read_text(encoding="utf-8")
    assert undocumented_modules(ROOT / "offload_tuner", page) == []


def test_every_public_name_has_an_api_entry() -> None:
    page = (DOCS / "api.md").read_text(encoding="utf-8")
    assert missing_api_entries(list(offload_tuner.__all__), page) == []


def test_every_command_and_option_is_in_the_cli_page() -> None:
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    parser = _cli._parser()
    assert set(_subcommands(parser)) >= {"calibrate", "show", "explain", "check", "plot", "drift", "retune"}
    assert missing_cli_entries(parser, page) == []


def test_every_exit_code_and_environment_variable_is_in_the_cli_page() -> None:
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    codes = sorted({value for name, value in vars(_cli).items() if name.startswith("EXIT_")})
    assert len(codes) >= 9
    table = page.split("## Exit codes", 1)[1]
    assert [code for code in codes if f"| `{code}` |" not in table] == []
    source = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "offload_tuner").rglob("*.py"))
    variables = set(re.findall(r"OFFLOAD_TUNER_[A-Z_]+[A-Z]", source))
    assert "OFFLOAD_TUNER_PROFILE" in variables
    assert [v for v in sorted(variables) if f"`{v}`" not in page] == []


def test_every_history_record_is_linked_from_its_index() -> None:
    files = sorted(p.name for p in HISTORY.iterdir() if p.is_file() and p.name != HISTORY_INDEX.name)
    assert len(files) >= 10
    assert unlinked_history(files, HISTORY_INDEX.read_text(encoding="utf-8")) == []


def test_the_docs_results_folder_is_the_benchmarks_results_folder() -> None:
    link = DOCS / "results"
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()
    assert link.resolve() == (ROOT / "benchmarks" / "results").resolve()


def test_the_scanners_report_what_is_missing() -> None:
    architecture = (DOCS / "architecture.md").read_text(encoding="utf-8")
    without_row = re.sub(r"^\|[^\n]*`_segments`[^\n]*\n", "", architecture, flags=re.MULTILINE)
    assert undocumented_modules(ROOT / "offload_tuner", without_row) == ["runtime/_segments"]
    mentioned_only = without_row + "\nThe files behind `_shm` are `_segments`.\n"  # prose is not a row
    assert undocumented_modules(ROOT / "offload_tuner", mentioned_only) == ["runtime/_segments"]
    parser = _cli._parser()
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    without_option = page.replace("`--what-if", "`--what-else")
    assert missing_cli_entries(parser, without_option) == ["offload-tuner explain --what-if"]
    without_command = re.sub(r"^## `drift`", "## Drift", page, flags=re.MULTILINE)
    assert missing_cli_entries(parser, without_command) == ["offload-tuner drift"]
    # an option named only in another command's section does not count for this one
    sub = argparse.ArgumentParser(prog="x")
    commands = sub.add_subparsers(dest="command")
    commands.add_parser("a").add_argument("--shared-flag")
    commands.add_parser("b")
    assert missing_cli_entries(sub, "## `a`\n\n## `b`\n\n`--shared-flag`\n") == ["x a --shared-flag"]

    api = (DOCS / "api.md").read_text(encoding="utf-8")
    without_entry = re.sub(r"^::: offload_tuner\.run_kernel$", "", api, flags=re.MULTILINE)
    assert missing_api_entries(list(offload_tuner.__all__), without_entry) == ["run_kernel"]
    namesake = api + "\n::: offload_tuner.runtime._stats_document.stats_document\n"
    assert missing_api_entries(["stats"], namesake.replace("::: offload_tuner.stats\n", "")) == []

    assert unlinked_history(["a.md", "b.md"], "[a](a.md)\n`b.md`\n") == ["b.md"]
