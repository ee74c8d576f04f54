"""Timing loops shared by the benchmark rows, the profile and the frame timing."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np


def time_calls(call: Callable[[], Any], warmup: int, runs: int, max_seconds: float | None = None) -> np.ndarray:
    """Milliseconds of ``runs`` calls, timed one by one after ``warmup`` untimed ones.

    Args:
        call: what to time.
        warmup: untimed calls first.
        runs: timed calls at most.
        max_seconds: stop earlier once this much time went into the timed calls
            (at least 10 calls, or ``runs`` if fewer); None: always ``runs``.

    Returns:
        float64 (n,) milliseconds, n <= runs.
    """
    for _ in range(warmup):
        call()
    times = np.empty(runs, np.float64)
    clock = time.perf_counter_ns
    limit = None if max_seconds is None else max_seconds * 1e9
    spent, n = 0, 0
    for n in range(1, runs + 1):
        start = clock()
        call()
        times[n - 1] = clock() - start
        spent += times[n - 1]
        if limit is not None and n >= 10 and spent >= limit:
            break
    return times[:n] / 1e6


def percentiles(ms: np.ndarray, prefix: str) -> dict[str, float]:
    """``{prefix}_p50_ms`` and ``{prefix}_p90_ms`` of some times in ms, rounded to 0.1 µs."""
    p50, p90 = np.percentile(ms, [50, 90])
    return {f"{prefix}_p50_ms": round(float(p50), 4), f"{prefix}_p90_ms": round(float(p90), 4)}
