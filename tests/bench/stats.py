"""Small statistics and the shape of one checked figure."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def summary(values: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / max / count of a sample, rounded for the report."""
    return {
        "count": len(values),
        "p50": round(percentile(values, 50), 4),
        "p99": round(percentile(values, 99), 4),
        "max": round(max(values), 4) if values else math.nan,
    }


def check(
    name: str, value: float, target: float, *, unit: str = "", higher_is_better: bool = False
) -> dict[str, Any]:
    """One figure against its target: ok when value <= target (or >= if higher is better)."""
    ok = value >= target if higher_is_better else value <= target
    if math.isnan(value):
        ok = False
    return {
        "name": name,
        "value": round(value, 4),
        "target": target,
        "op": ">=" if higher_is_better else "<=",
        "unit": unit,
        "ok": bool(ok),
    }
