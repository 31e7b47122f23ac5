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
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from echolite.benchmark import measure_all
from echolite.cache import Store
from echolite.config import RunConfig, save_config
from echolite.report import SCHEMA, write_report
from echolite.runtime import atomic_write_json, atomic_write_text, environment
from echolite.tasks import task_class
from echolite.tasks.base import EvalSet
from echolite.train import BEST, baseline_fingerprint, load_checkpoint, train_baseline, training_precision

log = logging.getLogger(__name__)


def baseline(task, store: Store, device: torch.device, amp) -> Path:
    """The trained baseline of this task, data and config: reused if its key matches, else trained
    (resuming an interrupted training of the same key). Returns the path of ``best.pt``."""
    entry = store.entry("baseline", "baseline", baseline_fingerprint(task, amp))
    if entry.complete:
        log.info("baseline: reusing %s", entry.path.name)
        return entry.path / BEST
    log.info("baseline: training into %s (%s)", entry.path.name, entry.describe_miss())
    t0 = time.perf_counter()
    best = train_baseline(task, entry.open_in_place(), device, amp)
    entry.mark_complete()
    log.info("baseline ready (%.0f s in this invocation)", time.perf_counter() - t0)
    return best


def store_for(out: Path) -> Store:
    """The store shared by the run folders beside ``out``."""
    return Store(Path(out).resolve().parent / "store")


def run(cfg: RunConfig, out: str | Path, device: torch.device) -> dict:
    """Run the whole pipeline into ``out``; finished work is reused. Returns results.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    recipes = cfg.recipes()  # validated already at load; nothing long has started
    cls = task_class(cfg.task)
    data = cls.prepare(cfg, out)
    save_config(cfg, out / "config.yaml")
    env = environment()
    atomic_write_json(out / "environment.json", env)
    task = cls(cfg, data)
    store = store_for(out)
    amp, amp_note = training_precision(cfg, device, store)
    log.info("training precision: %s", amp_note)

    best = baseline(task, store, device, amp)
    _, _, model, ckpt = load_checkpoint(best)
    measured = measure_all(task, model, recipes, store, out, device, amp)
    rows = measured["rows"]
    ref = rows[0]
    ref["details"]["baseline"] = {"store": best.parent.name, "best_epoch": ckpt["epoch"],
                                  "val_score": ckpt["val_score"], "history": ckpt["history"]}
    ev = measured["measure"]["eval"]
    table = task.prediction_table(EvalSet(torch.empty(0), np.asarray(ev["targets"]), ev["ids"], ev["split"]),
                                  np.asarray(ref["prediction"]))
    atomic_write_text(out / f"predictions_{ev['split'].lower()}.csv",
                      table.to_csv(index=False, float_format="%.4f"))
    m = ref["metrics"]["values"][task.PRIMARY]
    log.info("%s %s %.4f [%.4f, %.4f]", ev["split"], task.PRIMARY, m["value"], m["ci_low"], m["ci_high"])
    results = {
        "schema": SCHEMA,
        "run": {
            "name": cfg.name,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["echolite", *sys.argv[1:]]),
            "config": cfg.to_dict(),
            "environment": env,
            "data": {**data.description, "key": data.key},
            "resolved": {"device": str(device), "amp": amp_note},
            "store": os.path.relpath(store.root, out),
        },
        "task": task.spec(),
        "measure": measured["measure"],
        "rows": rows,
    }
    atomic_write_json(out / "results.json", results)
    write_report(out)
    return results
