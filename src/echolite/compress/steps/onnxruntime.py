"""``onnxruntime``: export the stage's module (float, or a PT2E int8 program) to ONNX and run it with
ONNX Runtime's CPU provider (or OpenVINO's CPU plugin). A PT2E program exported this way keeps some
convs in float; its precision says how many (and none in int8 is a failure, never a label)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from echolite.compress.backends.onnxruntime import export_onnx, float_export
from echolite.compress.base import (
    QUANTIZED,
    RUNTIME,
    CompressionError,
    Context,
    Stage,
    StepConfig,
    link_or_copy,
    register,
)
from echolite.compress.runners import RUNTIMES, runtime_details
from echolite.typed import setting


@dataclass(frozen=True)
class OnnxRuntimeConfig(StepConfig):
    """Export the module to ONNX and run it with ONNX Runtime's CPU provider (or OpenVINO's CPU
    plugin, ``runtime=openvino``)."""

    key: ClassVar[str] = "onnxruntime"
    method: ClassVar[str] = "onnx-export"
    family: ClassVar[str] = "runtime"
    consumes: ClassVar[str] = QUANTIZED  # any PyTorch module: float or a PT2E int8 program
    produces: ClassVar[str] = RUNTIME
    uses_data: ClassVar[bool] = False

    runtime: Literal["onnxruntime", "openvino"] = setting("onnxruntime", "what runs the exported file")



@register(OnnxRuntimeConfig)
def onnxruntime_step(stage: Stage, cfg: OnnxRuntimeConfig, ctx: Context) -> Stage:
    if stage.precision == "fp32":
        path = link_or_copy(float_export(stage.module, ctx, stage.model), ctx.work_dir)
    else:
        path = export_onnx(stage.module, ctx.example_input, ctx.work_dir / "model.onnx", ctx.input_name)
    runtime = RUNTIMES[cfg.runtime]
    details = {"exporter": "torch.onnx (dynamo)",
               **runtime_details(path, runtime, ctx.threads, ctx.example_input.shape)}
    precision = stage.precision
    if stage.precision != "fp32":
        n_int8 = details["int8_convs"]
        n_all = n_int8 + details["float_convs"]
        if n_int8 == 0:  # a label must be backed by what the runtime runs
            raise CompressionError(f"{cfg.key}: {runtime} runs none of the {n_all} convolutions of this "
                                   f"{stage.precision} program in int8; refusing to label it int8")
        precision = f"mixed int8/fp32 ({n_int8} of {n_all} convs int8)" if n_int8 < n_all else "int8"
    return stage.then(cfg.method, details, module=None, precision=precision, runtime=runtime,
                      artifacts={"onnx": path})
