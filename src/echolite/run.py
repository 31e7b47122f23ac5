"""The pipeline: (phantom) data -> validate -> train baseline (or reuse) -> evaluate -> results.

A run folder holds::

    config.yaml        resolved configuration
    environment.json   package versions, git commit, CPU flags
    run.log            the log of every invocation
    baseline/          best.pt, last.pt, predictions_test.csv
    variants/          compressed artifacts (.pt2, .onnx, state dicts) and one cached row file each
    results.json       one row per model variant (see echolite.report)
    report.md, *.png   regenerated from results.json by `echolite report`
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from echolite import EcholiteError
from echolite.benchmark import measure_all
from echolite.config import RunConfig, save_config
from echolite.data.echonet import read_filelist
from echolite.data.phantom import synthesize
from echolite.data.validate import drop_bad_rows, validate
from echolite.report import SCHEMA, write_report
from echolite.runtime import atomic_write_json, atomic_write_text, environment
from echolite.train import load_checkpoint, train

log = logging.getLogger(__name__)


def phantom_root(cfg: RunConfig, out: Path) -> Path:
    """Where the generated phantom of this config lives: shared by runs under the same parent."""
    return out.parent / f"phantom-n{cfg.data.phantom_n}-s{cfg.data.phantom_seed}-{cfg.data.size}px"


def prepare_data(cfg: RunConfig, out: Path, workers: int = 2) -> tuple[Path, pd.DataFrame, str]:
    """Resolve (generating the phantom if needed) and validate the dataset; returns its table.

    Raises:
        EcholiteError: validation failed (each problem is logged first).
    """
    if cfg.data.root:
        root, kind = Path(cfg.data.root), "EchoNet-layout dataset"
    else:
        root, kind = phantom_root(cfg, out), "echolite phantom"
        if not (root / "FileList.csv").is_file():
            t0 = time.perf_counter()
            log.info("generating %d phantom videos in %s", cfg.data.phantom_n, root)
            synthesize(root, cfg.data.phantom_n, cfg.data.phantom_seed, cfg.data.size, workers)
            log.info("phantom written in %.0f s", time.perf_counter() - t0)
    report = validate(root)
    for problem in report.problems:
        log.error("%s", problem)
    if report.ok:
        return root, read_filelist(root), kind
    if cfg.data.drop_bad_rows and not report.fatal:
        table = drop_bad_rows(report, out / "dropped_rows.csv")
        log.warning("%s; dropped them (list in %s)", report.summary(), out / "dropped_rows.csv")
        return root, table, kind
    raise EcholiteError(report.summary() + " (see above; data.drop_bad_rows=true skips bad rows)")


def run(cfg: RunConfig, out: str | Path, device: torch.device) -> dict:
    """Run the whole pipeline into ``out``; finished steps are reused. Returns results.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    env = environment()
    atomic_write_json(out / "environment.json", env)

    root, table, kind = prepare_data(cfg, out)
    t0 = time.perf_counter()
    best = train(cfg, root, table, out / "baseline", device)
    log.info("baseline ready (%.0f s in this invocation)", time.perf_counter() - t0)
    model, ckpt = load_checkpoint(best)
    rows = measure_all(cfg, out, model.cpu(), ckpt, root, table)
    fp32 = rows[0]
    # per-video baseline predictions, from the same pass that scored the fp32 row
    test = table[table["Split"] == "TEST"]
    predictions = pd.DataFrame({"FileName": test["FileName"].to_numpy(), "EF": fp32["predictions"]["ef"],
                                "EF_pred": fp32["predictions"]["ef_pred"], "Split": "TEST"})
    atomic_write_text(out / "baseline" / "predictions_test.csv", predictions.to_csv(index=False))
    m = fp32["metrics"]
    log.info("TEST MAE %.2f [%.2f, %.2f], R² %.3f (predicting the train mean: MAE %.2f)",
             m["mae"]["value"], m["mae"]["ci_low"], m["mae"]["ci_high"], m["r2"]["value"],
             m["mae_predict_reference"])
    results = {
        "schema": SCHEMA,
        "run": {
            "name": cfg.name,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["echolite", *sys.argv[1:]]),
            "config": cfg.to_dict(),
            "environment": env,
            "data": {"root": str(root), "kind": kind,
                     "splits": table["Split"].value_counts().to_dict()},
        },
        "rows": rows,
    }
    atomic_write_json(out / "results.json", results)
    write_report(out)
    return results
