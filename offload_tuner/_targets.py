"""Resolve calibration targets (module, ``module:function``, or a ``.py`` path) into registered kernels."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from offload_tuner._registry import KernelSpec, registered, spec_by_key, spec_for

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

BUNDLED_TARGET = "offload_tuner_kernels"
"""The reference kernels: the repository's ``kernels/`` folder, installed under a name of ours."""
BUNDLED_PLAN = "plan.json"
"""The bundled kernels' plan, package data of BUNDLED_TARGET (in the repository a symlink to
``calibration/plan.json``), so a regular install finds it as well as an editable one."""


class TargetError(Exception):
    """A target could not be imported or named no kernel; the message says which and why."""


def bundled_plan() -> Traversable:
    """Where the bundled kernels' calibration plan is, wherever the package is installed."""
    from importlib.resources import files

    return files(BUNDLED_TARGET).joinpath(BUNDLED_PLAN)


def _module_name_for_path(path: Path) -> tuple[str, Path]:
    """Dotted module name for a file and the folder to put on sys.path (walks up through packages)."""
    path = path.resolve()
    parts = [path.stem]
    folder = path.parent
    while (folder / "__init__.py").exists():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts), folder


def _import(module_name: str, target: str) -> None:
    try:
        importlib.import_module(module_name)
    except ImportError as exc:
        raise TargetError(f"target {target!r} is not importable: {exc}") from exc
    except Exception as exc:  # the module itself raised while importing
        raise TargetError(f"target {target!r} raised {type(exc).__name__} on import: {exc}") from exc


def resolve_targets(targets: Sequence[str], names: Sequence[str] = ()) -> list[KernelSpec]:
    """Import every target and return the kernels it registered, optionally filtered by ``names``.

    A name matches a kernel's key (``module:qualname``), its qualname, or its function name.
    """
    targets = list(targets) or [BUNDLED_TARGET]
    found: dict[str, KernelSpec] = {}
    for target in targets:
        if target.endswith(".py") or Path(target).is_file():
            path = Path(target)
            if not path.is_file():
                raise TargetError(f"target {target!r} is not importable: no such file")
            module_name, root = _module_name_for_path(path)
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))  # workers inherit sys.path, so they can import it by name too
            _import(module_name, target)
            specs = _specs_in_module(module_name)
        elif ":" in target:
            module_name, _, attr = target.partition(":")
            _import(module_name, target)
            obj = sys.modules[module_name]
            for part in attr.split("."):
                obj = getattr(obj, part, None)
                if obj is None:
                    raise TargetError(f"target {target!r}: {module_name} has no attribute {attr!r}")
            spec = spec_for(obj)
            if spec is None:
                raise TargetError(f"target {target!r} is not registered with @kernel(...)")
            specs = [spec]
        else:
            _import(target, target)
            specs = _specs_in_module(target)
        for spec in specs:
            found.setdefault(spec.key, spec)
    if names:
        wanted = set(names)
        chosen = [s for s in found.values() if wanted & {s.key, s.fn.__qualname__, s.fn.__name__}]
        unknown = wanted - {n for s in chosen for n in (s.key, s.fn.__qualname__, s.fn.__name__)}
        if unknown:
            raise TargetError(f"no kernel named {', '.join(sorted(unknown))} in {', '.join(targets)}")
        return chosen
    return list(found.values())


def _specs_in_module(module_name: str) -> list[KernelSpec]:
    prefix = module_name + "."
    return [s for s in registered() if s.fn.__module__ == module_name or s.fn.__module__.startswith(prefix)]


def import_kernel(key: str) -> KernelSpec:
    """The registered kernel for a profile key ``module:qualname`` (importing its module)."""
    module_name, sep, _ = key.partition(":")
    if not sep:
        raise TargetError(f"kernel {key!r} is not of the form module:qualname")
    _import(module_name, key)
    spec = spec_by_key(key)
    if spec is None:
        raise TargetError(f"{module_name} defines no kernel registered as {key!r}")
    return spec
