"""``executorch``: the ARM/mobile path. PT2E int8 with XNNPACK's quantizer (symmetric int8, per-channel
weights), lowered to the XNNPACK delegate and saved as an ExecuTorch ``.pte``. Timed here on x86
(XNNPACK's x86 kernels); the same file runs on an ARM board's ExecuTorch runtime (README).

Quantizing and lowering run in a process of their own (:func:`echolite.compress.backends.executorch.
lower_isolated`): a crash of ExecuTorch's native code (seen once here, after other runtimes had run in
the same process) fails this row with its signal instead of ending the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from echolite.compress.backends.executorch import EXECUTORCH, dense, lower_isolated, require
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
    version = require()
    example = dense(ctx.example_input[:1])
    path = ctx.work_dir / "model.pte"
    found = lower_isolated(stage.module, example, [dense(x) for x in ctx.calibration()], cfg.per_channel, path,
                           cfg.key)
    counts = found["quantized_ops"]
    if counts.get("conv_int8", 0) < counts.get("conv_total", 0) or not counts.get("conv_total"):
        raise CompressionError(f"{cfg.key}: XNNPACKQuantizer quantized {counts.get('conv_int8', 0)} of "
                               f"{counts.get('conv_total', 0)} convs")
    details = {"library": f"executorch {version}", "quantizer": "XNNPACKQuantizer (torchao PT2E)",
               "activations": "int8 affine", "weights": "int8 symmetric " + ("per-channel" if cfg.per_channel
                                                                               else "per-tensor"),
               **found, "built_in": "a process of its own (spawn)",
               "timed_on": "x86 (XNNPACK's x86 kernels): not an ARM latency", "input_shape": list(example.shape)}
    return stage.then(cfg.method, details, module=None, precision="int8", runtime=EXECUTORCH,
                      artifacts={"pte": path})
