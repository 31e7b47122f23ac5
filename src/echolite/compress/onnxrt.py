"""ONNX export and ONNX Runtime (CPU) sessions: FP32, static QDQ INT8, and PT2E INT8 exported.

INT8 here is QDQ with unsigned 8-bit activations and signed per-channel 8-bit weights (U8S8),
the combination ONNX Runtime's x86 kernels (VNNI) run fast. At session creation ORT fuses
DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv etc.; we count those fused ops in the
optimized graph ORT itself writes out, so "quantized" means what the runtime really executes.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from echolite.compress.base import CompressionError, Context, Variant, register

log = logging.getLogger(__name__)

CALIBRATORS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
INT8_KERNELS = ("QLinearConv", "QLinearAdd", "QLinearMatMul", "QGemm", "QLinearGlobalAveragePool",
                "ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul", "QLinearConcat")


@dataclass
class OnnxFP32Config:
    """The FP32 model exported to ONNX, run by ONNX Runtime (a deploy-runtime FP32 baseline)."""

    name: str = "fp32-onnxruntime"


@dataclass
class OrtStaticConfig:
    """ONNX Runtime static QDQ quantization (quantize_static), U8S8.

    Attributes:
        calibrator: minmax | entropy | percentile (ORT's CalibrationMethod).
        per_channel: per-output-channel weight scales.
        exclude: ONNX node names kept in float (accuracy-aware fallback).
    """

    name: str = "static-int8-ort"
    calibrator: str = "minmax"
    per_channel: bool = True
    exclude: tuple[str, ...] = ()

    def __post_init__(self):
        if self.calibrator not in CALIBRATORS:
            raise ValueError(f"calibrator must be one of {tuple(CALIBRATORS)}, but got {self.calibrator!r}")
        self.exclude = tuple(self.exclude)


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Export with a dynamic batch dimension (TorchDynamo-based exporter); weights in one file."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    pair = torch.cat([example[:1], example[:1]])  # batch 1 would specialise the dimension
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (pair,), dynamo=True, verbose=False,
                                    dynamic_shapes=({0: batch},), input_names=["clips"],
                                    output_names=["output"])
    program.save(str(path), external_data=False)
    return path


def session(path: Path, threads: int, optimized_path: Path | None = None):
    """A CPU InferenceSession pinned to ``threads`` threads, spinning off (see measure.latency)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's worker threads spin after each call by default and would slow whatever runs next
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def op_counts(path: Path) -> dict:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(Counter(n.op_type for n in model.graph.node))


def _runner(sess):
    name = sess.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(sess.run(None, {name: x.numpy().astype(np.float32, copy=False)})[0])

    return run


def ort_variant(path: Path, name: str, method: str, precision: str, ctx: Context,
                details: dict, reference=None, require_int8: bool = False) -> Variant:
    """Open ``path`` in ORT, record the ops ORT really runs after fusion, and wrap it."""
    import onnxruntime as ort

    optimized = path.with_name(path.stem + ".ort-optimized.onnx")
    sess = session(path, ctx.threads, optimized)
    runtime_ops = op_counts(optimized)
    optimized.unlink(missing_ok=True)
    int8_ops = {k: v for k, v in runtime_ops.items() if k in INT8_KERNELS}
    details = {**details, "graph_ops": op_counts(path), "runtime_int8_ops": int8_ops,
               "runtime_float_convs": runtime_ops.get("Conv", 0) + runtime_ops.get("FusedConv", 0),
               "versions": {"onnxruntime": ort.__version__}, "threads": ctx.threads,
               "provider": sess.get_providers()[0]}
    if require_int8 and int8_ops.get("QLinearConv", 0) == 0:
        raise CompressionError(f"{name}: ONNX Runtime runs no int8 convolution after fusion "
                               f"(runtime ops {runtime_ops}); refusing to call it int8")
    return Variant(name=name, method=method, precision=precision, backend="onnxruntime-cpu",
                   predict=_runner(sess), artifacts={"onnx": path}, details=details, reference=reference)


@register(OnnxFP32Config)
def onnx_fp32(model: nn.Module, cfg: OnnxFP32Config, ctx: Context) -> Variant:
    path = export_onnx(copy.deepcopy(model).eval(), ctx.example_input, ctx.work_dir / "fp32.onnx")
    return ort_variant(path, cfg.name, "export", "fp32", ctx, {"exporter": "torch.onnx (dynamo)"},
                       reference=model)


class _Reader:
    """onnxruntime CalibrationDataReader over the context's calibration batches."""

    def __init__(self, ctx: Context, input_name: str):
        self.batches = (b.numpy().astype(np.float32) for b in ctx.calibration())
        self.input_name, self.count = input_name, 0

    def get_next(self):
        batch = next(self.batches, None)
        if batch is None:
            return None
        self.count += len(batch)
        return {self.input_name: batch}

    def rewind(self):  # pragma: no cover - not used by quantize_static
        raise NotImplementedError


def quantize_ort_static(fp32_path: Path, out_path: Path, cfg: OrtStaticConfig, ctx: Context) -> int | None:
    """QDQ-quantize ``fp32_path`` into ``out_path``; returns the number of calibration items.

    Tensor ranges are cached per calibrator in ``ctx.work_dir`` (``ctx.calibration_key`` names the
    calibration set), so re-quantizing with other excluded nodes skips calibration (returns None).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prep = fp32_path.with_name(fp32_path.stem + ".prep.onnx")  # shared by every quantization
    if not prep.exists():
        quant_pre_process(str(fp32_path), str(prep), skip_symbolic_shape=True)
    cache = ctx.work_dir / f"ort-calibration-{cfg.calibrator}-{ctx.calibration_key}.json"
    cached = cache.is_file()
    if not cached and next(iter(ctx.calibration()), None) is None:
        raise CompressionError(f"{cfg.name}: the calibration set is empty")
    reader = _Reader(ctx, "clips")
    CalibrationDataReader.register(_Reader)
    quantize_static(str(prep), str(out_path), reader, quant_format=QuantFormat.QDQ,
                    calibration_cache_path=str(cache),
                    per_channel=cfg.per_channel, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, nodes_to_exclude=list(cfg.exclude),
                    calibrate_method=getattr(CalibrationMethod, CALIBRATORS[cfg.calibrator]),
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                                   # int8 compute, float output: an 8-bit regression output
                                   # would round every prediction to a ~0.3 EF-point grid
                                   "OpTypesToExcludeOutputQuantization": ["Gemm", "MatMul"]})
    return None if cached else reader.count


@register(OrtStaticConfig)
def ort_static(model: nn.Module, cfg: OrtStaticConfig, ctx: Context) -> Variant:
    fp32 = ctx.work_dir / "fp32.onnx"
    if not fp32.exists():
        export_onnx(copy.deepcopy(model).eval(), ctx.example_input, fp32)
    out = ctx.work_dir / f"{cfg.name}.onnx"
    n = quantize_ort_static(fp32, out, cfg, ctx)
    details = {"library": "onnxruntime.quantization.quantize_static", "format": "QDQ",
               "activations": "uint8 affine", "weights": "int8 symmetric "
               + ("per-channel" if cfg.per_channel else "per-tensor"), "observer": cfg.calibrator,
               "calibration_items": n if n is not None else f"cached ({ctx.calibration_key})",
               "excluded_nodes": list(cfg.exclude), "engine": "x86 (MLAS U8S8)"}
    return ort_variant(out, cfg.name, "static-ptq", "int8", ctx, details, require_int8=True)


def conv_node_names(onnx_path: Path) -> list[str]:
    """Names of the Conv/Gemm/MatMul nodes of an FP32 ONNX graph (candidates for exclusion)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
