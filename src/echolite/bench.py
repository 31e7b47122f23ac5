"""Re-timing a finished run: every saved artifact opened from its files and timed in this one
process, in interleaved rounds (``echolite bench RUN_DIR``).

A machine's speed drifts while it is timed (a cold start, a neighbour's job): timing the reference
once, first, made every ratio of a table depend on when that one measurement happened. Here every
variant is timed once per round, the reference in every round, over several rounds; a variant's
ratio is the median over rounds of (its p50 / the reference's p50 in the same round), reported
with its spread, and a reference that moved more than :data:`DRIFT_FLAG` between rounds is flagged.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from echolite import EcholiteError
from echolite.benchmark import EXAMPLE_FILE, REFERENCE, time_variant
from echolite.compress.backends.onnxruntime import ORT
from echolite.compress.backends.onnxruntime import profile as ort_profile
from echolite.compress.backends.openvino import OPENVINO
from echolite.compress.backends.openvino import profile as ov_profile
from echolite.compress.base import Stage
from echolite.compress.runners import open_runner
from echolite.config import from_dict, with_model
from echolite.env import atomic_write_json, cpu_name, pinned_threads
from echolite.measure.latency import time_callable
from echolite.results import load_results
from echolite.store import Store
from echolite.tasks import task_class

log = logging.getLogger(__name__)
DRIFT_FLAG = 0.10  # the reference's p50 moving more than this between rounds is flagged


def _open(run_dir: Path, results: dict):
    cfg = from_dict(results["run"]["config"])
    store = Store(run_dir / results["run"]["store"])
    cls = task_class(cfg.task)

    def factory(overrides=None):
        return cls.build_model(with_model(cfg, overrides))

    return cfg, store, factory


def bench_run(run_dir: str | Path, min_runs: int | None = None, min_seconds: float | None = None,
              rounds: int = 5) -> dict:
    """Re-time every saved artifact of a run in interleaved rounds, in this one process, from its
    files alone (module docstring); writes and returns ``bench.json``.

    Per round, each variant gets ``min_runs / rounds`` timed calls (at least 3) and
    ``min_seconds / rounds`` seconds; the order rotates from round to round (the reference's place
    too). Every runner stays open across the rounds (runtimes idle between their turns: ORT
    sessions do not spin).
    """
    if rounds < 1:
        raise EcholiteError(f"--rounds must be >= 1, got {rounds}")
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    cfg, store, factory = _open(run_dir, results)
    mc = cfg.measure
    if min_runs is not None or min_seconds is not None:
        mc = replace(mc, latency_min_runs=min_runs or mc.latency_min_runs,
                     latency_min_seconds=mc.latency_min_seconds if min_seconds is None else min_seconds)
    example = torch.load(run_dir / EXAMPLE_FILE, weights_only=True)
    runners, skipped, labels = {}, [], {}
    for row in results["rows"]:
        label = f"{row['name']} [{row.get('backend') or '—'}]"
        if row.get("family") == "device":
            skipped.append(f"{row['name']}: measured on {row.get('device')} in the run, not re-timed here")
        elif row["status"] != "ok":
            skipped.append(f"{row['name']}: failed in the run ({row['error']})")
        else:
            try:
                runners[row["name"]] = open_runner(Stage.load(store.root / row["store"]), factory, mc.threads)
                labels[row["name"]] = label
            except Exception as err:  # noqa: BLE001 - reported, never skipped silently
                skipped.append(f"{row['name']}: {type(err).__name__}: {err}".splitlines()[0])
    if REFERENCE not in runners:
        raise EcholiteError(f"{run_dir}: the reference row {REFERENCE!r} cannot be opened")
    per_round = {"min_runs": max(3, math.ceil(mc.latency_min_runs / rounds)),
                 "min_seconds": mc.latency_min_seconds / rounds}
    first_call, p50s = {}, {name: [] for name in runners}
    names = list(runners)
    with pinned_threads(mc.threads), torch.no_grad():
        for name, fn in runners.items():  # first calls (compilation) and warm-up, outside the rounds
            first_call[name] = time_callable(lambda fn=fn: fn(example), 1, 0.0, warmup=3)["first_call_ms"]
        for r in range(rounds):
            shift = r % len(names)
            for name in [*names[shift:], *names[:shift]]:  # every position, the reference's too
                t = time_callable(lambda fn=runners[name]: fn(example), per_round["min_runs"],
                                  per_round["min_seconds"], warmup=1)
                p50s[name].append(t["p50"])
            log.info("round %d/%d: fp32 eager p50 %.2f ms", r + 1, rounds, p50s[REFERENCE][-1])
    ref = np.array(p50s[REFERENCE])
    rows = []
    for name in runners:
        ratios = np.array(p50s[name]) / ref
        thr = time_variant(runners[name], example, replace(mc, latency_min_runs=3,
                                                           latency_min_seconds=per_round["min_seconds"]))
        rows.append({"variant": labels[name], "name": name, "p50_ms": float(np.median(p50s[name])),
                     "p50_ms_rounds": [round(v, 3) for v in p50s[name]],
                     "ratio_vs_fp32_eager": float(np.median(ratios)), "ratio_min": float(ratios.min()),
                     "ratio_max": float(ratios.max()), "speedup": float(np.median(1 / ratios)),
                     "first_call_ms": first_call[name],
                     "throughput_items_per_s": thr["throughput_items_per_s"]})
    drift = float(ref.max() / ref.min() - 1.0)
    out = {"device": f"cpu: {cpu_name()}, {mc.threads} threads", "rounds": rounds, "per_round": per_round,
           "protocol": "interleaved rounds: every variant once per round (order rotated, the reference's place "
                       "too), every runner open throughout; ratio = median over rounds of p50(variant) / "
                       "p50(reference) of that round",
           "reference_p50_ms": float(np.median(ref)), "reference_p50_ms_rounds": [round(v, 3) for v in ref],
           "reference_drift": drift, "reference_drift_flag": drift > DRIFT_FLAG,
           "rows": rows, "not_timed": skipped}
    atomic_write_json(run_dir / "bench.json", out)
    return out


def profile_variant(run_dir: str | Path, name: str, runs: int = 30) -> list[dict]:
    """Per-op times of one saved variant on its runtime (ONNX Runtime's profiler, OpenVINO's
    PERF_COUNT), batch 1, at the run's thread count: where the time of the fastest INT8 goes."""
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    cfg, store, _ = _open(run_dir, results)
    row = next((r for r in results["rows"] if r["name"] == name and r["status"] == "ok"), None)
    if row is None:
        raise EcholiteError(f"{run_dir}: no measured variant {name!r}")
    stage = Stage.load(store.root / row["store"])
    example = torch.load(run_dir / EXAMPLE_FILE, weights_only=True)
    path = Path(next(iter(stage.artifacts.values())))
    if stage.runtime == ORT:
        return ort_profile(path, cfg.measure.threads, example, runs)
    if stage.runtime == OPENVINO:
        return ov_profile(path, cfg.measure.threads, example, runs)
    raise EcholiteError(f"--profile: {name} runs on {stage.runtime}; per-op profiles are for ONNX Runtime and "
                        "OpenVINO rows")
