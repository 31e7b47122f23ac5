"""``ort_static``: ONNX Runtime's own static QDQ quantization (quantize_static, U8S8) of the float
module, optionally accuracy-aware: per-layer sensitivity on a VAL subset, then the most sensitive
layers kept in float until the task's score is within a tolerance of FP32's."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch

from echolite.compress.backends.onnxruntime import (
    float_export,
    prepare,
    quantize_static,
    ranges_entry,
    weight_layers,
)
from echolite.compress.base import FLOAT, RUNTIME, CompressionError, Context, Stage, StepConfig, register
from echolite.compress.runners import RUNTIMES, onnx_runner, runtime_details
from echolite.compress.search.fallback import Candidates, fallback_search
from echolite.typed import setting

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrtStaticConfig(StepConfig):
    """ONNX Runtime static QDQ quantization (quantize_static), U8S8.

    Attributes:
        calibrator: minmax | entropy | percentile (ORT's CalibrationMethod).
        per_channel: per-output-channel weight scales.
        exclude: module names (``backbone.layer3.1.conv2``) kept in float.
        fallback: accuracy-aware: measure every layer's sensitivity on ``sensitivity_items`` VAL
            items and keep the most sensitive ones in float until the score is within
            ``max_rel_delta`` of FP32 (at most ``max_layers``).
        runtime: onnxruntime | openvino: what runs the quantized QDQ file.
    """

    key: ClassVar[str] = "ort_static"
    method: ClassVar[str] = "ort-qdq"
    family: ClassVar[str] = "quantization"
    consumes: ClassVar[str] = FLOAT
    produces: ClassVar[str] = RUNTIME

    calibrator: Literal["minmax", "entropy", "percentile"] = setting("minmax", "ORT's calibration method")
    per_channel: bool = setting(True, "per-output-channel weight scales")
    exclude: tuple[str, ...] = setting((), "module names (backbone.layer3.1.conv2) kept in float")
    fallback: bool = setting(False, "accuracy-aware: keep the most sensitive layers in float (see below)")
    max_rel_delta: float = setting(0.03, "the fallback stops within this relative distance of FP32's score")
    max_layers: int = setting(4, "the fallback keeps at most this many layers in float")
    sensitivity_items: int = setting(48, "VAL items scoring each layer's sensitivity")
    runtime: Literal["onnxruntime", "openvino"] = setting("onnxruntime", "what runs the quantized QDQ file")

    def __post_init__(self):
        if self.max_rel_delta < 0 or self.max_layers < 0 or self.sensitivity_items < 1:
            raise ValueError("max_rel_delta and max_layers must be >= 0, sensitivity_items >= 1")



@register(OrtStaticConfig)
def ort_static(stage: Stage, cfg: OrtStaticConfig, ctx: Context) -> Stage:
    fp32 = float_export(stage.module, ctx, stage.model)
    prep = prepare(fp32, ctx.work_dir)
    layers = weight_layers(prep)
    unknown = [m for m in cfg.exclude if m not in layers]
    if unknown:
        raise CompressionError(f"{cfg.key}: exclude names no weight layer: {unknown} "
                               f"(layers: {', '.join(list(layers)[:4])}, ...)")
    ranges, entry = ranges_entry(fp32, cfg.calibrator, ctx)
    out = ctx.work_dir / "model.onnx"
    if entry is not None and entry.complete:
        log.info("reusing the %s calibration ranges %s", cfg.calibrator, entry.path.name)
    if entry is not None and not entry.complete:
        log.info("calibrating ONNX Runtime ranges (%s)", entry.describe_miss())
        with entry.build() as tmp:
            n = quantize(prep, out, cfg, ctx, tmp / "ranges.json")
    else:
        n = quantize(prep, out, cfg, ctx, ranges)
    keep = tuple(cfg.exclude)
    details = {"library": "onnxruntime.quantization.quantize_static", "format": "QDQ",
               "activations": "uint8 affine", "weights": "int8 symmetric "
               + ("per-channel" if cfg.per_channel else "per-tensor"), "observer": cfg.calibrator,
               "calibration_items": n if n is not None else "cached ranges",
               "engine": "x86 (MLAS U8S8)"}
    if cfg.fallback:
        keep, search = _fallback(stage, cfg, ctx, prep, ranges, layers, out)
        details["sensitivity"] = search
    if keep:
        quantize(prep, out, cfg, ctx, ranges, tuple(layers[m] for m in keep))
    prep.unlink(missing_ok=True)
    details["kept_fp32"] = list(keep)
    runtime = RUNTIMES[cfg.runtime]
    details.update(runtime_details(out, runtime, ctx.threads, ctx.example_input.shape))
    if details["int8_convs"] == 0 or (details["float_convs"] and not keep):
        raise CompressionError(f"{cfg.key}: {runtime} runs {details['int8_convs']} int8 and "
                               f"{details['float_convs']} float convolutions; refusing to call it int8")
    precision = "int8" if not keep else f"int8 ({len(keep)} layer(s) fp32)"
    return stage.then(cfg.method, details, module=None, precision=precision, runtime=runtime,
                      artifacts={"onnx": out})




def quantize(prep: Path, out: Path, cfg: OrtStaticConfig, ctx: Context, ranges: Path,
             exclude_nodes: tuple[str, ...] = ()) -> int | None:
    return quantize_static(prep, out, ctx, ranges, cfg.calibrator, cfg.per_channel, exclude_nodes, cfg.key)


def _fallback(stage: Stage, cfg: OrtStaticConfig, ctx: Context, prep: Path, ranges: Path, layers: dict,
              all_int8: Path) -> tuple[tuple[str, ...], dict]:
    """The float-fallback search (:mod:`echolite.compress.search.fallback`) on this step's files."""
    if ctx.score is None:
        raise CompressionError(f"{cfg.key}: the fallback search needs the task's score function")
    module = copy.deepcopy(stage.module).eval()
    trial = ctx.work_dir / "trial.onnx"

    def fp32_run(x):
        with torch.no_grad():
            return module(x)

    def score_file(path: Path) -> float:
        return ctx.score(onnx_runner(path, RUNTIMES[cfg.runtime], ctx.threads), cfg.sensitivity_items)

    def with_float(names: tuple[str, ...]) -> float:
        quantize(prep, trial, cfg, ctx, ranges, tuple(layers[m] for m in names))
        return score_file(trial)

    candidate = Candidates(layers=tuple(layers), fp32_score=ctx.score(fp32_run, cfg.sensitivity_items),
                           all_int8_score=score_file(all_int8), score_with_float=with_float)
    keep, search = fallback_search(candidate, ctx.higher_is_better, cfg.max_rel_delta, cfg.max_layers)
    trial.unlink(missing_ok=True)
    search.update(items=cfg.sensitivity_items, split="VAL")
    return keep, search
