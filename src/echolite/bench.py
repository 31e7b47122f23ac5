"""Re-timing a finished run: every saved artifact opened from its files, timed in this one process
(``echolite bench RUN_DIR``)."""

from __future__ import annotations

import gc
import logging
from dataclasses import replace
from pathlib import Path

import torch

from echolite.benchmark import EXAMPLE_FILE, REFERENCE, time_variant
from echolite.compress.base import Stage
from echolite.compress.runners import open_runner
from echolite.config import from_dict, with_model
from echolite.env import atomic_write_json, cpu_name
from echolite.results import load_results
from echolite.store import Store
from echolite.tasks import task_class

log = logging.getLogger(__name__)


def bench_run(run_dir: str | Path, min_runs: int | None = None, min_seconds: float | None = None) -> dict:
    """Re-time every saved artifact of a run in this one process, from its files alone.

    FP32 eager is timed first and last; ratios are p50(variant) / p50(FP32 eager, first).
    """
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    cfg = from_dict(results["run"]["config"])
    mc = cfg.measure
    if min_runs is not None or min_seconds is not None:
        mc = replace(mc, latency_min_runs=min_runs or mc.latency_min_runs,
                     latency_min_seconds=mc.latency_min_seconds if min_seconds is None else min_seconds)
    store = Store(run_dir / results["run"]["store"])
    cls = task_class(cfg.task)

    def factory(overrides=None):
        return cls.build_model(with_model(cfg, overrides))

    example = torch.load(run_dir / EXAMPLE_FILE, weights_only=True)
    timings, skipped = {}, []
    ref = next(r for r in results["rows"] if r["name"] == REFERENCE)
    ref_runner = open_runner(Stage.load(store.root / ref["store"]), factory, mc.threads)
    timings[f"{REFERENCE} [{ref['backend']}] (first)"] = time_variant(ref_runner, example, mc)
    for row in results["rows"]:
        if row["name"] == REFERENCE:
            continue
        key = f"{row['name']} [{row.get('backend') or '—'}]"
        if row.get("family") == "device":
            skipped.append(f"{row['name']}: measured on {row.get('device')} in the run, not re-timed here")
            continue
        if row["status"] != "ok":
            skipped.append(f"{row['name']}: failed in the run ({row['error']})")
            continue
        runner = None
        try:
            runner = open_runner(Stage.load(store.root / row["store"]), factory, mc.threads)
            timings[key] = time_variant(runner, example, mc)
        except Exception as err:  # noqa: BLE001 - reported, never skipped silently
            skipped.append(f"{row['name']}: {type(err).__name__}: {err}".splitlines()[0])
            continue
        finally:
            runner = None  # released before the next row, as in the run (held runners slow the rest)
            gc.collect()
        log.info("%s: p50 %.2f ms", key, timings[key]["p50"])
    timings[f"{REFERENCE} [{ref['backend']}] (last)"] = time_variant(ref_runner, example, mc)
    ref_p50 = next(iter(timings.values()))["p50"]
    out = {"device": f"cpu: {cpu_name()}, {mc.threads} threads", "reference_p50_ms": ref_p50,
           "rows": [{"variant": k, "p50_ms": v["p50"], "p90_ms": v["p90"],
                     "first_call_ms": v["first_call_ms"],
                     "ratio_vs_fp32_eager": v["p50"] / ref_p50, "speedup": ref_p50 / v["p50"],
                     "throughput_items_per_s": v["throughput_items_per_s"]} for k, v in timings.items()],
           "not_timed": skipped}
    atomic_write_json(run_dir / "bench.json", out)
    return out
