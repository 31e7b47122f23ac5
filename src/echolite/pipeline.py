"""The pipeline: data (resolve/generate + validate) -> baseline (train or reuse) -> every recipe
built or reused and measured -> results.json -> report. It owns the run folder.

Everything reusable lives in the store beside the run folders (``<out>/../store``, see
:mod:`echolite.store`; what each entry is made from: :mod:`echolite.identity`): phantom-<key>/,
baseline-<key>/ (best.pt, last.pt), stage-<key>/ (one per recipe step), onnx-<key>/,
ranges-<key>/, amp-<key>/, frames/ (decoded videos). A run folder holds::

    run-identity.json     what its results are made from (another run is refused: choose another --out)
    config.yaml           resolved configuration
    environment.json      package versions, git commit, CPU flags
    run.log               the log of every invocation
    example_input.pt      the batch-1 input every latency was measured on
    predictions_<split>.csv  per-item predictions of the FP32 baseline on the evaluation split
    results.json          one row per variant (see echolite.results)
    report.md, *.png      regenerated from results.json by `echolite report`
    best.pt               (`echolite train` folders) a link to the baseline's checkpoint in the store
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from echolite import EcholiteError
from echolite.benchmark import measure_all
from echolite.compress.search.budget import parse_budget
from echolite.config import RunConfig, apply_overrides, save_config
from echolite.env import (
    atomic_write_json,
    atomic_write_text,
    barrier,
    broadcast,
    cpu_flags,
    cpu_name,
    dist_info,
    end_distributed,
    environment,
    resolve_amp,
    resolve_device,
)
from echolite.identity import amp_probe_inputs, baseline_inputs, describe_changes, run_identity
from echolite.measure.training import training_step_seconds
from echolite.metrics.bootstrap import resample_indices
from echolite.report import write_report
from echolite.results import FILE as RESULTS
from echolite.results import write_results
from echolite.search import run_search
from echolite.store import Store, digest, file_digest
from echolite.tasks import task_class
from echolite.tasks.base import SPLITS, EvalSet, model_runner, predict_outputs
from echolite.train import BEST, load_checkpoint, train_baseline

log = logging.getLogger(__name__)
IDENTITY = "run-identity.json"
FINGERPRINT_PARTS = ("task", "data_key", "data", "model", "train", "pretrained")  # what a checkpoint is of


def store_for(out: str | Path) -> Store:
    """The store shared by the run folders beside ``out``."""
    return Store(Path(out).resolve().parent / "store")


# --- data --------------------------------------------------------------------------------------------
def prepare(cfg: RunConfig, out: str | Path, splits=SPLITS):
    """The task of ``cfg`` with its data resolved (or generated) and validated. Under torchrun the
    first process of every node prepares first (generating the phantom there if its store does not
    hold it), the others then just validate."""
    cls = task_class(cfg.task)
    out, store = Path(out), store_for(out)
    local = dist_info()[2]
    task = cls(cfg, cls.prepare(cfg, out, store, splits), store) if local == 0 else None
    barrier()
    return task if task is not None else cls(cfg, cls.prepare(cfg, out, store, splits), store)


# --- the run folder ------------------------------------------------------------------------------------
def claim(out: str | Path, task, scope: str = "run") -> None:
    """A run folder holds the results of one run. ``scope="baseline"`` (``echolite train``) claims
    its baseline only; ``"run"`` claims what its results are made from too (how it compresses,
    evaluates and measures); ``"search"`` (``echolite search``) that and the search's space.
    A run whose settings differ from what the folder holds is refused
    before any work (runs beside each other share the store: nothing is trained twice)."""
    out = Path(out)
    identity = json.loads(json.dumps(run_identity(task, search=scope == "search"), default=str))
    wanted = {"baseline": identity["baseline"]} if scope == "baseline" else identity
    path = out / IDENTITY
    held = json.loads(path.read_text()) if path.is_file() else {}
    compared = {k: held[k] for k in wanted if k in held}
    changed = describe_changes(compared, {k: wanted[k] for k in compared})
    if changed:
        raise EcholiteError(f"{out} holds the results of another run ({'; '.join(changed[:3])}): choose "
                            "another --out (runs beside each other share the store) or delete it")
    if dist_info()[0] == 0 and set(wanted) - set(held):
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {**held, **wanted})


# --- the baseline ------------------------------------------------------------------------------------
def training_precision(cfg: RunConfig, device: torch.device, store: Store | None = None):
    """``train.amp`` resolved for this device (see env.resolve_amp). When ``auto`` must time a
    training step to decide, the timing is made once per CPU, torch version, model and batch and
    kept in the store, so a rerun decides the same way (and reuses its baseline)."""
    cls = task_class(cfg.task)
    shape = (cfg.train.batch_size, *cls.example_shape(cfg))

    def measure() -> dict:
        return training_step_seconds(lambda: cls.build_model(cfg), shape, device)

    def probe() -> dict:
        if store is None:
            return measure()
        entry = store.entry("amp", "training precision probe", amp_probe_inputs(
            cpu_name(), [f for f in cpu_flags() if f.startswith(("avx512", "amx"))], device.type,
            torch.get_num_threads(), cls.model_name(cfg), shape))
        if dist_info()[0] != 0:  # process 0 times, the others take its timings (no shared disk needed)
            return broadcast(None)
        if entry.complete:
            log.info("train.amp=auto: reusing the step timings of this CPU and model measured earlier (%s)",
                     entry.path.name)
        else:
            log.info("timing a training step in fp32 and in bf16 to resolve train.amp=auto (%s)",
                     entry.describe_miss())
            seconds = measure()
            with entry.build() as tmp:
                (tmp / "seconds.json").write_text(json.dumps(seconds))
        return broadcast(json.loads((entry.path / "seconds.json").read_text()))

    return resolve_amp(device, cfg.train.amp, probe)


def baseline(task, store: Store, device: torch.device, amp) -> Path:
    """The trained baseline of this task, data and config: reused if its key matches, else trained
    (resuming an interrupted training of the same key). Returns the path of ``best.pt``.

    Under torchrun every process trains (DistributedDataParallel); process 0 alone writes.
    """
    inputs = baseline_inputs(task, amp)
    entry = store.entry("baseline", "baseline", inputs)
    if broadcast(entry.complete):  # every process does what process 0 found
        log.info("baseline: reusing %s", entry.path.name)
        return entry.path / BEST
    rank = dist_info()[0]
    log.info("baseline: training into %s (%s)", entry.path, entry.describe_miss())
    t0 = time.perf_counter()
    if rank == 0:
        entry.open_in_place()
    barrier()
    best = train_baseline(task, entry.path, device, amp, json.loads(json.dumps(entry.inputs)))
    if rank == 0:
        entry.mark_complete()
    barrier()
    log.info("baseline ready (%.0f s in this invocation)", time.perf_counter() - t0)
    return best


def train(task, out: str | Path, device: torch.device) -> Path:
    """The FP32 baseline for this task, data and config, trained or reused from the store (the
    entry `echolite run` of the same settings reuses); ``out/best.pt`` links to its checkpoint.
    Returns the path of the store's ``best.pt``. Under torchrun every process trains (DDP)."""
    out = Path(out)
    link = out / BEST
    if link.exists() and not link.is_symlink():  # before any training
        raise EcholiteError(f"{link} is a file, not the link echolite writes: move it away or choose "
                            "another --out")
    store = store_for(out)
    amp, note = training_precision(task.cfg, device, store)
    log.info("training precision: %s", note)
    best = baseline(task, store, device, amp)
    if dist_info()[0] == 0 and out.resolve() != best.parent.resolve():
        out.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(best, out))
    return best


# --- compress, measure, report ------------------------------------------------------------------------
def compress(task, checkpoint: str | Path, out: str | Path, device: torch.device) -> dict:
    """Build (or reuse) every recipe of ``cfg.compress.methods`` from the checkpoint's model,
    measure every row in this process, write ``results.json``, the predictions CSV and the report.
    Returns the results."""
    cfg, out = task.cfg, Path(out)
    claim(out, task, "run")
    _, _, model, ckpt = load_checkpoint(checkpoint)
    made_from, wanted = ckpt.get("fingerprint", {}), baseline_inputs(task, None)
    differ = [k for k in FINGERPRINT_PARTS if made_from.get(k) != wanted[k]]
    if differ:
        raise EcholiteError(f"{checkpoint}: made from other {', '.join(differ)} than this task's settings; "
                            "compress the model of this data (api.train) or prepare the task it was made for")
    store = store_for(out)
    amp, amp_note = training_precision(cfg, device, store)
    save_config(cfg, out / "config.yaml")
    env = environment()
    atomic_write_json(out / "environment.json", env)
    measured = measure_all(task, model, cfg.recipes(), store, out, device, amp)
    rows = measured["rows"]
    ref = rows[0]
    ref["details"]["baseline"] = {"store": Path(checkpoint).resolve().parent.name, "best_epoch": ckpt["epoch"],
                                  "val_score": ckpt["val_score"], "history": ckpt["history"],
                                  "processes": ckpt.get("processes")}
    ev = measured["measure"]["eval"]
    table = task.prediction_table(EvalSet(torch.empty(0), np.asarray(ev["targets"]), ev["ids"], ev["split"]),
                                  np.asarray(ref["prediction"]))
    predictions = out / f"predictions_{ev['split'].lower()}.csv"
    atomic_write_text(predictions, table.to_csv(index=False, float_format="%.4f"))
    m = ref["metrics"]["values"][task.PRIMARY]
    log.info("%s %s %.4f [%.4f, %.4f]", ev["split"], task.PRIMARY, m["value"], m["ci_low"], m["ci_high"])
    results = {
        "run": {"name": cfg.name, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": " ".join(["echolite", *sys.argv[1:]]), "config": cfg.to_dict(), "environment": env,
                "data": {**task.data.description, "key": task.data.key},
                "resolved": {"device": str(device), "amp": amp_note, "compile_training": cfg.train.compile,
                             "memory_format": "channels_last (training)",
                             "processes": (ckpt.get("processes") or {}).get("world_size", 1)},
                "store": os.path.relpath(store.root, out)},
        "task": task.spec(),
        "measure": measured["measure"],
        "rows": rows,
    }
    write_results(out, results)
    _remove_stale(out, keep={RESULTS, predictions.name})
    write_report(out)
    return results


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Files of an earlier measurement of this run that the new results no longer back."""
    for path in [*out.glob("predictions_*.csv"), out / "bench.json"]:
        if path.is_file() and path.name not in keep:
            log.info("removing %s: the new results.json does not back it", path.name)
            path.unlink()


def run(cfg: RunConfig, out: str | Path, device: torch.device) -> dict | None:
    """Run the whole pipeline into ``out``; finished work is reused. Returns results.json.

    Under torchrun the baseline trains in every process; process 0 alone then compresses,
    measures and reports (the others return None).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg.recipes()  # validated already at load; nothing long has started
    task = prepare(cfg, out)
    claim(out, task, "run")  # before any training: a folder of another run is refused now
    checkpoint = train(task, out, device)
    rank = dist_info()[0]
    end_distributed()
    if rank != 0:
        return None
    return compress(task, checkpoint, out, device)


# --- the budgeted search ----------------------------------------------------------------------------
def search(cfg: RunConfig, out: str | Path, device: torch.device, budget: str | None = None,
           test_check: bool = True) -> dict:
    """``echolite search``: the baseline (trained or reused), then every candidate of ``cfg.search``
    built, scored on VAL and the winner checked on TEST (:mod:`echolite.search`). ``budget``: the
    ``--budget`` text (``5%``, ``0.5pp``); None = ``eval.budget`` or the task's."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = copy.deepcopy(cfg)
    cfg.eval.split = "VAL"  # examples, choices and scores from VAL; TEST is read once, for the winner
    if budget is not None:
        cfg.eval.budget = parse_budget(budget, task_class(cfg.task).BUDGET.relative)
    cfg.recipes()
    task = prepare(cfg, out)
    claim(out, task, "search")
    checkpoint = train(task, out, device)
    end_distributed()
    _, _, model, _ = load_checkpoint(checkpoint)
    store = store_for(out)
    amp, _ = training_precision(cfg, device, store)
    save_config(cfg, out / "config.yaml")
    return run_search(task, model, store, out, device, amp, task.budget().max_worsening, test_check)


# --- evaluate a checkpoint on any data --------------------------------------------------------------------
def default_evaluation_out(checkpoint: str | Path, data: str | Path, split: str) -> Path:
    where = Path(data).resolve()
    name = f"{where.name}-{digest(str(where))[:6]}-{split.lower()}-ckpt{file_digest(checkpoint)[:8]}"
    return Path("runs") / "evaluate" / name


def evaluate(checkpoint: str | Path, data: str | Path, split: str, out: str | Path, device: torch.device) -> dict:
    """Predict every item of ``split`` of ``data`` with the checkpoint's model (the data needs that
    split only: external validation sets hold nothing else).

    Writes ``predictions_<split>.csv`` and ``metrics_<split>.json`` into ``out``; returns the
    metrics (with 95 % bootstrap CIs).
    """
    cls, cfg, model, _ = load_checkpoint(checkpoint)
    cfg = apply_overrides(cfg, [f"data.root={Path(data)}"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    task = prepare(cfg, out, splits=(split,))
    evalset = task.eval_set(split)
    outputs = predict_outputs(model_runner(model.to(device), device), evalset, cfg.train.batch_size)
    pred = task.decode(outputs)
    idx = resample_indices(len(evalset), cfg.eval.n_bootstrap, cfg.eval.seed)
    metrics = {"checkpoint": str(checkpoint), "data": str(data), "data_key": task.data.key,
               **task.score(evalset, pred, idx)}
    atomic_write_text(out / f"predictions_{split.lower()}.csv",
                      task.prediction_table(evalset, pred).to_csv(index=False, float_format="%.4f"))
    atomic_write_json(out / f"metrics_{split.lower()}.json", metrics)
    return metrics


def bench_training_step(cfg: RunConfig, steps: int = 5) -> str:
    """The measurement behind ``train.amp=auto``, printed (``echolite bench-train``)."""
    cls = task_class(cfg.task)
    device = resolve_device(cfg.train.device)
    shape = (cfg.train.batch_size, *cls.example_shape(cfg))
    med = training_step_seconds(lambda: cls.build_model(cfg), shape, device, steps, warmup=2)
    simd = sorted(f for f in cpu_flags() if f in ("avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni"))
    _, auto = resolve_amp(device, "auto", probe=lambda: med)
    return (f"device: {device} ({cpu_name()}; {', '.join(simd) or 'no bf16/AMX flags'}), "
            f"{torch.get_num_threads()} threads, model {cls.model_name(cfg)}, batch "
            f"{cfg.train.batch_size}x{cls.example_shape(cfg)}\n"
            f"fp32 step: {med['fp32']:.3f} s   bf16 autocast step: {med['bf16']:.3f} s   "
            f"bf16/fp32 = {med['bf16'] / med['fp32']:.2f} (median of {steps})\n"
            f"train.amp=auto here: {auto}")
