"""Latency statistics in milliseconds. The nearest-rank percentile is the one definition
the load generator and the saga bench (tests/bench/saga_bench.py) share."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of values sorted ascending; None when empty."""
    if not sorted_values:
        return None
    rank = math.ceil(q / 100 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def latency_summary(values: Iterable[float]) -> dict[str, Any]:
    """count, min/mean/p50/p90/p99/max in milliseconds (None when there are no values)."""
    ordered = sorted(values)
    mean = sum(ordered) / len(ordered) if ordered else None
    return {
        "count": len(ordered),
        "min": ms(ordered[0] if ordered else None),
        "mean": ms(mean),
        "p50": ms(percentile(ordered, 50)),
        "p90": ms(percentile(ordered, 90)),
        "p99": ms(percentile(ordered, 99)),
        "max": ms(ordered[-1] if ordered else None),
    }
