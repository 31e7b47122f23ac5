"""ONNX export and ONNX Runtime (CPU) as a backend: export, sessions, what ORT really runs (its
fused graph), and ORT's static QDQ quantization (U8S8).

INT8 here is QDQ with unsigned 8-bit activations and signed per-channel 8-bit weights (U8S8),
the combination ONNX Runtime's x86 kernels run fast. At session creation ORT fuses
DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv etc.; we count those fused ops in the
optimized graph ORT itself writes out, so "int8" means what the runtime really executes.

``onnx`` and ``onnxruntime.quantization`` are imported where they are used (about a second each):
only the steps that export or quantize load them.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from echolite.compress.base import CompressionError, Context
from echolite.identity import onnx_export_inputs, ranges_inputs
from echolite.store import file_digest, tensors_digest

log = logging.getLogger(__name__)

ORT = "onnxruntime-cpu"
CALIBRATORS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
INT8_KERNELS = ("QLinearConv", "QLinearAdd", "QLinearMatMul", "QGemm", "QLinearGlobalAveragePool",
                "ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul", "QLinearConcat")
WEIGHT_OPS = ("Conv", "Gemm", "MatMul")


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, input_name: str = "input") -> Path:
    """Export with a dynamic batch dimension (TorchDynamo-based exporter); weights in one file."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    pair = torch.cat([example[:1], example[:1]])  # batch 1 would specialise the dimension
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (pair,), dynamo=True, verbose=False,
                                    dynamic_shapes=({0: batch},), input_names=[input_name],
                                    output_names=["output"])
    program.save(str(path), external_data=False)
    return path


def float_export(module: nn.Module, ctx: Context, model: dict | None = None) -> Path:
    """The ONNX export of a float module, shared by every step that needs it (keyed by weights and
    ``model``, the stage's model settings that differ from the task's: a student's)."""
    if ctx.store is None:
        return export_onnx(copy.deepcopy(module).eval(), ctx.example_input, ctx.work_dir / "fp32.onnx",
                           ctx.input_name)
    entry = ctx.store.entry("onnx", "fp32 onnx export", onnx_export_inputs(
        tensors_digest(module.state_dict()), ctx.model_key, ctx.input_name, ctx.example_input.shape, model or {}))
    if entry.complete:
        log.info("reusing the float model's ONNX export %s", entry.path.name)
    else:
        log.info("exporting the float model to ONNX (%s)", entry.describe_miss())
        with entry.build() as tmp:
            export_onnx(copy.deepcopy(module).eval(), ctx.example_input, tmp / "model.onnx",
                        ctx.input_name)
    return entry.path / "model.onnx"


def session(path: Path, threads: int, optimized_path: Path | None = None, profile_prefix: Path | None = None):
    """A CPU InferenceSession pinned to ``threads`` intra-op threads.

    Spinning stays off: an idle session's threads would otherwise busy-wait after each call and
    slow whatever runs next in the process (measured: ORT itself ~4 % faster with it on; the
    measuring loop releases every session after its row either way).
    """
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    if profile_prefix is not None:  # ORT's per-node profiler (echolite bench --profile)
        so.enable_profiling = True
        so.profile_file_prefix = str(profile_prefix)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def op_counts(path: Path) -> dict:
    import onnx  # heavy: see the module docstring

    model = onnx.load(str(path), load_external_data=False)
    return dict(Counter(n.op_type for n in model.graph.node))


def runtime_ops(path: Path, threads: int) -> dict:
    """The ops ORT really runs for ``path`` after its graph optimizations (fusions)."""
    with tempfile.TemporaryDirectory(prefix="echolite-ort-") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        session(path, threads, optimized)
        return op_counts(optimized)


def runner(sess):
    """float tensor in, float tensor out, through an ORT session."""
    name = sess.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(sess.run(None, {name: x.numpy().astype(np.float32, copy=False)})[0])

    return run


def profile(path: Path, threads: int, example: torch.Tensor, runs: int = 30) -> list[dict]:
    """ONNX Runtime's per-node kernel times (its profiler) for ``path`` on ``example``, averaged over
    ``runs`` calls and summed by op type; rows sorted by time."""
    import json

    with tempfile.TemporaryDirectory(prefix="echolite-prof-") as tmp:
        sess = session(path, threads, profile_prefix=Path(tmp) / "ort")  # the sessions it times, profiled
        name = sess.get_inputs()[0].name
        x = example.numpy().astype(np.float32)
        for _ in range(runs):
            sess.run(None, {name: x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    totals: Counter = Counter()
    counts: Counter = Counter()
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            totals[op] += e["dur"] / 1e3 / runs
            counts[op] += 1 / runs
    return [{"op": k, "kernel": "onnxruntime-cpu", "ms": round(v, 3), "count": round(counts[k])}
            for k, v in totals.most_common()]


def ort_details(path: Path, threads: int) -> dict:
    """What ORT really runs for ``path``: int8 and float convolutions after its fusions."""
    ops = runtime_ops(path, threads)
    int8 = {k: v for k, v in ops.items() if k in INT8_KERNELS}
    return {"graph_ops": op_counts(path), "runtime_int8_ops": int8,
            "int8_convs": int8.get("QLinearConv", 0) + int8.get("ConvInteger", 0),
            "float_convs": ops.get("Conv", 0) + ops.get("FusedConv", 0),
            "versions": {"onnxruntime": ort.__version__}, "provider": "CPUExecutionProvider"}


# --- static QDQ quantization ------------------------------------------------------------------------


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


def quantize_static(prep: Path, out_path: Path, ctx: Context, ranges: Path, calibrator: str,
                    per_channel: bool, exclude_nodes: tuple[str, ...] = (), name: str = "ort_static") -> int | None:
    """QDQ-quantize ``prep`` into ``out_path``; returns the calibration item count (None: cached).

    ``ranges`` is the calibration cache (tensor ranges): read if it exists, else written.
    """
    from onnxruntime.quantization import (  # heavy: see the module docstring
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    cached = ranges.is_file()
    if not cached and next(iter(ctx.calibration()), None) is None:
        raise CompressionError(f"{name}: the calibration set is empty")
    reader = _Reader(ctx, ctx.input_name)
    CalibrationDataReader.register(_Reader)
    quantize_static(str(prep), str(out_path), None if cached else reader, quant_format=QuantFormat.QDQ,
                    calibration_cache_path=str(ranges),
                    per_channel=per_channel, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude_nodes),
                    calibrate_method=getattr(CalibrationMethod, CALIBRATORS[calibrator]),
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                                   # int8 compute, float output: an 8-bit output of a regression
                                   # would round every prediction to a coarse grid
                                   "OpTypesToExcludeOutputQuantization": ["Gemm", "MatMul"]})
    return None if cached else reader.count


def weight_layers(onnx_path: Path) -> dict[str, str]:
    """Module name (from the weight's name, e.g. ``backbone.layer3.1.conv2``) -> ONNX node name,
    for the Conv/Gemm/MatMul nodes of a float graph."""
    import onnx  # heavy: see the module docstring

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        if node.op_type not in WEIGHT_OPS:
            continue
        weight = next((i for i in node.input[1:] if i in inits and i.endswith(".weight")), None)
        # a node whose weight has no module name is labelled as such, never passed off as a module
        out[weight[: -len(".weight")] if weight else f"onnx-node:{node.name}"] = node.name
    return out


def prepare(fp32: Path, work: Path) -> Path:
    """ORT's pre-processing of a float graph before quantization (shape inference, folding)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process  # heavy

    prep = work / "fp32.prep.onnx"
    quant_pre_process(str(fp32), str(prep), skip_symbolic_shape=True)
    return prep


def ranges_entry(fp32: Path, calibrator: str, ctx: Context) -> tuple[Path, object]:
    """The calibration-ranges file for this export, calibrator and calibration set (keyed)."""
    if ctx.store is None:  # nothing keyed to reuse: a fresh file, shared by this call's trials only
        return Path(tempfile.mkdtemp(prefix="ranges-", dir=ctx.work_dir)) / "ranges.json", None
    entry = ctx.store.entry("ranges", f"ort ranges {calibrator}",
                            ranges_inputs(file_digest(fp32), calibrator, ctx.calibration_key))
    return entry.path / "ranges.json", entry
