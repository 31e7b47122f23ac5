"""The measuring loop: for a task, every recipe -> build (or reuse) -> open from its files -> row.

Every row of one call is measured in this process, on the same inputs and device, timed at
``measure.threads`` threads (only the timing is pinned: building — calibration, QAT, fine-tuning —
runs on the process's own threads): the reference (FP32 eager) first and again last, every variant
in between. Built artifacts are reused from the store when their key matches; measurements never
are — a rerun re-measures every row, so a table never mixes timings of different processes. A
recipe that fails becomes a failed row with its error; nothing is replaced by another method.
"""

from __future__ import annotations

import copy
import gc
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from echolite.compress.backends.pt2e import EAGER, INDUCTOR
from echolite.compress.base import CompressionError, Context, Stage, apply
from echolite.compress.recipes import Recipe, build, reference_stage
from echolite.compress.runners import Runner, load_module, open_runner
from echolite.compress.steps import OnnxRuntimeConfig
from echolite.config import with_model
from echolite.env import atomic_torch_save, cpu_name, pinned_threads
from echolite.measure.complexity import macs_and_params
from echolite.measure.latency import time_callable
from echolite.measure.size import compressed_bytes, file_bytes
from echolite.metrics.bootstrap import paired_delta, resample_indices
from echolite.results import failed_row
from echolite.task_context import compression_context
from echolite.tasks.base import predict_outputs

log = logging.getLogger(__name__)
REFERENCE = "fp32"
EXAMPLE_FILE = "example_input.pt"


def time_variant(fn, example: torch.Tensor, mc) -> dict:
    """Batch-1 latency (ms per item) and throughput at ``mc.throughput_batch`` (items/s), on
    ``mc.threads`` threads."""
    with pinned_threads(mc.threads):
        lat = time_callable(lambda: fn(example), mc.latency_min_runs, mc.latency_min_seconds)
        big = example.expand(mc.throughput_batch, *example.shape[1:]).contiguous()
        thr = time_callable(lambda: fn(big), 5, mc.latency_min_seconds, warmup=2)
        lat["threads"] = torch.get_num_threads()
    lat["throughput_batch"] = mc.throughput_batch
    lat["throughput_items_per_s"] = mc.throughput_batch * 1e3 / thr["p50"]
    lat["throughput_first_call_ms"] = thr["first_call_ms"]
    return lat


def _check_runtime(stage: Stage, facts: dict) -> None:
    """What the runtime reports having run must match what the step quantized: an int8 program
    compiled to float kernels on dequantized weights, or an int8 linear layer running a float
    matmul, is a failure — not a row labelled int8."""
    if not stage.precision.startswith("int8") or not stage.details:
        return
    quantized = stage.details[-1].get("quantized_ops") or {}
    if stage.runtime == INDUCTOR:
        expected, got = quantized.get("conv_int8", 0), facts.get("int8_kernels", {}).get("qconv", 0)
        kind = "conv kernels (Inductor fell back to float kernels)"
    elif stage.runtime == EAGER:
        expected, got = quantized.get("linear_int8", 0), facts.get("int8_matmuls", 0)
        kind = "matmuls in the saved program"
    else:
        return
    if got < expected:
        raise CompressionError(f"{stage.method}: {got} int8 {kind}, expected {expected}")


@dataclass
class Selection:
    """The split choices are made on (VAL), scored for every row beside the reported split, so
    that picking a variant never looks at TEST."""

    evalset: object
    idx: np.ndarray
    ref_pred: np.ndarray | None = None


def measure(name: str, stage: Stage, runner: Runner, task, evalset, idx, mc, example,
            ref_pred: np.ndarray | None, selection: Selection | None = None) -> tuple[dict, np.ndarray]:
    """Time, predict and score one opened variant (and score it on the selection split)."""
    t0 = time.perf_counter()
    latency = time_variant(runner, example, mc)  # first: its first call compiles
    pred = task.decode(predict_outputs(runner, evalset, task.EVAL_BATCH))
    chosen_on = None
    if selection is not None:
        sel_pred = task.decode(predict_outputs(runner, selection.evalset, task.EVAL_BATCH))
        if selection.ref_pred is None:
            selection.ref_pred = sel_pred  # the reference row comes first
        else:
            fn = {task.PRIMARY: task.primary_fn()}
            chosen_on = {"split": selection.evalset.split, "n": len(selection.evalset),
                         "paired_delta": paired_delta(fn, selection.evalset.targets, sel_pred,
                                                      selection.ref_pred, selection.idx)}
    facts = runner.facts()
    _check_runtime(stage, facts)
    row = {"name": name, "method": stage.method, "precision": stage.precision, "backend": stage.runtime,
           "status": "ok", "error": None,
           "metrics": task.score(evalset, pred, idx, ref_pred),
           "prediction": np.round(pred, 4).tolist(),
           "size_bytes": {kind: file_bytes(p) for kind, p in stage.artifacts.items()},
           "size_compressed_bytes": compressed_bytes(next(iter(stage.artifacts.values())))
           if stage.artifacts else None,
           "latency_ms": latency,
           "details": {"steps": stage.details, "runtime": facts,
                       "measure_seconds": round(time.perf_counter() - t0, 1)}}
    if ref_pred is not None:
        row["details"]["vs_reference"] = task.compare(pred, ref_pred)
    if chosen_on is not None:
        row["selection"] = chosen_on
    primary = row["metrics"]["values"][task.PRIMARY]["value"]
    log.info("%s [%s, %s]: %s %.4f, p50 %.2f ms", name, stage.runtime, stage.precision, task.PRIMARY,
             primary, latency["p50"])
    return row, pred


def teacher_effect(rows: list[dict], task, evalset, idx) -> None:
    """Each row built with a teacher (a distill step, alpha > 0) beside a row whose recipe is the
    same but for alpha = 0 (the same student trained alone) gets ``details.vs_alone``: the paired
    Δ of every metric, distilled minus alone, on the same resamples — does the teacher help?"""
    def key(row):
        return json.dumps([{**s, "alpha": None} if s["step"] == "distill" else s for s in row["recipe"]],
                          sort_keys=True)

    def alpha(row):
        return next((s["alpha"] for s in row["recipe"] if s["step"] == "distill"), None)

    ok = [r for r in rows if r.get("status") == "ok" and r.get("recipe")]
    alone = {key(r): r for r in ok if alpha(r) == 0}
    for r in ok:
        other = alone.get(key(r)) if (alpha(r) or 0) > 0 else None
        if other is not None:
            r["details"]["vs_alone"] = {
                "alone": other["name"], "split": evalset.split,
                "paired_delta": paired_delta(task.metric_fns(), evalset.targets, np.asarray(r["prediction"]),
                                             np.asarray(other["prediction"]), idx)}


def backbone_costs(task_cls, cfg, archs: list[str], work_dir: Path) -> list[dict]:
    """What each architecture costs on this CPU, untrained weights (accuracy needs training: the
    ``student-<arch>`` recipes): parameters, MACs, batch-1 p50 in PyTorch eager and in ONNX Runtime,
    in one process on the task's input shape, with ratios to the first arch's eager p50
    (``echolite backbones``)."""
    mc = cfg.measure
    example = torch.rand(1, *task_cls.example_shape(cfg)) * 255
    out = []
    for arch in archs:
        torch.manual_seed(0)
        model = task_cls.build_model(with_model(cfg, {"arch": arch})).eval()
        cx = macs_and_params(model, example)
        with torch.no_grad():
            eager = time_variant(lambda x, m=model: m(x), example, mc)["p50"]
        folder = Path(work_dir) / arch
        folder.mkdir(parents=True, exist_ok=True)
        ctx = Context(example_input=example, calibration=lambda: iter([example]), work_dir=folder,
                      input_name=task_cls.INPUT_NAME, threads=mc.threads)
        stage = apply(OnnxRuntimeConfig(), Stage(model), ctx)
        ort_p50 = time_variant(open_runner(stage, None, mc.threads), example, mc)["p50"]
        out.append({"arch": arch, "params": cx["params"], "macs": cx["macs"], "eager_p50_ms": eager,
                    "ort_p50_ms": ort_p50})
        log.info("%s: %.2f M params, %.3f GMACs, eager %.2f ms, ONNX Runtime %.2f ms", arch, cx["params"] / 1e6,
                 cx["macs"] / 1e9, eager, ort_p50)
    for row in out:
        row["eager_ratio"] = row["eager_p50_ms"] / out[0]["eager_p50_ms"]
        row["ort_ratio"] = row["ort_p50_ms"] / out[0]["eager_p50_ms"]
    return out


def device_rows(task, model: torch.nn.Module, device: torch.device, evalset, idx, mc, example,
                ref_pred: np.ndarray) -> list[dict]:
    """The FP32 model timed on an accelerator: fp32, half precision (bf16 where supported, else
    fp16) and torch.compile, plus INT8 through ONNX Runtime's TensorRT provider where installed.

    Every row carries its device; its ratios are only ever against the fp32 row of that device.
    Inputs start on the CPU, as a video does; the output is copied back (which synchronises).
    """
    label = f"{device.type}: {torch.cuda.get_device_name(device) if device.type == 'cuda' else cpu_name()}"
    half = torch.bfloat16 if device.type != "cuda" or torch.cuda.is_bf16_supported() else torch.float16
    short = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}
    rows = []
    for name, dtype, compiled in ((f"{device.type}-fp32", None, False),
                                  (f"{device.type}-{short[half]}", half, False),
                                  (f"{device.type}-fp32-compile", None, True)):
        net = copy.deepcopy(model).to(device).eval()
        forward = torch.compile(net, fullgraph=True) if compiled else net

        def run(x, forward=forward, dtype=dtype):
            with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32,
                                                 enabled=dtype is not None):
                return forward(x.to(device, non_blocking=True)).float().cpu()

        stage = Stage(None, precision=short[dtype] + (" autocast" if dtype else ""),
                      runtime=f"torch{'.compile' if compiled else ''}-{device.type}")
        try:
            row, _ = measure(name, stage, Runner(run), task, evalset, idx, mc, example, ref_pred)
        except Exception as err:  # noqa: BLE001 - a failed device row is a failed row
            row = failed_row(name, "device", err, "measure")
        row.update(family="device", device=label)
        rows.append(row)
    providers = _ort_providers()
    if "TensorrtExecutionProvider" not in providers:
        rows.append({**failed_row(f"{device.type}-int8-tensorrt", "device", RuntimeError(
            "not available: this onnxruntime has no TensorrtExecutionProvider "
            f"(it has {', '.join(providers)}); install onnxruntime-gpu with TensorRT"), "measure"),
            "status": "unavailable", "device": label})
    else:
        rows.append({**failed_row(f"{device.type}-int8-tensorrt", "device", RuntimeError(
            "not implemented: TensorrtExecutionProvider is installed, but echolite does not build "
            "TensorRT int8 engines yet"), "measure"), "status": "unavailable", "device": label})
    return rows


def _ort_providers() -> list[str]:
    return ort.get_available_providers()


def measure_all(task, model: torch.nn.Module, recipes: list[Recipe], store, run_dir: Path,
                device: torch.device, amp=None) -> dict:
    """The reference row and one row per recipe; returns the ``measure`` and ``rows`` of results."""
    cfg, mc = task.cfg, task.cfg.measure
    device_label = f"cpu: {cpu_name()}, {mc.threads} threads"
    evalset = task.eval_set(cfg.eval.split)
    idx = resample_indices(len(evalset), cfg.eval.n_bootstrap, cfg.eval.seed)
    selection = None
    if evalset.split != "VAL":
        val = task.eval_set("VAL")
        selection = Selection(val, resample_indices(len(val), cfg.eval.n_bootstrap, cfg.eval.seed))
    ctx = compression_context(task, store, device, amp)
    example = ctx.example_input
    atomic_torch_save(example, run_dir / EXAMPLE_FILE)
    log.info("measuring on %s: %d %s %ss, %d calibration %ss from %s", device_label, len(evalset),
             evalset.split, task.ITEM, cfg.compress.calib_items, task.ITEM, cfg.compress.calib_split)

    base, base_key = reference_stage(model.eval().cpu(), store, ctx)
    ref_runner = open_runner(base, ctx.model_factory, mc.threads)
    ref_row, ref_pred = measure(REFERENCE, base, ref_runner, task, evalset, idx, mc, example, None,
                                selection)
    ref_row.update(family="reference", store=base.artifacts["state_dict"].parent.name)
    ref_row["details"]["complexity"] = macs_and_params(model, example)
    rows = [ref_row]

    def reload(stage: Stage):
        return load_module(stage, ctx.model_factory)

    for recipe in recipes:
        t0 = time.perf_counter()
        try:
            stage, info = build(recipe, base, base_key, ctx, store, reload)
        except Exception as err:  # noqa: BLE001 - a failed recipe is a failed row, never a fallback
            log.error("%s failed while building: %s", recipe.name, err, exc_info=True)
            rows.append(failed_row(recipe.name, recipe.family, err, "build"))
            continue
        try:
            runner = open_runner(stage, ctx.model_factory, mc.threads)
            row, _ = measure(recipe.name, stage, runner, task, evalset, idx, mc, example, ref_pred,
                             selection)
        except Exception as err:  # noqa: BLE001
            log.error("%s failed while measuring: %s", recipe.name, err, exc_info=True)
            rows.append(failed_row(recipe.name, recipe.family, err, "measure"))
            continue
        finally:
            runner = None  # release the runtime (its worker threads) before anything else is timed
            gc.collect()
        row.update(family=recipe.family, recipe=[s.as_dict() for s in recipe.steps], store=info["store"])
        row["details"]["build"] = info["steps"]
        row["details"]["build_and_measure_seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)

    teacher_effect(rows, task, evalset, idx)
    if torch.cuda.is_available():  # GPU rows: labelled with their device, never compared with CPU rows
        rows += device_rows(task, model, torch.device("cuda"), evalset, idx, mc, example, ref_pred)
    last = time_variant(ref_runner, example, mc)
    first = ref_row["latency_ms"]
    log.info("fp32 eager p50: first %.2f ms, last %.2f ms", first["p50"], last["p50"])
    measure_info = {"device": device_label, "cpu": cpu_name(), "threads": mc.threads, "latency_batch": 1,
                    "throughput_batch": mc.throughput_batch, "reference": REFERENCE,
                    "reference_p50_first_ms": first["p50"], "reference_p50_last_ms": last["p50"],
                    "reference_drift": last["p50"] / first["p50"] - 1.0,
                    "protocol": f"warm-up excluded, >= {mc.latency_min_runs} runs and >= "
                                f"{mc.latency_min_seconds:g} s per variant, median (p50) and p90, "
                                "one process",
                    "eval": {"split": evalset.split, "n": len(evalset), "ids": list(evalset.ids),
                             "targets": np.round(evalset.targets, 4).tolist(),
                             "n_bootstrap": cfg.eval.n_bootstrap, "seed": cfg.eval.seed}}
    return {"measure": measure_info, "rows": rows}
