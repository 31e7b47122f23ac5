"""Latency of a callable on fixed inputs: warm-up excluded, first call timed separately.

Every variant is timed by the same function, in the same process, on the same device, with the
thread count fixed by the caller and recorded in the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

MIN_RUNS = 50  # timed calls at least ...
MIN_SECONDS = 5.0  # ... or this long, whichever comes last
MAX_RUNS = 2000
WARMUP_RUNS = 5


def time_callable(fn: Callable[[], object], min_runs: int = MIN_RUNS, min_seconds: float = MIN_SECONDS,
                  warmup: int = WARMUP_RUNS, sync: Callable[[], None] | None = None) -> dict:
    """Time ``fn()``; the first call (compilation, allocation) is reported on its own.

    Returns:
        {"first_call_ms", "p50", "p90", "mean", "min", "runs"} in milliseconds per call.
    """
    sync = sync or (lambda: None)
    t0 = time.perf_counter()
    fn()
    sync()
    first_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(max(0, warmup - 1)):
        fn()
    sync()
    times = []
    start = time.perf_counter()
    while len(times) < MAX_RUNS and (len(times) < min_runs or time.perf_counter() - start < min_seconds):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1e3)
    arr = np.asarray(times)
    return {"first_call_ms": first_ms, "p50": float(np.median(arr)), "p90": float(np.percentile(arr, 90)),
            "mean": float(arr.mean()), "min": float(arr.min()), "runs": len(arr)}

