"""PyTorch 2 export (torchao PT2E) as a backend: export, quantizer configs and observers, what got
quantized, and lowering to oneDNN int8 kernels with torch.compile.

Static PTQ:  export -> prepare_pt2e(X86InductorQuantizer) -> calibrate -> convert_pt2e
QAT:         export -> prepare_qat_pt2e -> fine-tune (the task's loop) -> convert_pt2e
Both give the same artifact: a Q/DQ ATen graph (int8 weights, uint8 activations) that
``torch.compile`` with ``freezing`` lowers to oneDNN int8 kernels, and that the ONNX exporter
writes as a QDQ model.

torchao is imported where it is used: a heavy optional dependency, loaded only by the steps that
quantize (and by whoever opens a saved int8 program).
"""

from __future__ import annotations

import logging
import operator
from collections import Counter

import torch
import torch._inductor.config as inductor_config
from torch import nn

from echolite.compress.base import CompressionError, Context, Stage
from echolite.env import package_versions

log = logging.getLogger(__name__)
aten = torch.ops.aten
qd = "quantized_decomposed"

OBSERVERS = ("minmax", "histogram", "percentile")
EAGER, INDUCTOR = "pytorch-eager", "torch.compile-inductor"


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


def quantizer(config, keep_fp32=()):
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer

    q = X86InductorQuantizer()
    q.set_global(config)
    for name in keep_fp32:
        q.set_module_name_qconfig(name, None)
    return q


# --- inspection ---------------------------------------------------------------------------------
def count_quantized_ops(gm: torch.fx.GraphModule) -> dict:
    """How many convs/linears have int8 weights, and how many adds get quantized inputs.

    Every convolution (1-, 2- or 3-D) is in ``conv_total``, so a network whose 3-D convolutions
    the quantizer leaves in float is not reported as int8. A conv counts as int8 when its weight
    comes from ``dequantize_per_channel/tensor`` of an int8 tensor
    and its activation from ``dequantize_per_tensor``; this is what oneDNN lowering fuses.
    """
    def is_dq(n):
        return isinstance(n, torch.fx.Node) and n.op == "call_function" and \
            str(n.target).startswith(f"{qd}.dequantize")

    convs = (aten.conv1d.default, aten.conv2d.default, aten.conv3d.default)  # every conv counts in the total
    counts = Counter()
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        if node.target in (*convs, aten.linear.default):
            kind = "conv" if node.target in convs else "linear"
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


def drop_unused_attributes(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
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
    register_x86_lowering()
    compiled = torch.compile(module, fullgraph=True)  # a graph break is an error, not a slow path

    def run(x):
        with inductor_config.patch(freezing=True), torch.no_grad():
            return compiled(x)

    return run


def torch_versions() -> dict:
    versions = package_versions()
    return {k: versions[k] for k in ("torch", "torchao")}


def finish_int8(stage: Stage, converted, cfg, ctx: Context, details: dict) -> Stage:
    converted = drop_unused_attributes(converted)
    counts = count_quantized_ops(converted)
    details = {**details, "quantized_ops": counts, "versions": torch_versions()}
    if counts.get("conv_int8", 0) == 0 and counts.get("linear_int8", 0) == 0:
        raise CompressionError(f"{cfg.key}: nothing was quantized ({counts}); the quantizer "
                               "annotated nothing — refusing to report an fp32 model as int8")
    if counts.get("conv_int8", 0) < counts.get("conv_total", 0) and not details.get("keep_fp32"):
        raise CompressionError(f"{cfg.key}: only {counts.get('conv_int8', 0)} of {counts['conv_total']} convs "
                               "quantized without keep_fp32")
    pt2 = ctx.work_dir / "model.pt2"
    torch.export.save(export_program(converted, ctx.example_input), pt2)
    details["lowering"] = "torch.compile (Inductor, freezing=True) -> oneDNN int8 kernels"
    kept = details.get("keep_fp32") or []
    precision = f"int8 ({len(kept)} layer(s) fp32)" if kept else "int8"
    return stage.then(cfg.method, details, module=converted, precision=precision, runtime=INDUCTOR,
                      artifacts={"pt2": pt2})


def calibrate(prepared, ctx: Context, name: str) -> int:
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


def freeze_activation_ranges(gm: torch.fx.GraphModule) -> int:
    """Stop the activation observers (uint8 affine); weight observers keep following the weights."""
    from torchao.quantization.pt2e import FakeQuantizeBase

    n = 0
    for m in gm.modules():
        if isinstance(m, FakeQuantizeBase) and m.qscheme == torch.per_tensor_affine:
            m.disable_observer()
            n += 1
    return n


