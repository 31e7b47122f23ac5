"""The Python API: the public façade over the pipeline (what ``echolite run`` chains).

    from echolite import api
    cfg = api.config("quick", task="ef", sets=["train.epochs=2"])
    task = api.prepare(cfg, "runs/demo")                # data resolved or generated, validated
    checkpoint = api.train(task, "runs/demo")           # the FP32 baseline (trained or reused)
    results = api.compress(task, checkpoint, "runs/demo")  # every recipe built and measured
    api.results_table("runs/demo")                      # a DataFrame of the rows
    predict = api.load_variant("runs/demo", "static-int8-ort")  # a saved artifact, as deployed
    predict(clip)                                       # float (1, ...) input -> output tensor
    api.predict(["echo.mp4"], "runs/demo/static-int8-ov")  # EF per video, clips averaged
    api.export("runs/demo", "static-int8-ov", "bundle")   # a torch-free folder to copy anywhere

Every function reuses what the store already holds for the same inputs (see echolite.store and
echolite.identity).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from echolite import benchmark, pipeline
from echolite.config import RunConfig, apply_overrides, load_config
from echolite.deploy import bundle, runner
from echolite.deploy import predict as deploy_predict
from echolite.deploy.predict import open_variant
from echolite.env import resolve_device
from echolite.results import load_results, size_bytes


def config(preset: str | None = "quick", task: str | None = None, sets: list[str] | None = None) -> RunConfig:
    """A validated run configuration: a preset (or YAML path) for ``task``, then ``section.key=value``
    overrides."""
    return apply_overrides(load_config(preset, task=task), list(sets or []))


def device(name: str = "auto") -> torch.device:
    """``auto`` = the GPU if there is one, else the CPU."""
    return resolve_device(name)


def prepare(cfg: RunConfig, out: str | Path):
    """Resolve (or generate) and validate the task's data, then build the task object.

    Raises:
        EcholiteError: the data fails validation (each problem is logged first).
    """
    return pipeline.prepare(cfg, out)


def train(task, out: str | Path, dev: torch.device | None = None) -> Path:
    """The FP32 baseline for this task, data and config, trained or reused from the store;
    returns the path of its ``best.pt``. Under torchrun every process trains (DDP)."""
    return pipeline.train(task, out, dev or device(task.cfg.train.device))


def compress(task, checkpoint: str | Path, out: str | Path, dev: torch.device | None = None) -> dict:
    """Build (or reuse) every recipe of ``cfg.compress.methods`` from the checkpoint's model,
    measure every row in this process, write ``results.json``, the predictions CSV and the report.
    Returns the results."""
    return pipeline.compress(task, checkpoint, out, dev or device(task.cfg.train.device))


def run(cfg: RunConfig, out: str | Path, dev: torch.device | None = None) -> dict | None:
    """The whole pipeline into ``out`` (data, baseline, every recipe, report)."""
    return pipeline.run(cfg, out, dev or device(cfg.train.device))


def evaluate(checkpoint: str | Path, data: str | Path, split: str = "TEST", out: str | Path | None = None,
             dev: torch.device | None = None) -> dict:
    """A checkpoint's metrics (with CIs) and per-item predictions on ``split`` of any dataset."""
    out = out or pipeline.default_evaluation_out(checkpoint, data, split)
    return pipeline.evaluate(checkpoint, data, split.upper(), out, dev or device())


def results_table(run_dir: str | Path) -> pd.DataFrame:
    """The rows of a run's results.json as a pandas DataFrame (one row per variant)."""
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
    """The deployable file of a measured variant (.onnx, .xml, .pte, .pt2 or a state dict)."""
    return next(iter(open_variant(run_dir, name).stage.artifacts.values()))


def load_variant(run_dir: str | Path, name: str):
    """A saved variant opened from its files (.pt2, .onnx, state dict) as a deployment would:
    returns ``predict(x) -> y`` on float CPU tensors."""
    return open_variant(run_dir, name).runner()


def predict(videos: list[str | Path], model: str | Path, clips: int | None = None, fps: float | None = None,
            threads: int = 2) -> list[dict]:
    """EF of each video (files or folders) from ``RUN_DIR/VARIANT`` or an export bundle: one row per
    video (FileName, EF_pred, EF_sd, EF_min, EF_max, clips, ...), as ``echolite predict`` writes."""
    run, prep, _ = deploy_predict.resolve(model, threads, clips)
    paths = runner.find_videos(list(videos), runner.needs_fps(prep, fps))
    return runner.predict_paths(paths, run, prep, prep["clips"], fps)


def export(run_dir: str | Path, name: str, out: str | Path, clips: int | None = None) -> Path:
    """A torch-free bundle of a variant (``echolite export``); see :mod:`echolite.deploy.bundle`."""
    return bundle.export(run_dir, name, out, clips or deploy_predict.DEFAULT_CLIPS)


def search(cfg: RunConfig, out: str | Path, budget: str | None = None, dev: torch.device | None = None,
           test_check: bool = True) -> dict:
    """The fastest (or smallest, ``cfg.search.objective``) candidate within the budget, chosen on
    VAL and checked on TEST (``echolite search``); returns the record of ``out/search.json``."""
    return pipeline.search(cfg, out, dev or device(cfg.train.device), budget, test_check)


def backbone_costs(task_cls, cfg: RunConfig, archs: list[str], work_dir: str | Path) -> list[dict]:
    """Params, MACs, eager and ONNX Runtime p50 of each arch, untrained (``echolite backbones``)."""
    return benchmark.backbone_costs(task_cls, cfg, archs, Path(work_dir))
