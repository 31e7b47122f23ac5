"""``static_ptq``: static INT8 of the whole network (convs, residual adds, linear) via PT2E."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar, Literal

from echolite.compress.backends.pt2e import (
    calibrate,
    export_graph,
    finish_int8,
    quantization_config,
    quantizer,
)
from echolite.compress.base import FLOAT, QUANTIZED, CompressionError, Context, Stage, StepConfig, register
from echolite.typed import setting


@dataclass(frozen=True)
class StaticPTQConfig(StepConfig):
    """Static INT8 of the whole network (convs, residual adds, linear) via PT2E."""

    key: ClassVar[str] = "static_ptq"
    method: ClassVar[str] = "static-ptq"
    family: ClassVar[str] = "quantization"
    consumes: ClassVar[str] = FLOAT
    produces: ClassVar[str] = QUANTIZED

    observer: Literal["minmax", "histogram", "percentile"] = setting(
        "percentile", "activation range estimator (chosen on VAL: README, how the defaults were chosen)")
    per_channel: bool = setting(True, "per-output-channel weight scales (else one per tensor)")
    percentile: float = setting(99.99, "the percentile observer cuts off the top/bottom 100 - this %")
    keep_fp32: tuple[str, ...] = setting((), "module names (e.g. backbone.conv1) left in floating point")
    engine: Literal["x86"] = setting("x86", "quantizer/kernel family: x86 (oneDNN)")

    def __post_init__(self):
        if not 50.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], but got {self.percentile}")


@register(StaticPTQConfig)
def static_ptq(stage: Stage, cfg: StaticPTQConfig, ctx: Context) -> Stage:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e  # heavy, optional

    model = copy.deepcopy(stage.module).eval()
    unknown = sorted(set(cfg.keep_fp32) - {n for n, _ in model.named_modules()})
    if unknown:
        raise CompressionError(f"{cfg.key}: keep_fp32 names no module: {unknown}")
    graph = export_graph(model, ctx.example_input)
    prepared = prepare_pt2e(graph, quantizer(
        quantization_config(cfg.observer, cfg.per_channel, cfg.percentile), cfg.keep_fp32))
    n = calibrate(prepared, ctx, cfg.key)
    converted = convert_pt2e(prepared)
    details = {"library": "torchao PT2E", "quantizer": "X86InductorQuantizer", "engine": cfg.engine,
               "observer": cfg.observer, "per_channel": cfg.per_channel, "calibration_items": n,
               "keep_fp32": list(cfg.keep_fp32), "activations": "uint8 affine",
               "weights": "int8 symmetric " + ("per-channel" if cfg.per_channel else "per-tensor")}
    return finish_int8(stage, converted, cfg, ctx, details)
