"""Optional dependencies, checked before a command starts work: a missing one is named with the extra that
installs it, instead of a ModuleNotFoundError after a minute of measuring."""

from __future__ import annotations

import importlib.util

EXTRAS: dict[str, tuple[str, ...]] = {
    "calibrate": ("numpy", "sklearn"),
    "plot": ("matplotlib", "numpy"),
    "dask": ("distributed",),
}
"""Import names each extra of pyproject.toml provides (the ones commands need)."""


def missing(extra: str) -> list[str]:
    """The import names of ``extra`` that cannot be found (found without importing them)."""
    return [name for name in EXTRAS[extra] if _absent(name)]


def _absent(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):  # a broken parent package, or a module without a spec
        return True


def install_hint(extra: str) -> str:
    """How to install an extra, from a clone or from an index."""
    return f"pip install -e '.[{extra}]' (in a clone) or pip install 'offload-tuner[{extra}]'"


def requirement_problem(extra: str, needed_for: str) -> str | None:
    """A one-line message if ``extra`` is not fully installed, else None."""
    absent = missing(extra)
    if not absent:
        return None
    return f"{needed_for} needs {', '.join(absent)} (the '{extra}' extra): {install_hint(extra)}"
