"""A pickle-heavy kernel: many small dicts in, a few numbers out, almost no work in between.

Access-log rows as dicts are how such data usually arrives (JSON, database drivers, CSV readers). The
kernel touches two fields per row, so pickling the argument for a worker costs several times more than
the computation itself: offloading it can only lose, at any size. The calibration should learn that.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import TypedDict

from offload_tuner import kernel


class AccessLogRow(TypedDict):
    """One HTTP request as a log pipeline hands it over: a plain dict with these keys."""

    ts: float
    client: str
    method: str
    path: str
    status: int
    bytes: int
    duration_ms: float


METHODS = ("GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE", "HEAD")
RESOURCES = ("users", "orders", "items", "carts", "search", "sessions", "invoices")
STATUSES = (200, 201, 204, 301, 304, 400, 401, 403, 404, 429, 500, 502, 503)
STATUS_WEIGHTS = (70, 4, 3, 2, 6, 2, 2, 1, 5, 1, 2, 1, 1)


def _sample_access_log(n: int) -> tuple[list[AccessLogRow]]:
    """``n`` rows one 20 ms apart, with distinct client and path strings, as a real log would have."""
    rng = random.Random(n * 7919 + 19)
    statuses = rng.choices(STATUSES, STATUS_WEIGHTS, k=n)
    rows: list[AccessLogRow] = []
    for i, status in enumerate(statuses):
        rows.append(
            {
                "ts": round(1_700_000_000 + 0.02 * i + rng.random() * 0.02, 6),
                "client": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                "method": rng.choice(METHODS),
                "path": f"/api/v2/{rng.choice(RESOURCES)}/{rng.randrange(100_000)}",
                "status": status,
                "bytes": 0 if status in (204, 304) else int(rng.lognormvariate(8.0, 1.2)),
                "duration_ms": round(rng.expovariate(1 / 40), 3),
            }
        )
    return (rows,)


@kernel(sample=_sample_access_log)
def bytes_by_status(rows: Iterable[AccessLogRow]) -> dict[int, int]:
    """Total response bytes per status code, in status order: one dict lookup and one add per row."""
    totals: dict[int, int] = {}
    for row in rows:
        status = row["status"]
        totals[status] = totals.get(status, 0) + row["bytes"]
    return dict(sorted(totals.items()))
