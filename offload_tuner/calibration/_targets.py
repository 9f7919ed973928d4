"""Resolve calibration targets (module, ``module:function``, or a ``.py`` path) into registered kernels."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offload_tuner.runtime._registry import KernelSpec, registered, spec_by_key, spec_for

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

BUNDLED_TARGET = "offload_tuner_kernels"
"""The reference kernels: the repository's ``kernels/`` folder, installed under a name of ours."""
BUNDLED_PLAN = "plan.json"
"""The bundled kernels' plan, package data of BUNDLED_TARGET (in the repository a symlink to
``calibration/plan.json``), so a regular install finds it as well as an editable one."""


class TargetError(Exception):
    """A target could not be imported or named no kernel; the message says which and why."""


class NoKernelsError(TargetError):
    """A target imported fine but yields no registered kernel (silence here once left kernels uncalibrated)."""


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
    """Import every target and return the kernels it yields, optionally filtered by ``names``.

    A module (or ``.py`` file) yields the kernels whose functions are defined in it or its submodules and
    every registered kernel bound to one of its module-level names, wherever the function is defined
    (``cluster = kernel(...)(thirdparty.cluster)``). A target that yields none raises :class:`NoKernelsError`
    naming it. A name matches a kernel's key (``module:qualname``), its qualname, or its function name.
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
            obj: Any = sys.modules[module_name]  # a module, then whatever its attributes hold
            for part in attr.split("."):
                obj = getattr(obj, part, None)
                if obj is None:
                    raise TargetError(f"target {target!r}: {module_name} has no attribute {attr!r}")
            spec = _spec_of(obj)
            if spec is None:
                raise NoKernelsError(f"target {target!r} is not registered with @kernel(...), so it yields no kernels")
            specs = [spec]
        else:
            _import(target, target)
            specs = _specs_in_module(target)
        if not specs:
            raise NoKernelsError(
                f"target {target!r} yields no kernels: no function registered with @kernel(...) is defined in it, "
                "and none of its module-level names is bound to one"
            )
        for spec in specs:
            found.setdefault(spec.key, spec)
    if names:
        wanted = set(names)
        chosen = [s for s in found.values() if wanted & {s.key, s.fn.__qualname__, s.fn.__name__}]
        unknown = wanted - {n for s in chosen for n in (s.key, s.fn.__qualname__, s.fn.__name__)}
        if unknown:
            raise NoKernelsError(f"no kernel named {', '.join(sorted(unknown))} in {', '.join(targets)}")
        return chosen
    return list(found.values())


def _specs_in_module(module_name: str) -> list[KernelSpec]:
    """Kernels defined in the module or its submodules, then those bound to its module-level names."""
    prefix = module_name + "."
    specs = [s for s in registered() if s.fn.__module__ == module_name or s.fn.__module__.startswith(prefix)]
    for value in list(vars(sys.modules[module_name]).values()):
        spec = _spec_of(value)
        if spec is not None:
            specs.append(spec)
    return specs


def _spec_of(value: object) -> KernelSpec | None:
    """The registered kernel ``value`` is, if any (a module attribute may be anything, even unhashable)."""
    if not callable(value):
        return None
    try:
        return spec_for(value)
    except TypeError:  # an unhashable callable cannot be a registered kernel
        return None


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
