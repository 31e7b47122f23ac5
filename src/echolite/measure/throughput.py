"""Throughput of a data pipeline: items per second through a DataLoader."""

from __future__ import annotations

import time

import torch


def loader_throughput(loader: torch.utils.data.DataLoader, warmup_batches: int = 2) -> dict:
    """Iterate ``loader`` once; items/s over the batches after ``warmup_batches`` (worker start-up).

    Returns:
        {"items": N timed, "seconds": s, "items_per_s": N/s, "batch_size", "num_workers"}
    """
    it = iter(loader)
    for _ in range(warmup_batches):
        next(it, None)
    n, t0 = 0, time.perf_counter()
    for batch in it:
        n += len(batch[0])
    seconds = time.perf_counter() - t0
    if n == 0:
        raise ValueError(f"loader has no batches after warmup_batches={warmup_batches}")
    return {"items": n, "seconds": seconds, "items_per_s": n / seconds,
            "batch_size": loader.batch_size, "num_workers": loader.num_workers}
