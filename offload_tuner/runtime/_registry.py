"""Kernel registration: which functions the tuner knows, how to size their input, how to build samples.

The registry is keyed by the function object itself so the hot path never builds a string; the
``"module:qualname"`` key (the profile's key) is computed once, at registration.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

SizeFn = Callable[..., int]
SampleFn = Callable[[int], tuple[Any, ...]]


class KernelSizeError(ValueError):
    """A kernel's ``size`` function raised or returned something that is not a non-negative integer."""


def default_size(*args: Any) -> int:
    """The input size when a kernel names none: the length of its first positional argument."""
    return len(args[0])


@dataclass(frozen=True, slots=True)
class KernelSpec:
    """What the tuner knows about one registered kernel."""

    fn: Callable[..., Any]
    key: str
    size: SizeFn
    sample: SampleFn | None
    default_threshold: int | None
    """Threshold used when no trusted profile entry exists (``None`` = inline)."""
    workload: tuple[int, int] | None = None
    """Sizes production calls span, stated next to the code; ``calibrate`` uses it where no plan states one."""

    def checked_size(self, args: tuple[Any, ...]) -> int:
        """``size(*args)`` validated: a clear error naming the kernel instead of a confusing comparison later."""
        try:
            n = self.size(*args)
        except Exception as exc:  # the user's size function: anything can happen
            raise KernelSizeError(f"size() of kernel {self.key} raised {type(exc).__name__}: {exc}") from exc
        return validate_size(self.key, n)

    def code_fingerprint(self) -> str:
        return code_fingerprint(self.fn)


def as_count(value: Any) -> int:
    """An element count from an int or an integral float; ValueError saying what is wrong otherwise.

    Shared by size() results, default thresholds and profile thresholds: bools, NaN, fractions,
    non-numbers and negatives are all refused.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{value!r} ({type(value).__name__}) is not an integer")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"{value!r} is not an integer")
        value = int(value)
    if value < 0:
        raise ValueError(f"{value} is negative")
    return int(value)  # an int already: int() tells the type checker so


def validate_size(key: str, n: Any) -> int:
    """A size() result as an int >= 0, or a KernelSizeError naming the kernel."""
    try:
        return as_count(n)
    except ValueError as exc:
        raise KernelSizeError(f"size() of kernel {key} returned {exc}; expected an int >= 0") from None


_REGISTRY: dict[Callable[..., Any], KernelSpec] = {}
_BY_KEY: dict[str, KernelSpec] = {}


def workload_range(value: Any, where: str) -> tuple[int, int] | None:
    """``(lo, hi)``: two positive sizes, ``lo <= hi``; ``None`` stays None. ValueError naming ``where`` otherwise."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{where}: expected two sizes (lo, hi), got {value!r}")
    try:
        lo, hi = as_count(value[0]), as_count(value[1])
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}; expected two positive sizes (lo, hi)") from None
    if lo < 1:
        raise ValueError(f"{where}: the sizes must be positive, got lo = {lo}")
    if lo > hi:
        raise ValueError(f"{where}: lo {lo} is above hi {hi}; expected (lo, hi) with lo <= hi")
    return lo, hi


def kernel_key(fn: Callable[..., Any]) -> str:
    """The profile key of a function: ``"module:qualname"``."""
    return f"{fn.__module__}:{fn.__qualname__}"


def kernel_name(fn: Callable[..., Any]) -> str:
    """How warnings and log records name any callable: its kernel key when registered, else ``module:qualname``
    (``?`` and its repr standing in for what a partial or a callable object lacks)."""
    spec = spec_for(fn)
    if spec is not None:
        return spec.key
    return f"{getattr(fn, '__module__', None) or '?'}:{getattr(fn, '__qualname__', None) or repr(fn)}"


def kernel(
    size: SizeFn | None = None,
    sample: SampleFn | None = None,
    name: str | None = None,
    *,
    default_threshold: int | None = None,
    workload: tuple[int, int] | None = None,
) -> Callable[[F], F]:
    """Register a pure, module-level kernel and return it unchanged (still picklable by reference).

    ``size(*args) -> int`` is the input size decisions are made on (default: ``len(args[0])``).
    ``sample(n) -> tuple`` deterministically builds positional arguments of size ``n`` for calibration.
    ``name`` overrides the profile key (default ``"module:qualname"``).
    ``default_threshold`` is used when the installed profile has no usable entry for this kernel
    (``None``: stay inline, the behaviour of a plain call).
    ``workload=(lo, hi)`` states the sizes production calls span, for ``calibrate`` to weigh; a plan's
    ``workload_range`` overrides it, and with neither ``calibrate`` assumes its measured range and says so.

    Usable as ``@kernel(...)`` or ``kernel(...)(existing_fn)``.
    """
    if size is not None and not callable(size):
        raise TypeError(f"kernel(size=...) must be callable, got {type(size).__name__}")
    if sample is not None and not callable(sample):
        raise TypeError(f"kernel(sample=...) must be callable, got {type(sample).__name__}")
    if default_threshold is not None:
        try:
            default_threshold = as_count(default_threshold)
        except ValueError as exc:
            raise ValueError(f"kernel(default_threshold=...): {exc}; expected an int >= 0 or None") from None
    stated = workload_range(workload, "kernel(workload=...)")

    def register(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"kernel(...) must wrap a function, got {type(fn).__name__}")
        qualname = getattr(fn, "__qualname__", "")
        if "<locals>" in qualname or "<lambda>" in qualname:
            raise TypeError(f"kernel {qualname!r} must be a module-level function: worker processes import it by name")
        key = name or kernel_key(fn)
        spec = KernelSpec(fn, key, size or default_size, sample, default_threshold, stated)
        _REGISTRY[fn] = spec
        _BY_KEY[key] = spec
        return fn

    return register


def spec_for(fn: Callable[..., Any]) -> KernelSpec | None:
    return _REGISTRY.get(fn)


def spec_by_key(key: str) -> KernelSpec | None:
    return _BY_KEY.get(key)


def registered() -> list[KernelSpec]:
    """Every registered kernel, in registration order."""
    return list(_BY_KEY.values())


def code_fingerprint(fn: Callable[..., Any]) -> str:
    """A hash that changes when the kernel's code (or its module's source) changes.

    The module source is hashed when it can be read, so edits to helpers the kernel calls mark the
    calibration stale too; otherwise the function's code object is hashed recursively.
    """
    import hashlib  # only when a profile entry is checked, not at import
    import inspect

    digest = hashlib.sha256()
    module = sys.modules.get(getattr(fn, "__module__", ""), None)
    source_file = None
    if module is not None:
        try:
            source_file = inspect.getsourcefile(module)
        except TypeError:
            source_file = None
    if source_file:
        try:
            with open(source_file, "rb") as fh:
                digest.update(fh.read())
            return "sha256:" + digest.hexdigest()[:32]
        except OSError:
            pass
    code = getattr(fn, "__code__", None)
    if code is None:
        return "unknown"
    _hash_code(digest, code)
    return "code-sha256:" + digest.hexdigest()[:32]


def _hash_code(digest: Any, code: Any) -> None:
    digest.update(code.co_code)
    digest.update(repr(code.co_names).encode())
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            _hash_code(digest, const)
        else:
            digest.update(repr(const).encode())
