"""The pipeline: data (resolve/generate + validate) -> baseline (train or reuse) -> every recipe
built or reused and measured -> results.json -> report.

Everything reusable lives in the store beside the run folders (``<out>/../store``, see
:mod:`echolite.cache`): baseline-<key>/ (best.pt, last.pt), stage-<key>/ (one per recipe step),
onnx-<key>/, ranges-<key>/. A run folder holds::

    config.yaml           resolved configuration
    environment.json      package versions, git commit, CPU flags
    run.log               the log of every invocation
    example_input.pt      the batch-1 input every latency was measured on
    predictions_<split>.csv  per-item predictions of the FP32 baseline on the evaluation split
    results.json          one row per variant (see echolite.report)
    report.md, *.png      regenerated from results.json by `echolite report`
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from echolite.cache import Store
from echolite.config import RunConfig
from echolite.runtime import barrier, dist_info, end_distributed
from echolite.train import BEST, baseline_fingerprint, train_baseline

log = logging.getLogger(__name__)


def baseline(task, store: Store, device: torch.device, amp) -> Path:
    """The trained baseline of this task, data and config: reused if its key matches, else trained
    (resuming an interrupted training of the same key). Returns the path of ``best.pt``.

    Under torchrun every process trains (DistributedDataParallel); process 0 alone writes.
    """
    entry = store.entry("baseline", "baseline", baseline_fingerprint(task, amp))
    if entry.complete:
        log.info("baseline: reusing %s", entry.path.name)
        return entry.path / BEST
    rank = dist_info()[0]
    log.info("baseline: training into %s (%s)", entry.path.name, entry.describe_miss())
    t0 = time.perf_counter()
    if rank == 0:
        entry.open_in_place()
    barrier()
    best = train_baseline(task, entry.path, device, amp)
    if rank == 0:
        entry.mark_complete()
    barrier()
    log.info("baseline ready (%.0f s in this invocation)", time.perf_counter() - t0)
    return best


def store_for(out: Path) -> Store:
    """The store shared by the run folders beside ``out``."""
    return Store(Path(out).resolve().parent / "store")


def prepare_task(cfg: RunConfig, out: Path):
    """The task of ``cfg`` with its data ready: process 0 generates (phantom, digits) and
    validates first, the others of a torchrun launch then just validate."""
    from echolite import api

    rank = dist_info()[0]
    task = api.prepare(cfg, out) if rank == 0 else None
    barrier()
    return task if task is not None else api.prepare(cfg, out)


def run(cfg: RunConfig, out: str | Path, device: torch.device) -> dict | None:
    """Run the whole pipeline into ``out``; finished work is reused. Returns results.json.

    Under torchrun the baseline trains in every process; process 0 alone then compresses,
    measures and reports (the others return None).
    """
    from echolite import api

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg.recipes()  # validated already at load; nothing long has started
    task = prepare_task(cfg, out)
    api.claim(out, task)  # before any training: a folder of another run is refused now
    checkpoint = api.train(task, out, device)
    rank = dist_info()[0]
    end_distributed()
    if rank != 0:
        return None
    return api.compress(task, checkpoint, out, device)
