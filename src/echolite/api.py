"""The Python API: one function per stage of the pipeline (what ``echolite run`` chains).

    from echolite import api
    cfg = api.config("quick", task="ef", sets=["train.epochs=2"])
    task = api.prepare(cfg, "runs/demo")                # data resolved or generated, validated
    checkpoint = api.train(task, "runs/demo")           # the FP32 baseline (trained or reused)
    results = api.compress(task, checkpoint, "runs/demo")  # every recipe built and measured
    api.results_table("runs/demo")                      # a DataFrame of the rows
    predict = api.load_variant("runs/demo", "static-int8-ort")  # a saved artifact, as deployed
    predict(clip)                                       # float (1, ...) input -> output tensor

Every function reuses what the store already holds for the same inputs (see echolite.cache).
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch

from echolite.config import RunConfig

log = logging.getLogger(__name__)


def config(preset: str | None = "quick", task: str | None = None, sets: list[str] | None = None) -> RunConfig:
    """A validated run configuration: a preset (or YAML path) for ``task``, then ``section.key=value``
    overrides."""
    from echolite.config import apply_overrides, load_config

    return apply_overrides(load_config(preset, task=task), list(sets or []))


def device(name: str = "auto") -> torch.device:
    """``auto`` = the GPU if there is one, else the CPU."""
    from echolite.runtime import resolve_device

    return resolve_device(name)


def prepare(cfg: RunConfig, out: str | Path):
    """Resolve (or generate) and validate the task's data, then build the task object.

    Raises:
        EcholiteError: the data fails validation (each problem is logged first).
    """
    from echolite.tasks import task_class

    cls = task_class(cfg.task)
    return cls(cfg, cls.prepare(cfg, Path(out)))


IDENTITY = "run-identity.json"


def claim(out: Path, task) -> None:
    """A run folder holds the results of one task, dataset and model (settings that only change
    what is compressed or how it is measured may change). Results of another never get replaced:
    choose another folder beside it (the store is shared, so nothing is retrained needlessly)."""
    import json

    from echolite import EcholiteError
    from echolite.cache import _diff
    from echolite.runtime import atomic_write_json, dist_info
    from echolite.train import NOT_MADE_FROM

    cfg = task.cfg.to_dict()
    identity = json.loads(json.dumps({
        "task": task.NAME, "data_key": task.data.key, "model": cfg["model"],
        "data": {k: v for k, v in cfg["data"].items() if k not in NOT_MADE_FROM},
        "train": {k: v for k, v in cfg["train"].items() if k not in ("device", "amp", "compile")}}))
    path = out / IDENTITY
    if path.is_file():
        held = json.loads(path.read_text())
        if held != identity:
            changed = "; ".join(_diff(held, identity)[:3])
            raise EcholiteError(f"{out} holds the results of another run ({changed}): choose another "
                                "--out (runs beside each other share the store) or delete it")
    elif dist_info()[0] == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, identity)


def train(task, out: str | Path, dev: torch.device | None = None) -> Path:
    """The FP32 baseline for this task, data and config, trained or reused from the store;
    returns the path of its ``best.pt``. Under torchrun every process trains (DDP)."""
    from echolite.run import baseline, store_for
    from echolite.train import training_precision

    dev = dev or device(task.cfg.train.device)
    store = store_for(out)
    amp, note = training_precision(task.cfg, dev, store)
    log.info("training precision: %s", note)
    return baseline(task, store, dev, amp)


def compress(task, checkpoint: str | Path, out: str | Path, dev: torch.device | None = None) -> dict:
    """Build (or reuse) every recipe of ``cfg.compress.methods`` from the checkpoint's model,
    measure every row in this process, write ``results.json``, the predictions CSV and the report.
    Returns the results."""
    import numpy as np

    from echolite import EcholiteError
    from echolite.benchmark import measure_all
    from echolite.config import save_config
    from echolite.report import SCHEMA, write_report
    from echolite.run import store_for
    from echolite.runtime import atomic_write_json, atomic_write_text, environment
    from echolite.tasks.base import EvalSet
    from echolite.train import baseline_fingerprint, load_checkpoint, training_precision

    cfg, out = task.cfg, Path(out)
    claim(out, task)
    _, _, model, ckpt = load_checkpoint(checkpoint)
    made_from, wanted = ckpt.get("fingerprint", {}), baseline_fingerprint(task, None)
    differ = [k for k in ("task", "data_key", "data", "model", "train") if made_from.get(k) != wanted[k]]
    if differ:
        raise EcholiteError(f"{checkpoint}: made from other {', '.join(differ)} than this task's settings; "
                            "compress the model of this data (api.train) or prepare the task it was made for")
    dev = dev or device(cfg.train.device)
    store = store_for(out)
    amp, amp_note = training_precision(cfg, dev, store)
    save_config(cfg, out / "config.yaml")
    env = environment()
    atomic_write_json(out / "environment.json", env)
    measured = measure_all(task, model, cfg.recipes(), store, out, dev, amp)
    rows = measured["rows"]
    ref = rows[0]
    ref["details"]["baseline"] = {"store": Path(checkpoint).parent.name, "best_epoch": ckpt["epoch"],
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
        "run": {"name": cfg.name, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": " ".join(["echolite", *sys.argv[1:]]), "config": cfg.to_dict(), "environment": env,
                "data": {**task.data.description, "key": task.data.key},
                "resolved": {"device": str(dev), "amp": amp_note, "compile_training": cfg.train.compile,
                             "memory_format": "channels_last (training)",
                             "processes": int(os.environ.get("WORLD_SIZE", "1"))},
                "store": os.path.relpath(store.root, out)},
        "task": task.spec(),
        "measure": measured["measure"],
        "rows": rows,
    }
    atomic_write_json(out / "results.json", results)
    write_report(out)
    return results


def results_table(run_dir: str | Path):
    """The rows of a run's results.json as a pandas DataFrame (one row per variant)."""
    import pandas as pd

    from echolite.report import load_results, size_bytes

    results = load_results(run_dir)
    primary = results["task"]["primary"]
    records = []
    for r in results["rows"]:
        rec = {"variant": r["name"], "family": r.get("family"), "status": r["status"],
               "precision": r.get("precision"), "backend": r.get("backend")}
        if r["status"] == "ok":
            v = r["metrics"]["values"][primary]
            d = (r["metrics"].get("paired_delta") or {}).get(primary, {})
            rec.update({primary: v["value"], f"{primary}_ci": (v["ci_low"], v["ci_high"]),
                        f"delta_{primary}": d.get("value"), "size_mb": size_bytes(r) / 1e6,
                        "p50_ms": r["latency_ms"]["p50"],
                        "throughput": r["latency_ms"]["throughput_items_per_s"]})
        else:
            rec["error"] = r.get("error")
        records.append(rec)
    return pd.DataFrame.from_records(records)


def artifact(run_dir: str | Path, name: str) -> Path:
    """The deployable file of a measured variant (.onnx, .pt2 or a state dict)."""
    from echolite.compress.base import Stage

    results, row = _row(run_dir, name)
    stage = Stage.load(Path(run_dir) / results["run"]["store"] / row["store"])
    return next(iter(stage.artifacts.values()))


def _row(run_dir, name: str) -> tuple[dict, dict]:
    from echolite import EcholiteError
    from echolite.report import load_results

    results = load_results(run_dir)
    row = next((r for r in results["rows"] if r["name"] == name and r["status"] == "ok"), None)
    if row is None:
        known = [r["name"] for r in results["rows"] if r["status"] == "ok"]
        raise EcholiteError(f"{run_dir}: no measured variant {name!r} (have: {', '.join(known)})")
    return results, row


def load_variant(run_dir: str | Path, name: str):
    """A saved variant opened from its files (.pt2, .onnx, state dict) as a deployment would:
    returns ``predict(x) -> y`` on float CPU tensors."""
    from echolite.compress.base import Stage
    from echolite.compress.runtimes import open_runner
    from echolite.config import from_dict
    from echolite.tasks import task_class

    results, row = _row(run_dir, name)
    cfg = from_dict(results["run"]["config"])
    stage = Stage.load(Path(run_dir) / results["run"]["store"] / row["store"])
    return open_runner(stage, lambda: task_class(cfg.task).build_model(cfg), cfg.measure.threads)
