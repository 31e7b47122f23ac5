"""INT8 quantization through PyTorch 2 export (torchao PT2E), lowered with torch.compile.

Static PTQ:  export -> prepare_pt2e(X86InductorQuantizer) -> calibrate -> convert_pt2e
QAT:         export -> prepare_qat_pt2e -> fine-tune (task callback) -> convert_pt2e
Both give the same artifact: a Q/DQ ATen graph (int8 weights, uint8 activations) that
``torch.compile`` with ``freezing`` lowers to oneDNN int8 kernels (VNNI on this x86 CPU), and
that the ONNX exporter writes as a QDQ model for ONNX Runtime.

Dynamic PTQ: torchao ``quantize_`` with int8 dynamic activations and int8 weights on nn.Linear.
"""

from __future__ import annotations

import copy
import logging
import operator
import time
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from echolite.compress.base import (
    FLOAT,
    QUANTIZED,
    RUNTIME,
    CompressionError,
    Context,
    Stage,
    StepConfig,
    kept_epoch,
    link_or_copy,
    register,
)

log = logging.getLogger(__name__)
aten = torch.ops.aten
qd = "quantized_decomposed"

OBSERVERS = ("minmax", "histogram", "percentile")
ENGINES = ("x86",)  # X86InductorQuantizer (oneDNN, VNNI/AMX); ARM would need an XNNPACK quantizer
EAGER, INDUCTOR = "pytorch-eager", "torch.compile-inductor"


@dataclass(frozen=True)
class CompileConfig(StepConfig):
    """Run the float module through torch.compile (Inductor, weight freezing, one whole graph)."""

    key: ClassVar[str] = "compile"
    method: ClassVar[str] = "compile"
    family: ClassVar[str] = "runtime"
    consumes: ClassVar[str] = FLOAT
    produces: ClassVar[str] = RUNTIME
    uses_data: ClassVar[bool] = False


@dataclass(frozen=True)
class DynamicPTQConfig(StepConfig):
    """Weights int8, activations quantized at run time (torchao), on nn.Linear layers only."""

    key: ClassVar[str] = "dynamic_ptq"
    method: ClassVar[str] = "dynamic-ptq"
    family: ClassVar[str] = "quantization"
    consumes: ClassVar[str] = FLOAT
    produces: ClassVar[str] = QUANTIZED
    uses_data: ClassVar[bool] = False


@dataclass(frozen=True)
class StaticPTQConfig(StepConfig):
    """Static INT8 of the whole network (convs, residual adds, linear) via PT2E.

    Attributes:
        observer: activation range estimator: minmax, histogram (MSE-optimal, the x86 default)
            or percentile (cuts off the top/bottom ``100 - percentile`` %).
        per_channel: per-output-channel weight scales (else one per tensor).
        keep_fp32: module names (e.g. ``backbone.conv1``) left in floating point.
        engine: quantizer/kernel family; ``x86`` (oneDNN).
    """

    key: ClassVar[str] = "static_ptq"
    method: ClassVar[str] = "static-ptq"
    family: ClassVar[str] = "quantization"
    consumes: ClassVar[str] = FLOAT
    produces: ClassVar[str] = QUANTIZED

    observer: str = "percentile"  # chosen on VAL (README: how the defaults were chosen)
    per_channel: bool = True
    percentile: float = 99.99
    keep_fp32: tuple[str, ...] = ()
    engine: str = "x86"

    def __post_init__(self):
        if self.observer not in OBSERVERS:
            raise ValueError(f"observer must be one of {OBSERVERS}, but got {self.observer!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, but got {self.engine!r}")
        if not 50.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], but got {self.percentile}")
        if isinstance(self.keep_fp32, str):
            raise ValueError(f"keep_fp32 must be a list of module names, but got {self.keep_fp32!r}")
        object.__setattr__(self, "keep_fp32", tuple(self.keep_fp32))


@dataclass(frozen=True)
class QATConfig(StepConfig):
    """Fake-quant fine-tuning, then conversion to the same artifact as static PTQ.

    Started from the PTQ-calibrated ranges (``init=ptq``), QAT begins where min-max static PTQ
    ends (not the percentile default of ``static_ptq``): min-max observers run over the same
    calibration batches with fake quantization off.
    The activation ranges then stay fixed, weight ranges follow the weights (per channel), and
    BatchNorm trains on batch statistics unless ``freeze_bn`` (VAL chose training). With
    ``keep_best`` the VAL score of every epoch, the PTQ-initialised start (epoch 0) included,
    decides which weights are converted.

    Attributes:
        init: ptq (as above) | fresh (the x86 default: moving-average observers from scratch,
            ranges updating during the first epoch).
        freeze_bn: BatchNorm on its running statistics from the first step (else batch statistics
            while training).
    """

    key: ClassVar[str] = "qat"
    method: ClassVar[str] = "qat"
    family: ClassVar[str] = "quantization"
    consumes: ClassVar[str] = FLOAT
    produces: ClassVar[str] = QUANTIZED

    epochs: int = 1
    lr: float = 1e-5
    max_items: int = 0  # TRAIN items per epoch; 0 = all
    init: str = "ptq"
    freeze_bn: bool = False  # chosen on VAL (README: how the defaults were chosen)
    keep_best: bool = True
    engine: str = "x86"

    def __post_init__(self):
        if self.epochs < 1 or self.lr <= 0 or self.max_items < 0:
            raise ValueError(f"QAT needs epochs >= 1, lr > 0, max_items >= 0, got {self}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, but got {self.engine!r}")
        if self.init not in ("ptq", "fresh"):
            raise ValueError(f"init must be ptq or fresh, but got {self.init!r}")


# --- torch.export metadata repair -----------------------------------------------------------
# torch >= 2.10 no longer records `source_fn_stack` on exported nodes, and the fallback in
# get_source_partitions groups nodes by module, so a ReLU module called twice (as in every
# ResNet BasicBlock) becomes one partition with two outputs and X86InductorQuantizer fails with
# "Input partition has more than one output node" (pytorch/ao#3914). We record, per node, the
# source kind the quantizer's pattern matcher looks for.
_SOURCE_OF = {
    aten.conv2d.default: nn.Conv2d,
    aten.linear.default: nn.Linear,
    aten.relu.default: nn.ReLU,
    aten.relu_.default: nn.ReLU,
    aten.add.Tensor: operator.add,
    aten.add_.Tensor: operator.add,
    aten.mul.Tensor: operator.mul,
    aten.max_pool2d.default: nn.MaxPool2d,
    aten.adaptive_avg_pool2d.default: nn.AdaptiveAvgPool2d,
}


def _restore_source_fn_stack(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in _SOURCE_OF and not node.meta.get("source_fn_stack"):
            node.meta["source_fn_stack"] = [(node.name, _SOURCE_OF[node.target])]
    return gm


def export_program(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """torch.export with a dynamic batch dimension (traced at batch 2: batch 1 would specialise)."""
    pair = torch.cat([example[:1], example[:1]])
    batch = torch.export.Dim("batch", min=1, max=1024)
    return torch.export.export(model, (pair,), dynamic_shapes=({0: batch},))


def export_graph(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """ATen graph of ``model`` for PT2E, with the metadata the quantizer needs."""
    return _restore_source_fn_stack(export_program(model, example).module())


# --- observers --------------------------------------------------------------------------------
def _percentile_observer():
    from torchao.quantization.pt2e import MinMaxObserver

    class PercentileObserver(MinMaxObserver):
        """Min-max over batches of the per-batch ``percentile`` (and 100 - percentile) values."""

        def __init__(self, percentile: float = 99.99, max_samples: int = 1 << 20, **kwargs):
            super().__init__(**kwargs)
            self.percentile, self.max_samples = percentile, max_samples

        def forward(self, x_orig):
            if x_orig.numel() == 0:
                return x_orig
            x = x_orig.detach().to(self.min_val.dtype).flatten()
            if x.numel() > self.max_samples:
                step = x.numel() // self.max_samples + 1
                x = x[::step]
            q = torch.tensor([1.0 - self.percentile / 100.0, self.percentile / 100.0])
            lo, hi = torch.quantile(x.float(), q)
            self.min_val.copy_(torch.minimum(self.min_val, lo))
            self.max_val.copy_(torch.maximum(self.max_val, hi))
            return x_orig

    return PercentileObserver


def quantization_config(observer: str = "histogram", per_channel: bool = True,
                        percentile: float = 99.99, is_qat: bool = False):
    """X86 config (uint8 affine activations, int8 symmetric weights) with a chosen observer."""
    from torchao.quantization.pt2e import (
        HistogramObserver,
        MinMaxObserver,
        PerChannelMinMaxObserver,
    )
    from torchao.quantization.pt2e.quantizer import QuantizationConfig, QuantizationSpec
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        get_default_x86_inductor_quantization_config,
    )

    if is_qat:
        return get_default_x86_inductor_quantization_config(is_qat=True)
    eps = {"eps": 2**-12}
    act_ctr = {"minmax": MinMaxObserver.with_args(**eps),
               "histogram": HistogramObserver.with_args(**eps),
               "percentile": _percentile_observer().with_args(percentile=percentile, **eps)}[observer]
    act = QuantizationSpec(dtype=torch.uint8, quant_min=0, quant_max=255,
                           qscheme=torch.per_tensor_affine, is_dynamic=False,
                           observer_or_fake_quant_ctr=act_ctr)
    if per_channel:
        weight = QuantizationSpec(dtype=torch.int8, quant_min=-128, quant_max=127,
                                  qscheme=torch.per_channel_symmetric, ch_axis=0, is_dynamic=False,
                                  observer_or_fake_quant_ctr=PerChannelMinMaxObserver.with_args(**eps))
    else:
        weight = QuantizationSpec(dtype=torch.int8, quant_min=-128, quant_max=127,
                                  qscheme=torch.per_tensor_symmetric, is_dynamic=False,
                                  observer_or_fake_quant_ctr=MinMaxObserver.with_args(**eps))
    return QuantizationConfig(act, act, weight, None, False)


def _quantizer(config, keep_fp32=()):
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer

    quantizer = X86InductorQuantizer()
    quantizer.set_global(config)
    for name in keep_fp32:
        quantizer.set_module_name_qconfig(name, None)
    return quantizer


# --- inspection ---------------------------------------------------------------------------------
def count_quantized_ops(gm: torch.fx.GraphModule) -> dict:
    """How many convs/linears have int8 weights, and how many adds get quantized inputs.

    A conv counts when its weight comes from ``dequantize_per_channel/tensor`` of an int8 tensor
    and its activation from ``dequantize_per_tensor``; this is what oneDNN lowering fuses.
    """
    def is_dq(n):
        return isinstance(n, torch.fx.Node) and n.op == "call_function" and \
            str(n.target).startswith(f"{qd}.dequantize")

    counts = Counter()
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        if node.target in (aten.conv2d.default, aten.linear.default):
            kind = "conv" if node.target == aten.conv2d.default else "linear"
            counts[f"{kind}_total"] += 1
            if is_dq(node.args[0]) and is_dq(node.args[1]):
                counts[f"{kind}_int8"] += 1
        elif node.target in (aten.add.Tensor, aten.add_.Tensor):
            if all(is_dq(a) or (isinstance(a, torch.fx.Node) and a.target in
                                (aten.conv2d.default,)) for a in node.args[:2]) and \
                    any(is_dq(a) for a in node.args[:2]):
                counts["add_int8"] += 1
        elif str(node.target).startswith(f"{qd}.quantize"):
            counts["quantize_nodes"] += 1
        elif is_dq(node):
            counts["dequantize_nodes"] += 1
    return dict(counts)


def _drop_unused_attributes(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Remove float weights that conversion replaced by int8 constants (they would bloat files)."""
    gm.graph.eliminate_dead_code()
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name in [n for n, _ in gm.named_parameters()] + [n for n, _ in gm.named_buffers()]:
        if name not in used:
            owner, _, attr = name.rpartition(".")
            mod = gm.get_submodule(owner) if owner else gm
            if attr in mod._parameters:
                del mod._parameters[attr]
            elif attr in mod._buffers:
                del mod._buffers[attr]
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


# --- lowering ------------------------------------------------------------------------------------
def register_x86_lowering() -> None:
    """Register the Inductor passes that turn Q/DQ patterns into oneDNN int8 kernels.

    torchao registers them as a side effect of importing its X86InductorQuantizer module. A
    process that only loads a saved int8 program never imports it, and Inductor then compiles
    the graph to float kernels on dequantized weights (measured here: ~4x slower, no error).
    """
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401


def load_program(path) -> nn.Module:
    """Load a saved int8 ``.pt2`` as a runnable module (needs torch and torchao, not echolite)."""
    register_x86_lowering()  # also registers the quantized_decomposed ops the program uses
    return torch.export.load(path).module()


def compile_for_cpu(module: nn.Module):
    """torch.compile (Inductor, whole graph) with weight freezing, compiled lazily on the first call.

    Compilation happens inside the first call, so a latency measurement reports it as the
    first-call time, apart from the steady-state latency.
    """
    import torch._inductor.config as inductor_config

    register_x86_lowering()
    compiled = torch.compile(module, fullgraph=True)  # a graph break is an error, not a slow path

    def run(x):
        with inductor_config.patch(freezing=True), torch.no_grad():
            return compiled(x)

    return run


def _versions() -> dict:
    from echolite.cache import package_versions

    return package_versions(("torch", "torchao"))


def _finish_int8(stage: Stage, converted, cfg, ctx: Context, details: dict) -> Stage:
    converted = _drop_unused_attributes(converted)
    counts = count_quantized_ops(converted)
    details = {**details, "quantized_ops": counts, "versions": _versions()}
    if counts.get("conv_int8", 0) == 0 and counts.get("linear_int8", 0) == 0:
        raise CompressionError(f"{cfg.key}: nothing was quantized ({counts}); the quantizer "
                               "annotated nothing — refusing to report an fp32 model as int8")
    if counts.get("conv_int8", 0) < counts.get("conv_total", 0) and not details.get("keep_fp32"):
        raise CompressionError(f"{cfg.key}: only {counts['conv_int8']} of {counts['conv_total']} convs "
                               "quantized without keep_fp32")
    pt2 = ctx.work_dir / "model.pt2"
    torch.export.save(export_program(converted, ctx.example_input), pt2)
    details["lowering"] = "torch.compile (Inductor, freezing=True) -> oneDNN int8 kernels"
    kept = details.get("keep_fp32") or []
    precision = f"int8 ({len(kept)} layer(s) fp32)" if kept else "int8"
    return stage.then(cfg.method, details, module=converted, precision=precision, runtime=INDUCTOR,
                      artifacts={"pt2": pt2})


def _calibrate(prepared, ctx: Context, name: str) -> int:
    n = 0
    with torch.no_grad():
        for i, batch in enumerate(ctx.calibration(), 1):
            try:
                prepared(batch)
            except Exception as err:  # noqa: BLE001 - re-raised naming the batch
                raise CompressionError(f"{name}: calibration batch {i} of shape {tuple(batch.shape)} does "
                                       f"not run through the model ({type(err).__name__}: {err})") from err
            n += len(batch)
    if n == 0:
        raise CompressionError(f"{name}: the calibration set is empty")
    return n


@register(StaticPTQConfig)
def static_ptq(stage: Stage, cfg: StaticPTQConfig, ctx: Context) -> Stage:
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    model = copy.deepcopy(stage.module).eval()
    unknown = sorted(set(cfg.keep_fp32) - {n for n, _ in model.named_modules()})
    if unknown:
        raise CompressionError(f"{cfg.key}: keep_fp32 names no module: {unknown}")
    graph = export_graph(model, ctx.example_input)
    prepared = prepare_pt2e(graph, _quantizer(
        quantization_config(cfg.observer, cfg.per_channel, cfg.percentile), cfg.keep_fp32))
    n = _calibrate(prepared, ctx, cfg.key)
    converted = convert_pt2e(prepared)
    details = {"library": "torchao PT2E", "quantizer": "X86InductorQuantizer", "engine": cfg.engine,
               "observer": cfg.observer, "per_channel": cfg.per_channel, "calibration_items": n,
               "keep_fp32": list(cfg.keep_fp32), "activations": "uint8 affine",
               "weights": "int8 symmetric " + ("per-channel" if cfg.per_channel else "per-tensor")}
    return _finish_int8(stage, converted, cfg, ctx, details)


_BN_OPS = (aten.batch_norm.default, aten._native_batch_norm_legit.default, aten.cudnn_batch_norm.default)


def set_bn_training(gm: torch.fx.GraphModule, training: bool) -> None:
    """Switch the BatchNorm ops of an exported graph between batch statistics (training, running
    statistics updated) and running statistics (frozen), keeping the model's eps and momentum
    (torchao's move_exported_model_to_train/eval re-trace BatchNorm with defaults, pytorch/ao#4107)."""
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target in _BN_OPS:
            args = list(node.args)
            args[5] = training
            node.args = tuple(args)
    gm.recompile()


class TrainableProgram(nn.Module):
    """A PT2E-prepared (exported) graph that a training loop can switch with .train()/.eval().

    Exported graphs ignore ``module.train()``; their BatchNorm ops are rewritten instead. With
    ``bn_frozen`` BatchNorm uses its running statistics in training too (no updates).
    """

    def __init__(self, graph: torch.fx.GraphModule, bn_frozen: bool):
        super().__init__()
        self.graph_module = graph
        self.bn_frozen = bn_frozen
        set_bn_training(graph, False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph_module(x)

    def train(self, mode: bool = True):
        self.training = mode
        set_bn_training(self.graph_module, mode and not self.bn_frozen)
        return self


def qat_quantization_config():
    """The static PTQ spec (uint8 affine activations with min-max ranges, int8 symmetric
    per-channel weights) inside plain FakeQuantize modules: same converted structure as PTQ.

    Plain FakeQuantize (unlike the x86 default's fused moving-average one, whose ranges move 1 %
    per batch) refreshes its scale whenever its observer runs, so calibrating with fake
    quantization off yields the PTQ ranges (pytorch/pytorch#194815). The weight observer follows
    the current weights (averaging constant 1).
    """
    from torchao.quantization.pt2e import FakeQuantize, MinMaxObserver, MovingAveragePerChannelMinMaxObserver
    from torchao.quantization.pt2e.quantizer import QuantizationConfig, QuantizationSpec

    eps = {"eps": 2**-12}
    act = QuantizationSpec(dtype=torch.uint8, quant_min=0, quant_max=255, qscheme=torch.per_tensor_affine,
                           is_dynamic=False,
                           observer_or_fake_quant_ctr=FakeQuantize.with_args(observer=MinMaxObserver, **eps))
    weight_observer = MovingAveragePerChannelMinMaxObserver.with_args(averaging_constant=1.0)
    weight_fq = FakeQuantize.with_args(observer=weight_observer, **eps)
    weight = QuantizationSpec(dtype=torch.int8, quant_min=-128, quant_max=127,
                              qscheme=torch.per_channel_symmetric, ch_axis=0, is_dynamic=False,
                              observer_or_fake_quant_ctr=weight_fq)
    return QuantizationConfig(act, act, weight, None, True)


def _freeze_activation_ranges(gm: torch.fx.GraphModule) -> int:
    """Stop the activation observers (uint8 affine); weight observers keep following the weights."""
    from torchao.quantization.pt2e import FakeQuantizeBase

    n = 0
    for m in gm.modules():
        if isinstance(m, FakeQuantizeBase) and m.qscheme == torch.per_tensor_affine:
            m.disable_observer()
            n += 1
    return n


@register(QATConfig)
def qat(stage: Stage, cfg: QATConfig, ctx: Context) -> Stage:
    from torchao.quantization.pt2e import (
        disable_fake_quant,
        disable_observer,
        enable_fake_quant,
        enable_observer,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    if ctx.finetune is None:
        raise CompressionError(f"{cfg.key}: QAT needs a fine-tuning loop from the task")
    model = copy.deepcopy(stage.module).train()
    graph = export_graph(model, ctx.example_input)
    details = {"library": "torchao PT2E", "quantizer": "X86InductorQuantizer (is_qat)", "engine": cfg.engine,
               "init": cfg.init, "epochs": cfg.epochs, "lr": cfg.lr, "freeze_bn": cfg.freeze_bn,
               "activations": "uint8 affine", "weights": "int8 symmetric per-channel"}
    if cfg.init == "ptq":
        prepared = prepare_qat_pt2e(graph, _quantizer(qat_quantization_config()))
        set_bn_training(prepared, False)  # calibrate as PTQ does: BatchNorm on running statistics
        prepared.apply(disable_fake_quant)
        prepared.apply(enable_observer)
        details["calibration_items"] = _calibrate(prepared, ctx, cfg.key)
        prepared.apply(enable_fake_quant)
        details["frozen_activation_ranges"] = _freeze_activation_ranges(prepared)
        details["observer"] = "min-max (calibrated as PTQ, then fixed); weights: current min-max"
        on_epoch = None
    else:
        prepared = prepare_qat_pt2e(graph, _quantizer(quantization_config(is_qat=True)))
        details["observer"] = "moving-average min-max (x86 default), updating while training"

        def on_epoch(epoch: int) -> None:  # the default schedule: ranges freeze after epoch 1
            if epoch >= 1:
                prepared.apply(disable_observer)
    trainable = TrainableProgram(prepared, bn_frozen=cfg.freeze_bn)
    t0 = time.perf_counter()
    history = ctx.finetune(trainable, cfg.epochs, cfg.lr, on_epoch=on_epoch, max_items=cfg.max_items,
                           keep_best=cfg.keep_best, mixed_precision=False)
    trainable.eval()
    prepared.apply(disable_observer)
    converted = convert_pt2e(prepared)
    kept = kept_epoch(history, ctx.higher_is_better, cfg.keep_best)["epoch"]
    details.update(history=history, kept_epoch=kept, finetune_seconds=round(time.perf_counter() - t0, 1))
    return _finish_int8(stage, converted, cfg, ctx, details)


@register(DynamicPTQConfig)
def dynamic_ptq(stage: Stage, cfg: DynamicPTQConfig, ctx: Context) -> Stage:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

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
               "covered_modules": covered, "versions": _versions()}
    precision = "int8 (Linear only)" if convs else "int8"
    return stage.then(cfg.method, details, module=model, precision=precision, runtime=EAGER,
                      artifacts={"pt2": path})


@register(CompileConfig)
def compile_step(stage: Stage, cfg: CompileConfig, ctx: Context) -> Stage:
    weights = link_or_copy(stage.artifacts["state_dict"], ctx.work_dir)
    return stage.then(cfg.method, {"lowering": "torch.compile (Inductor, freezing=True, fullgraph=True)"},
                      module=None, runtime=INDUCTOR, artifacts={"state_dict": weights})
