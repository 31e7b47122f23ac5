"""Every variant of a trained EF model, built by the compression engine and measured side by side.

This is the EF task's side of the engine: it supplies the example input, calibration clips and the
QAT fine-tuning loop, and scores every variant with the same metrics, on the same TEST clips, with
the same latency protocol, in one process, on the CPU.

Rows are cached in ``<run>/variants/<name>.json`` so a rerun reuses finished variants.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from echolite import EcholiteError
from echolite.compress import (
    Context,
    DynamicPTQConfig,
    OnnxFP32Config,
    OrtStaticConfig,
    QATConfig,
    StaticPTQConfig,
    Variant,
    compress,
)
from echolite.compress.onnxrt import conv_node_names, export_onnx, ort_variant
from echolite.compress.pt2e import compile_for_cpu, load_program
from echolite.config import RunConfig
from echolite.data.echonet import EchoClips, EpochSampler
from echolite.measure.latency import time_callable
from echolite.measure.size import file_bytes
from echolite.metrics import regression_metrics
from echolite.runtime import atomic_write_json, cpu_name
from echolite.train import split_table

log = logging.getLogger(__name__)
SEEDS_INT8_CPU_MS = 871.0  # the student project's INT8-on-CPU latency, for context only


def method_config(name: str, cfg: RunConfig):
    """Config object for a method name of ``compress.methods`` (suffix = observer/calibrator)."""
    cc = cfg.compress
    if name == "fp32-onnxruntime":
        return OnnxFP32Config(name)
    if name == "dynamic-int8":
        return DynamicPTQConfig(name)
    if name.startswith("static-int8-ort"):
        suffix = name[len("static-int8-ort"):].lstrip("-")
        return OrtStaticConfig(name, suffix or cc.ort_calibrator, cc.per_channel)
    if name.startswith("static-int8"):
        suffix = name[len("static-int8"):].lstrip("-")
        return StaticPTQConfig(name, suffix or cc.observer, cc.per_channel)
    if name == "qat-int8":
        return QATConfig(name, cc.qat_epochs, cc.qat_lr)
    raise EcholiteError(f"compress.methods: unknown method {name!r}")


class EFTask:
    """Clips and callbacks of the EF task, loaded once and shared by every variant."""

    def __init__(self, cfg: RunConfig, root, table, model: torch.nn.Module):
        self.cfg, self.root, self.table, self.model = cfg, root, table, model.eval().cpu()
        self.test = self._clips("TEST")
        self.test_ef = split_table(table, "TEST")["EF"].to_numpy(np.float64)
        self.example = self.test[0]

    def _clips(self, split: str, limit: int | None = None, seed: int = 0) -> list[torch.Tensor]:
        rows = split_table(self.table, split)
        if limit:
            rows = rows.sample(n=min(limit, len(rows)), random_state=seed)
        ds = EchoClips(self.root, rows, self.cfg.data.n_frames, self.cfg.data.size, 0,
                       self.cfg.data.sampling, self.cfg.data.window_s)
        return [ds[i][0].unsqueeze(0).float() for i in range(len(ds))]  # (1, T, 3, H, W)

    def context(self, work_dir: Path) -> Context:
        cc = self.cfg.compress
        calib = self._clips(cc.calib_split, cc.calib_videos, seed=1)
        if not calib:
            raise EcholiteError(f"calibration set is empty ({cc.calib_split} split)")
        return Context(example_input=self.example, calibration=lambda: iter(calib),
                       work_dir=work_dir, finetune=self.finetune, threads=cc.threads,
                       calibration_key=f"{cc.calib_split}{len(calib)}")

    def finetune(self, module: torch.nn.Module, epochs: int, lr: float, on_epoch=None) -> None:
        """The training objective of :mod:`echolite.train`, on a (fake-quantized) graph module."""
        cfg = self.cfg
        rows = split_table(self.table, "TRAIN")
        if cfg.compress.qat_videos:
            rows = rows.sample(n=min(cfg.compress.qat_videos, len(rows)), random_state=0)
        ds = EchoClips(self.root, rows, cfg.data.n_frames, cfg.data.size, cfg.data.shift_px,
                       cfg.data.sampling, cfg.data.window_s)
        sampler = EpochSampler(len(ds), cfg.train.seed + 1000)
        loader = torch.utils.data.DataLoader(ds, batch_size=cfg.train.batch_size, sampler=sampler,
                                             drop_last=True, num_workers=cfg.data.num_workers)
        params = [p for p in module.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.train.weight_decay)
        ef_std = float(self.model.ef_std)
        for epoch in range(epochs):
            if on_epoch is not None:
                on_epoch(epoch)
            sampler.set_epoch(epoch)
            losses = []
            for clips, ef in loader:
                pred = module(clips.float())
                loss = (((pred - ef) / ef_std) ** 2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.train.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
                opt.step()
                losses.append(loss.item())
            log.info("QAT epoch: loss %.4f over %d steps", float(np.mean(losses)), len(losses))

    def predict(self, fn: Callable, clips: list[torch.Tensor]) -> np.ndarray:
        with torch.no_grad():
            return np.array([float(fn(c).reshape(-1)[0]) for c in clips])

    def metrics(self, pred: np.ndarray) -> dict:
        ev = self.cfg.eval
        m = regression_metrics(self.test_ef, pred, ev.threshold_ef, ev.n_bootstrap, self.cfg.train.seed,
                               reference=float(self.model.ef_mean))
        m["split"] = "TEST"
        return m


def time_variant(predict: Callable, example: torch.Tensor, cc) -> dict:
    """Batch-1 latency (ms/video) and throughput at ``throughput_batch`` (videos/s)."""
    lat = time_callable(lambda: predict(example), cc.latency_min_runs, cc.latency_min_seconds)
    big = example.expand(cc.throughput_batch, *example.shape[1:]).contiguous()
    thr = time_callable(lambda: predict(big), 5, 2.0, warmup=2)
    lat["throughput_batch"] = cc.throughput_batch
    lat["throughput_videos_per_s"] = cc.throughput_batch * 1e3 / thr["p50"]
    lat["throughput_first_call_ms"] = thr["first_call_ms"]
    lat["threads"] = torch.get_num_threads()
    return lat


def _row(variant: Variant, model_name: str, device: str) -> dict:
    return {"name": variant.name, "model": model_name, "method": variant.method,
            "precision": variant.precision, "backend": variant.backend, "device": device,
            "status": "ok", "error": None}


def _failed_row(name: str, method: str, model_name: str, device: str, err: BaseException) -> dict:
    return {"name": name, "model": model_name, "method": method, "precision": "—", "backend": "—",
            "device": device, "status": "failed", "error": f"{type(err).__name__}: {err}".splitlines()[0],
            "metrics": None, "size_bytes": None, "latency_ms": None, "predictions": None, "details": {}}


def _fingerprint(cfg: RunConfig, ckpt: dict) -> dict:
    d = cfg.to_dict()
    return {"compress": d["compress"], "data": d["data"], "eval": d["eval"],
            "baseline_epoch": ckpt["epoch"], "baseline_val_mae": ckpt["val_mae"]}


def measure_all(cfg: RunConfig, out: Path, model: torch.nn.Module, ckpt: dict, root, table) -> list[dict]:
    """The fp32 reference row and one row per method of ``cfg.compress.methods``."""
    cc = cfg.compress
    torch.set_num_threads(cc.threads)
    device = f"cpu: {cpu_name()}, {cc.threads} threads"
    model_name = f"resnet18-{cfg.model.pooling}"
    cache = out / "variants"
    cache.mkdir(parents=True, exist_ok=True)
    fingerprint = _fingerprint(cfg, ckpt)
    task = EFTask(cfg, root, table, model)
    ctx = task.context(cache)
    log.info("measuring on %s: %d TEST videos, calibration %d %s videos", device, len(task.test),
             cc.calib_videos, cc.calib_split)

    def eager(x):
        with torch.no_grad():
            return model(x)

    fp32_pred = task.predict(eager, task.test)
    fp32_first = time_variant(eager, task.example, cc)
    torch.save(model.state_dict(), cache / "fp32.state_dict.pt")
    fp32_row = {
        "name": "fp32", "model": model_name, "method": "baseline", "precision": "fp32",
        "backend": "pytorch-eager", "device": device, "status": "ok", "error": None,
        "metrics": task.metrics(fp32_pred), "latency_ms": fp32_first,
        "size_bytes": {"state_dict": file_bytes(cache / "fp32.state_dict.pt")},
        "predictions": _predictions(task, fp32_pred),
        "details": {"checkpoint": "baseline/best.pt", "best_epoch": ckpt["epoch"], "val_mae": ckpt["val_mae"],
                    "history": ckpt["history"], "seeds_int8_cpu_ms_for_context": SEEDS_INT8_CPU_MS},
    }
    rows = [fp32_row]
    for name in cc.methods:
        cached = cache / f"{name}.json"
        if cached.is_file():
            saved = json.loads(cached.read_text())
            if saved.get("fingerprint") == fingerprint:
                log.info("%s: reusing the finished variant from %s", name, cached)
                rows.extend(saved["rows"])
                continue
        t0 = time.perf_counter()
        try:
            new_rows = _build_and_measure(name, cfg, task, ctx, model, model_name, device, fp32_pred)
        except Exception as err:  # noqa: BLE001 - a failed method becomes a failed row, never a fallback
            log.error("%s failed: %s\n%s", name, err, traceback.format_exc())
            new_rows = [_failed_row(name, method_config(name, cfg).__class__.__name__, model_name,
                                    device, err)]
        for r in new_rows:
            r.setdefault("details", {})["build_and_measure_seconds"] = round(time.perf_counter() - t0, 1)
        atomic_write_json(cached, {"fingerprint": fingerprint, "rows": new_rows})
        rows.extend(new_rows)

    fp32_last = time_variant(eager, task.example, cc)
    fp32_row["details"]["latency_last_ms"] = fp32_last
    fp32_row["details"]["latency_drift_first_to_last"] = fp32_last["p50"] / fp32_first["p50"] - 1.0
    log.info("fp32 eager p50: first %.1f ms, last %.1f ms", fp32_first["p50"], fp32_last["p50"])
    return rows


def _predictions(task: EFTask, pred: np.ndarray) -> dict:
    return {"ef": np.round(task.test_ef, 3).tolist(), "ef_pred": np.round(pred, 3).tolist()}


def _measured_row(variant: Variant, task: EFTask, cc, model_name: str, device: str,
                  fp32_pred: np.ndarray, reference_pred: np.ndarray | None) -> dict:
    latency = time_variant(variant.predict, task.example, cc)  # first: its first call compiles
    pred = task.predict(variant.predict, task.test)
    row = _row(variant, model_name, device)
    row["metrics"] = task.metrics(pred)
    row["predictions"] = _predictions(task, pred)
    row["latency_ms"] = latency
    row["size_bytes"] = {kind: file_bytes(path) for kind, path in variant.artifacts.items()}
    row["artifacts"] = {kind: Path(path).name for kind, path in variant.artifacts.items()}  # in variants/
    details = dict(variant.details)
    details["max_abs_diff_vs_fp32_ef"] = float(np.max(np.abs(pred - fp32_pred)))
    if reference_pred is not None:
        details["parity_max_abs_diff_ef"] = float(np.max(np.abs(pred - reference_pred)))
    row["details"] = details
    log.info("%s [%s]: MAE %.2f, p50 %.1f ms", variant.name, variant.backend,
             row["metrics"]["mae"]["value"], row["latency_ms"]["p50"])
    return row


def _build_and_measure(name, cfg, task: EFTask, ctx: Context, model, model_name, device,
                       fp32_pred) -> list[dict]:
    cc = cfg.compress
    if name == "fp32-inductor":
        variant = Variant(name, "compile", "fp32", "torch.compile-inductor", compile_for_cpu(model),
                          {"state_dict": ctx.work_dir / "fp32.state_dict.pt"},
                          {"lowering": "torch.compile (Inductor, freezing=True)"})
        return [_measured_row(variant, task, cc, model_name, device, fp32_pred, fp32_pred)]
    config = method_config(name, cfg)
    variant = compress(model, config, ctx)
    if variant.precision == "fp32":
        return [_measured_row(variant, task, cc, model_name, device, fp32_pred, fp32_pred)]
    if variant.backend == "onnxruntime-cpu":
        row = _measured_row(variant, task, cc, model_name, device, fp32_pred, None)
        rows = [row]
        if cc.sensitivity_videos and cc.fallback_max_rel_delta_mae >= 0:
            rows += _sensitivity_and_fallback(config, variant, task, ctx, model_name, device, fp32_pred, row)
        return rows
    # PT2E int8: the eager Q/DQ module is the reference for the compiled kernels and for ONNX
    ref_pred = task.predict(variant.reference, task.test) if variant.reference is not None else None
    sd_path = ctx.work_dir / f"{variant.name}.state_dict.pt"
    torch.save(variant.reference.state_dict(), sd_path)
    variant.artifacts["state_dict"] = sd_path
    rows = [_measured_row(variant, task, cc, model_name, device, fp32_pred, ref_pred)]
    if name in ("static-int8", "qat-int8"):  # the same int8 graph, run by ONNX Runtime
        onnx_path = export_onnx(variant.reference, task.example, ctx.work_dir / f"{variant.name}.onnx")
        ort = ort_variant(onnx_path, f"{variant.name}-onnxruntime", variant.method, "int8", ctx,
                          {**variant.details, "exported_from": variant.name}, reference=variant.reference)
        rows.append(_measured_row(ort, task, cc, model_name, device, fp32_pred, ref_pred))
    return rows


def _sensitivity_and_fallback(config: OrtStaticConfig, base: Variant, task: EFTask, ctx: Context,
                              model_name, device, fp32_pred, int8_row) -> list[dict]:
    """Per-layer sensitivity on VAL (ΔMAE recovered by keeping one layer fp32), then fallback.

    Sensitivity of layer L = MAE(all int8) - MAE(all int8 except L), on ``sensitivity_videos`` VAL
    clips. The fallback variant keeps the most sensitive layers in fp32, one at a time, until the
    VAL MAE is within ``fallback_max_rel_delta_mae`` of fp32 (or ``fallback_max_layers`` reached).
    """
    from dataclasses import replace

    cc = task.cfg.compress
    val = task._clips("VAL", cc.sensitivity_videos, seed=2)
    val_rows = split_table(task.table, "VAL").sample(n=len(val), random_state=2)
    val_ef = val_rows["EF"].to_numpy(np.float64)

    def mae_of(variant) -> float:
        return float(np.mean(np.abs(task.predict(variant.predict, val) - val_ef)))

    fp32_mae = float(np.mean(np.abs(task.predict(lambda x: task.model(x), val) - val_ef)))
    layers = conv_node_names(ctx.work_dir / "fp32.onnx")
    all_mae = mae_of(base)
    sens = []
    for i, layer in enumerate(layers):
        v = compress(task.model, replace(config, name=f"{config.name}-sens-{i}", exclude=(layer,)), ctx)
        mae = mae_of(v)
        sens.append({"layer": layer, "val_mae_with_layer_fp32": mae, "delta_mae": all_mae - mae})
        Path(v.artifacts["onnx"]).unlink(missing_ok=True)
    sens.sort(key=lambda s: -s["delta_mae"])
    int8_row["details"]["sensitivity"] = {"split": "VAL", "videos": len(val), "fp32_mae": fp32_mae,
                                          "all_int8_mae": all_mae, "layers": sens}
    tolerance = fp32_mae * (1.0 + cc.fallback_max_rel_delta_mae)
    keep: list[str] = []
    current = all_mae
    for s in sens[: cc.fallback_max_layers]:
        if current <= tolerance:
            break
        keep.append(s["layer"])
        trial_cfg = replace(config, name=f"{config.name}-fallback-trial", exclude=tuple(keep))
        trial = compress(task.model, trial_cfg, ctx)
        current = mae_of(trial)
    if not keep:
        int8_row["details"]["fallback"] = (f"not needed: VAL MAE {all_mae:.3f} within "
                                           f"tolerance {tolerance:.3f}")
        return []
    fallback = compress(task.model, replace(config, name=f"{config.name}-fallback", exclude=tuple(keep)), ctx)
    fallback.method = "static-ptq + fp32 fallback"
    fallback.details["fallback"] = {"kept_fp32": keep, "val_mae": current, "val_fp32_mae": fp32_mae,
                                    "tolerance_rel": cc.fallback_max_rel_delta_mae}
    return [_measured_row(fallback, task, cc, model_name, device, fp32_pred, None)]


def bench_artifacts(run_dir: Path, min_runs: int | None = None, min_seconds: float | None = None) -> dict:
    """Re-time every saved artifact of a run in this one process, from the files alone.

    FP32 eager is timed first and last; ratios are p50(FP32 eager, first) / p50(variant).
    INT8 graphs load from ``.pt2`` (torch.export) and ``.onnx``: no training code is involved.
    """
    from dataclasses import replace as dc_replace

    from echolite.compress.onnxrt import session
    from echolite.config import from_dict
    from echolite.report import load_results
    from echolite.train import build_model

    results = load_results(run_dir)
    cfg = from_dict(results["run"]["config"])
    cc = cfg.compress
    if min_runs is not None or min_seconds is not None:
        seconds = min_seconds if min_seconds is not None else cc.latency_min_seconds
        cc = dc_replace(cc, latency_min_runs=min_runs or cc.latency_min_runs, latency_min_seconds=seconds)
    torch.set_num_threads(cc.threads)
    variants = Path(run_dir) / "variants"
    state = torch.load(variants / "fp32.state_dict.pt", map_location="cpu", weights_only=True)
    stats = {"pixel_mean": [0.0] * 3, "pixel_std": [1.0] * 3, "ef_mean": 0.0, "ef_std": 1.0}
    model = build_model(cfg, stats)
    model.load_state_dict(state)
    model.eval()
    example = torch.rand(1, cfg.data.n_frames, 3, cfg.data.size, cfg.data.size) * 255

    def eager(x):
        with torch.no_grad():
            return model(x)

    timings = {"fp32 [pytorch-eager] (first)": time_variant(eager, example, cc)}
    for row in results["rows"][1:]:
        if row["status"] != "ok":
            continue
        name, backend = row["name"], row["backend"]
        key = f"{name} [{backend}]"
        files = row.get("artifacts") or {}
        if backend == "onnxruntime-cpu":
            fn = _ort_fn(session(variants / files["onnx"], cc.threads))
        elif backend == "torch.compile-inductor" and row["precision"] == "int8":
            fn = compile_for_cpu(load_program(variants / files["pt2"]))
        elif backend == "torch.compile-inductor":
            fn = compile_for_cpu(model)
        elif name == "dynamic-int8":
            ctx = Context(example, lambda: iter([example]), variants / "bench")
            fn = compress(model, DynamicPTQConfig(name), ctx).predict
        else:
            continue
        timings[key] = time_variant(fn, example, cc)
        log.info("%s: p50 %.1f ms", key, timings[key]["p50"])
    timings["fp32 [pytorch-eager] (last)"] = time_variant(eager, example, cc)
    ref = timings["fp32 [pytorch-eager] (first)"]["p50"]
    out = {"device": f"cpu: {cpu_name()}, {cc.threads} threads", "reference_p50_ms": ref,
           "rows": [{"variant": k, "p50_ms": v["p50"], "p90_ms": v["p90"],
                     "first_call_ms": v["first_call_ms"], "ratio_vs_fp32_eager": v["p50"] / ref,
                     "speedup": ref / v["p50"], "throughput_videos_per_s": v["throughput_videos_per_s"]}
                    for k, v in timings.items()]}
    atomic_write_json(Path(run_dir) / "bench.json", out)
    return out


def _ort_fn(sess):
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x.numpy()})[0]
