"""``dynamic_ptq``: int8 weights, activations quantized at run time (torchao), nn.Linear only."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from echolite.compress.backends.pt2e import EAGER, export_program, torch_versions
from echolite.compress.base import FLOAT, QUANTIZED, CompressionError, Context, Stage, StepConfig, register


@dataclass(frozen=True)
class DynamicPTQConfig(StepConfig):
    """Weights int8, activations quantized at run time (torchao), on nn.Linear layers only."""

    key: ClassVar[str] = "dynamic_ptq"
    method: ClassVar[str] = "dynamic-ptq"
    family: ClassVar[str] = "quantization"
    consumes: ClassVar[str] = FLOAT
    produces: ClassVar[str] = QUANTIZED
    uses_data: ClassVar[bool] = False


@register(DynamicPTQConfig)
def dynamic_ptq(stage: Stage, cfg: DynamicPTQConfig, ctx: Context) -> Stage:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_  # heavy, optional

    model = copy.deepcopy(stage.module).eval()
    quantize_(model, Int8DynamicActivationInt8WeightConfig(),
              filter_fn=lambda m, _: isinstance(m, nn.Linear))
    covered = [n for n, m in model.named_modules()
               if isinstance(m, nn.Linear) and type(m.weight).__name__ != "Parameter"]
    convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    if not covered:
        raise CompressionError(f"{cfg.key}: no Linear layer was quantized")
    path = ctx.work_dir / "model.pt2"
    torch.export.save(export_program(model, ctx.example_input), path)
    details = {"library": "torchao quantize_", "config": "Int8DynamicActivationInt8WeightConfig",
               "quantized_ops": {"linear_int8": len(covered), "conv_int8": 0, "conv_total": convs},
               "covered_modules": covered, "versions": torch_versions()}
    precision = "int8 (Linear only)" if convs else "int8"
    return stage.then(cfg.method, details, module=model, precision=precision, runtime=EAGER,
                      artifacts={"pt2": path})
