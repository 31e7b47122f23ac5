"""``executorch``: the ARM/mobile path. PT2E int8 with XNNPACK's quantizer (symmetric int8, per-channel
weights), lowered to the XNNPACK delegate and saved as an ExecuTorch ``.pte``. Timed here on x86
(XNNPACK's x86 kernels); the same file runs on an ARM board's ExecuTorch runtime (README)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

from echolite.compress.backends.executorch import EXECUTORCH, dense, lower, require, xnnpack_quantizer
from echolite.compress.backends.pt2e import calibrate, count_quantized_ops, export_graph
from echolite.compress.base import FLOAT, RUNTIME, CompressionError, Context, Stage, StepConfig, register
from echolite.typed import setting


@dataclass(frozen=True)
class ExecuTorchConfig(StepConfig):
    """PT2E (XNNPACKQuantizer) int8 -> ExecuTorch .pte with the XNNPACK delegate."""

    key: ClassVar[str] = "executorch"
    method: ClassVar[str] = "executorch-xnnpack"
    family: ClassVar[str] = "quantization"
    consumes: ClassVar[str] = FLOAT
    produces: ClassVar[str] = RUNTIME

    per_channel: bool = setting(True, "per-output-channel weight scales")


@register(ExecuTorchConfig)
def executorch_step(stage: Stage, cfg: ExecuTorchConfig, ctx: Context) -> Stage:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    version = require()
    example = dense(ctx.example_input[:1])
    graph = export_graph(copy.deepcopy(stage.module).eval(), example)
    prepared = prepare_pt2e(graph, xnnpack_quantizer(cfg.per_channel))
    n = calibrate(prepared, ctx, cfg.key)
    converted = convert_pt2e(prepared)
    counts = count_quantized_ops(converted)
    if counts.get("conv_int8", 0) < counts.get("conv_total", 0) or not counts.get("conv_total"):
        raise CompressionError(f"{cfg.key}: XNNPACKQuantizer quantized {counts.get('conv_int8', 0)} of "
                               f"{counts.get('conv_total', 0)} convs")
    path = ctx.work_dir / "model.pte"
    lowered = lower(converted, example, path)
    details = {"library": f"executorch {version}", "quantizer": "XNNPACKQuantizer (torchao PT2E)",
               "activations": "int8 affine", "weights": "int8 symmetric " + ("per-channel" if cfg.per_channel
                                                                               else "per-tensor"),
               "calibration_items": n, "quantized_ops": counts, **lowered,
               "timed_on": "x86 (XNNPACK's x86 kernels): not an ARM latency", "input_shape": list(example.shape)}
    return stage.then(cfg.method, details, module=None, precision="int8", runtime=EXECUTORCH,
                      artifacts={"pte": path})
