"""A type checker infers the kernel's return type through ``run_kernel`` and ``run_kernel_sync``."""

from __future__ import annotations

import mypy.api

SNIPPET = """
from offload_tuner import run_kernel, run_kernel_sync

def labels(xs: list[float]) -> list[int]:
    return [int(x) for x in xs]

reveal_type(run_kernel_sync(labels, [1.0]))

async def serve() -> None:
    reveal_type(await run_kernel(labels, [1.0], offload_if=None, timeout=1.0))
"""


def test_the_kernel_s_return_type_is_inferred(tmp_path):
    snippet = tmp_path / "snippet.py"
    snippet.write_text(SNIPPET)
    out, err, status = mypy.api.run(
        [str(snippet), "--strict", "--follow-imports=silent", "--cache-dir", str(tmp_path / "cache")]
    )
    revealed = [
        line.split("Revealed type is ", 1)[1].replace("builtins.", "")
        for line in out.splitlines()
        if "Revealed type is" in line
    ]
    assert revealed == ['"list[int]"'] * 2, out + err
    assert " error:" not in out and status == 0, out
