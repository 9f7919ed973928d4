"""The executor's transport as a cost model (pure, stdlib only): what a call pays the pool besides its compute.

Measured by calibration (:mod:`offload_tuner.calibration._transport`), read by the policy and ``explain``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TransportModel:
    """The executor's own cost per call, from a payload sweep with a no-op kernel: fixed + per byte.

    The ``oob_*`` slopes price the bytes a call sends out of band, through shared memory (:mod:`_shm`): written once
    by the pool's feeder thread with the GIL released and mapped by the reader, so they cost the caller's loop far
    less per byte than in-band bytes do. Zero in profiles from before the shared-memory transport."""

    round_trip_s: float
    round_trip_per_byte_s: float
    caller_cpu_s: float
    caller_cpu_per_byte_s: float
    worker_cpu_s: float
    worker_cpu_per_byte_s: float
    oob_round_trip_per_byte_s: float = 0.0
    oob_caller_per_byte_s: float = 0.0
    oob_worker_per_byte_s: float = 0.0
    oob_round_trip_s: float = 0.0
    """What a call that uses a segment pays once for it (create, map, unlink), on top of the in-band fixed cost."""
    oob_caller_s: float = 0.0
    oob_worker_s: float = 0.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"transport {name} must be a finite number >= 0, got {value!r}")

    def round_trip(self, nbytes: float, oob_bytes: float = 0.0) -> float:
        oob = self.oob_round_trip_s + self.oob_round_trip_per_byte_s * oob_bytes if oob_bytes > 0 else 0.0
        return self.round_trip_s + self.round_trip_per_byte_s * nbytes + oob

    def caller_cpu(self, nbytes: float, oob_bytes: float = 0.0) -> float:
        oob = self.oob_caller_s + self.oob_caller_per_byte_s * oob_bytes if oob_bytes > 0 else 0.0
        return self.caller_cpu_s + self.caller_cpu_per_byte_s * nbytes + oob

    def worker_cpu(self, nbytes: float, oob_bytes: float = 0.0) -> float:
        oob = self.oob_worker_s + self.oob_worker_per_byte_s * oob_bytes if oob_bytes > 0 else 0.0
        return self.worker_cpu_s + self.worker_cpu_per_byte_s * nbytes + oob

    def to_json(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TransportModel:
        optional = {name for name in cls.__dataclass_fields__ if name.startswith("oob_")}
        try:
            return cls(
                **{name: data[name] for name in cls.__dataclass_fields__ if name not in optional or name in data}
            )
        except KeyError as exc:
            raise ValueError(f"transport model is missing {exc.args[0]!r}") from None
