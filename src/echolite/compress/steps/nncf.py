"""``nncf_ptq``: OpenVINO's own INT8 pipeline. The float module is converted with
``openvino.convert_model`` and quantized by NNCF (``nncf.quantize``) on the task's calibration
batches; with ``accuracy_control``, by ``nncf.quantize_with_accuracy_control``: NNCF's own search,
which returns layers to float until the task's primary metric on VAL is within ``max_drop`` of the
float model's (the task's budget unless set). Runs on OpenVINO's CPU plugin from the saved IR.

``nncf`` and ``openvino`` are imported where they are used (only these rows load them).
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch

from echolite.compress.backends.openvino import OPENVINO, convert_from_torch, openvino_details, save_ir
from echolite.compress.base import FLOAT, RUNTIME, CompressionError, Context, Stage, StepConfig, register
from echolite.typed import setting

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NNCFConfig(StepConfig):
    """NNCF post-training INT8 of the OpenVINO model converted from PyTorch.

    Attributes:
        preset: performance (symmetric activations, OpenVINO's fastest) | mixed (asymmetric activations).
        fast_bias_correction: NNCF's bias correction after quantizing (its default).
        accuracy_control: ``quantize_with_accuracy_control`` against the task's primary metric on VAL.
        max_drop: the allowed worsening of that metric (relative when the task's budget is relative,
            else in the metric's units); None = the task's budget.
        validation_items: VAL items the accuracy control scores on (0 = all of VAL).
        max_iterations: the accuracy control returns at most this many layers to float.
    """

    key: ClassVar[str] = "nncf_ptq"
    method: ClassVar[str] = "nncf-ptq"
    family: ClassVar[str] = "quantization"
    consumes: ClassVar[str] = FLOAT
    produces: ClassVar[str] = RUNTIME

    preset: Literal["performance", "mixed"] = setting("performance", "NNCF quantization preset")
    fast_bias_correction: bool = setting(True, "NNCF's fast bias correction")
    accuracy_control: bool = setting(False, "quantize_with_accuracy_control on the task's VAL metric")
    max_drop: float | None = setting(None, "allowed worsening for accuracy control; null = the task's budget")
    validation_items: int = setting(0, "VAL items the accuracy control scores (0 = all)")
    max_iterations: int = setting(8, "at most this many layers returned to float by accuracy control")

    @property
    def uses_budget(self) -> bool:
        """Its result depends on the task's budget (accuracy control without its own max_drop): the
        budget joins its store key."""
        return self.accuracy_control and self.max_drop is None

    def __post_init__(self):
        if self.validation_items < 0 or self.max_iterations < 1 or (self.max_drop is not None and self.max_drop < 0):
            raise ValueError("validation_items must be >= 0, max_iterations >= 1, max_drop >= 0")


@register(NNCFConfig)
def nncf_ptq(stage: Stage, cfg: NNCFConfig, ctx: Context) -> Stage:
    import nncf  # optional-heavy: only NNCF rows load it
    import openvino as ov

    float_model = convert_from_torch(copy.deepcopy(stage.module), ctx.example_input)
    calib = [x.numpy().astype(np.float32) for x in ctx.calibration()]
    calibration = nncf.Dataset(calib)
    preset = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}[cfg.preset]
    details = {"library": f"nncf {nncf.__version__}", "source": f"openvino.convert_model (PyTorch), openvino "
               f"{ov.__version__}", "preset": cfg.preset, "calibration_items": len(calib),
               "fast_bias_correction": cfg.fast_bias_correction,
               "activations": "int8 " + ("symmetric" if cfg.preset == "performance" else "asymmetric"),
               "weights": "int8 symmetric per-channel"}
    if not cfg.accuracy_control:
        quantized = nncf.quantize(float_model, calibration, preset=preset, subset_size=len(calib),
                                  fast_bias_correction=cfg.fast_bias_correction)
    else:
        quantized, details["accuracy_control"] = _with_accuracy_control(float_model, calibration, preset, cfg, ctx)
    path = save_ir(quantized, ctx.work_dir / "model.xml")
    details.update(openvino_details(path, ctx.threads, ctx.example_input.shape), runtime=OPENVINO)
    n_int8, n_float = details["int8_convs"], details["float_convs"]
    if n_int8 == 0:
        raise CompressionError(f"{cfg.key}: OpenVINO runs none of the {n_float} convolutions in int8; "
                               "refusing to call it int8")
    if n_float and not cfg.accuracy_control:
        raise CompressionError(f"{cfg.key}: OpenVINO runs {n_float} of {n_int8 + n_float} convolutions in float "
                               "although NNCF was asked to quantize all")
    removed = (details.get("accuracy_control") or {}).get("removed_quantizers", 0)
    precision = "int8" if not n_float else f"int8 ({n_float} of {n_int8 + n_float} convs fp32)"
    if removed:  # quantizers the accuracy control took out, before convs or not (e.g. an output Multiply)
        precision += f" ({removed} quantizer(s) removed by accuracy control)"
    return stage.then(cfg.method, details, module=None, precision=precision, runtime=OPENVINO,
                      artifacts={"openvino": path})  # its weights: model.bin beside it


def _with_accuracy_control(float_model, calibration, preset, cfg: NNCFConfig, ctx: Context):
    """NNCF's accuracy-aware search; the metric NNCF maximises is the task's primary metric, negated
    when lower is better (NNCF assumes higher is better).

    What NNCF reports is not trusted as the record: its first calls score single items (to learn
    what the function returns) and it returns its last model when it runs out of iterations. The
    float and the returned models are scored here on all the validation items, and whether the
    budget was reached is computed from those two scores."""
    import nncf
    import openvino as ov

    if ctx.validation is None or ctx.budget is None:
        raise CompressionError(f"{cfg.key}: accuracy control needs the task's VAL items and budget")
    inputs, targets, metric = ctx.validation(cfg.validation_items)
    sign = 1.0 if ctx.higher_is_better else -1.0
    max_drop, relative = budget_of(cfg, ctx)
    items = [(i, inputs[i:i + 1].float().numpy()) for i in range(len(inputs))]
    full_calls = []

    def score(compiled, data) -> float:
        data = list(data)
        out = torch.cat([torch.from_numpy(np.array(compiled(x)[0])).reshape(1, -1) for _, x in data])
        return float(metric(targets[[i for i, _ in data]], out.squeeze(1) if out.shape[1] == 1 else out))

    def validate(compiled, data) -> float:
        data = list(data)
        value = score(compiled, data)
        if len(data) == len(items):
            full_calls.append(value)
        return sign * value

    quantized = nncf.quantize_with_accuracy_control(
        float_model, calibration, nncf.Dataset(items, lambda item: item[1]), validate,
        max_drop=max_drop, drop_type=nncf.DropType.RELATIVE if relative else nncf.DropType.ABSOLUTE,
        preset=preset, subset_size=len(list(calibration.get_data())), fast_bias_correction=cfg.fast_bias_correction,
        advanced_accuracy_restorer_parameters=nncf.AdvancedAccuracyRestorerParameters(
            max_num_iterations=cfg.max_iterations))
    # NNCF's plain quantization of the same settings (what its accuracy control starts from and, when
    # it reverts nothing, returns: weights compressed to int8 in both)
    plain = nncf.quantize(float_model, calibration, preset=preset, subset_size=len(list(calibration.get_data())),
                          fast_bias_correction=cfg.fast_bias_correction)
    removed = quantizers(plain) - quantizers(quantized)  # NNCF re-quantizes when it reverts: count, not names
    lost = runtime_int8(plain) - runtime_int8(quantized)  # what OpenVINO runs in float now
    core = ov.Core()
    float_score = score(core.compile_model(float_model, "CPU"), items)
    final_score = score(core.compile_model(quantized, "CPU"), items)
    worse = sign * (float_score - final_score)  # > 0: the quantized model is worse
    drop = worse / abs(float_score) if relative else worse
    info = {"metric": "primary metric" + ("" if ctx.higher_is_better else " (negated for NNCF)"),
            "split": "VAL", "items": len(items), "max_drop": max_drop, "drop_type": "relative" if relative else
            "absolute", "max_iterations": cfg.max_iterations, "full_validations": len(full_calls),
            "float_score": float_score, "final_score": final_score, "drop": drop,
            "reached_budget": bool(drop <= max_drop), "removed_quantizers": removed,
            "int8_runtime_ops_lost": dict(lost)}
    log.info("NNCF accuracy control: VAL %.4f (float) -> %.4f (returned), drop %.4f vs max %.4f: %s", float_score,
             final_score, drop, max_drop, "within" if info["reached_budget"] else "NOT within the budget")
    return quantized, info


def quantizers(model) -> int:
    """How many FakeQuantize nodes (NNCF's quantizers) an OpenVINO model has."""
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def runtime_int8(model) -> Counter:
    """The layer types OpenVINO's CPU plugin runs in int8 (u8/i8) for ``model``, counted."""
    import openvino as ov

    ops = ov.Core().compile_model(model, "CPU").get_runtime_model().get_ops()
    return Counter(op.get_rt_info()["layerType"].astype(str) for op in ops
                   if op.get_rt_info()["runtimePrecision"].astype(str) in ("u8", "i8"))


def budget_of(cfg: NNCFConfig, ctx: Context) -> tuple[float, bool]:
    """The allowed worsening (and whether it is relative): the step's ``max_drop``, else the task's budget."""
    if cfg.max_drop is not None:
        return cfg.max_drop, bool(ctx.budget[1]) if ctx.budget else True
    return ctx.budget
