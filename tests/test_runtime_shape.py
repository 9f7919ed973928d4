"""The code stays readable: no module in runtime/ past 500 lines, and no function anywhere in the package past 60
lines unless it says why it must be one piece (the hot path: each Python call there costs about as much as the
work)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "offload_tuner"
RUNTIME = PACKAGE / "runtime"
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 60


def long_functions(path: Path) -> list[str]:
    """Functions longer than the limit whose source does not say "one piece" (why it is not split)."""
    source = path.read_text()
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1  # type: ignore[operator]  # set by ast.parse
            text = "\n".join(lines[node.lineno - 1 : node.end_lineno]).lower()
            if length > MAX_FUNCTION_LINES and "one piece" not in text:
                found.append(f"{path.name}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_runtime_module_is_past_the_limit():
    files = sorted(RUNTIME.rglob("*.py"))
    assert len(files) > 20
    long = [f"{p.relative_to(RUNTIME)}: {n}" for p in files if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES]
    assert not long, long


def test_no_function_in_the_package_is_past_the_limit_without_saying_why():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 50
    found = [f for p in files for f in long_functions(p)]
    assert not found, found


def test_the_scan_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    (tmp_path / "long.py").write_text(f"def long():\n{body}\n")
    (tmp_path / "said.py").write_text(f"def said():\n    # one piece: the hot path\n{body}\n")
    assert long_functions(tmp_path / "long.py") == [f"long.py:1 long ({MAX_FUNCTION_LINES + 1} lines)"]
    assert long_functions(tmp_path / "said.py") == []
