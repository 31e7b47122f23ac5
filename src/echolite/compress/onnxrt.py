"""ONNX export and ONNX Runtime (CPU): FP32 sessions, static QDQ INT8, and exported PT2E graphs.

INT8 here is QDQ with unsigned 8-bit activations and signed per-channel 8-bit weights (U8S8),
the combination ONNX Runtime's x86 kernels (VNNI) run fast. At session creation ORT fuses
DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv etc.; we count those fused ops in the
optimized graph ORT itself writes out, so "int8" means what the runtime really executes.

Two steps:
  * ``onnxruntime``: export the stage's module (float, or a PT2E int8 program) and run it in ORT.
    A PT2E program exported this way keeps some convs in float; its precision says how many.
  * ``ort_static``: ORT's own static QDQ quantization of the float module, optionally
    accuracy-aware: per-layer sensitivity on a VAL subset, then the most sensitive layers kept
    in float until the task's score is within a tolerance of FP32.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
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
    link_or_copy,
    register,
)

log = logging.getLogger(__name__)

ORT, OPENVINO = "onnxruntime-cpu", "openvino-cpu"
RUNTIMES = {"onnxruntime": ORT, "openvino": OPENVINO}  # what runs an .onnx file
CALIBRATORS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
INT8_KERNELS = ("QLinearConv", "QLinearAdd", "QLinearMatMul", "QGemm", "QLinearGlobalAveragePool",
                "ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul", "QLinearConcat")
WEIGHT_OPS = ("Conv", "Gemm", "MatMul")


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

    runtime: str = "onnxruntime"

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {tuple(RUNTIMES)}, but got {self.runtime!r}")


@dataclass(frozen=True)
class OrtStaticConfig(StepConfig):
    """ONNX Runtime static QDQ quantization (quantize_static), U8S8.

    Attributes:
        calibrator: minmax | entropy | percentile (ORT's CalibrationMethod).
        per_channel: per-output-channel weight scales.
        exclude: module names (``backbone.layer3.1.conv2``) kept in float.
        fallback: accuracy-aware: measure every layer's sensitivity on ``sensitivity_items`` VAL
            items and keep the most sensitive ones in float until the score is within
            ``max_rel_delta`` of FP32 (at most ``max_layers``).
        runtime: onnxruntime | openvino: what runs the quantized QDQ file.
    """

    key: ClassVar[str] = "ort_static"
    method: ClassVar[str] = "ort-qdq"
    family: ClassVar[str] = "quantization"
    consumes: ClassVar[str] = FLOAT
    produces: ClassVar[str] = RUNTIME

    calibrator: str = "minmax"
    per_channel: bool = True
    exclude: tuple[str, ...] = ()
    fallback: bool = False
    max_rel_delta: float = 0.03
    max_layers: int = 4
    sensitivity_items: int = 48
    runtime: str = "onnxruntime"

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {tuple(RUNTIMES)}, but got {self.runtime!r}")
        if self.calibrator not in CALIBRATORS:
            raise ValueError(f"calibrator must be one of {tuple(CALIBRATORS)}, but got {self.calibrator!r}")
        if self.max_rel_delta < 0 or self.max_layers < 0 or self.sensitivity_items < 1:
            raise ValueError("max_rel_delta and max_layers must be >= 0, sensitivity_items >= 1")
        if isinstance(self.exclude, str):
            raise ValueError(f"exclude must be a list of module names, but got {self.exclude!r}")
        object.__setattr__(self, "exclude", tuple(self.exclude))


# --- export and sessions --------------------------------------------------------------------------
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


def float_export(module: nn.Module, ctx: Context) -> Path:
    """The ONNX export of a float module, shared by every step that needs it (keyed by weights)."""
    from echolite.cache import code_digest, package_versions, tensors_digest

    if ctx.store is None:
        return export_onnx(copy.deepcopy(module).eval(), ctx.example_input, ctx.work_dir / "fp32.onnx",
                           ctx.input_name)
    entry = ctx.store.entry("onnx", "fp32 onnx export", {
        "weights": tensors_digest(module.state_dict()), "model": ctx.model_key,
        "code": code_digest("stages"), "input_name": ctx.input_name,
        "example_shape": list(ctx.example_input.shape), "versions": package_versions()})
    if entry.complete:
        log.info("reusing the float model's ONNX export %s", entry.path.name)
    else:
        log.info("exporting the float model to ONNX (%s)", entry.describe_miss())
        with entry.build() as tmp:
            export_onnx(copy.deepcopy(module).eval(), ctx.example_input, tmp / "model.onnx",
                        ctx.input_name)
    return entry.path / "model.onnx"


def session(path: Path, threads: int, optimized_path: Path | None = None):
    """A CPU InferenceSession pinned to ``threads`` intra-op threads.

    Spinning stays off: an idle session's threads would otherwise busy-wait after each call and
    slow whatever runs next in the process (measured: ORT itself ~4 % faster with it on; the
    measuring loop releases every session after its row either way).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def op_counts(path: Path) -> dict:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(Counter(n.op_type for n in model.graph.node))


def runtime_ops(path: Path, threads: int) -> dict:
    """The ops ORT really runs for ``path`` after its graph optimizations (fusions)."""
    import tempfile

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


def openvino_runner(path: Path, threads: int):
    """An OpenVINO CPU runner of an .onnx file, compiled per input shape (static shapes are
    OpenVINO's fast path), and the facts of its first compilation."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    compiled: dict = {}

    def compile_for(shape):
        if shape not in compiled:
            m = model.clone()
            m.reshape({m.inputs[0]: list(shape)})
            c = core.compile_model(m, "CPU", config)
            compiled[shape] = (c, c.create_infer_request())
        return compiled[shape]

    def run(x: torch.Tensor) -> torch.Tensor:
        _, request = compile_for(tuple(x.shape))
        out = request.infer({0: x.numpy().astype(np.float32, copy=False)})
        return torch.from_numpy(np.array(out[0]))

    def facts(example_shape) -> dict:
        c, _ = compile_for(tuple(example_shape))
        precisions = Counter()
        for op in c.get_runtime_model().get_ops():
            info = op.get_rt_info()
            kind = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
            prec = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
            precisions[f"{kind}:{prec}"] += 1
        convs = {k: v for k, v in precisions.items() if k.startswith("Convolution:")}
        return {"runtime_precisions": dict(precisions), "version": ov.__version__,
                "int8_convs": sum(v for k, v in convs.items() if k.endswith((":u8", ":i8"))),
                "float_convs": sum(v for k, v in convs.items() if not k.endswith((":u8", ":i8")))}

    return run, facts


def runtime_details(path: Path, runtime: str, ctx: Context) -> dict:
    """What the runtime really runs for ``path``: int8 and float convolutions after its fusions."""
    if runtime == OPENVINO:
        _, facts = openvino_runner(path, ctx.threads)
        return {"runtime": runtime, **facts(ctx.example_input.shape), "plugin": "CPU"}
    import onnxruntime as ort

    ops = runtime_ops(path, ctx.threads)
    int8 = {k: v for k, v in ops.items() if k in INT8_KERNELS}
    return {"runtime": runtime, "graph_ops": op_counts(path), "runtime_int8_ops": int8,
            "int8_convs": int8.get("QLinearConv", 0) + int8.get("ConvInteger", 0),
            "float_convs": ops.get("Conv", 0) + ops.get("FusedConv", 0),
            "versions": {"onnxruntime": ort.__version__}, "provider": "CPUExecutionProvider"}


def onnx_runner(path: Path, runtime: str, threads: int):
    """``fn(x) -> y`` for an .onnx file on ONNX Runtime or OpenVINO."""
    if runtime == OPENVINO:
        return openvino_runner(path, threads)[0]
    return runner(session(path, threads))


# --- steps ------------------------------------------------------------------------------------------
@register(OnnxRuntimeConfig)
def onnxruntime_step(stage: Stage, cfg: OnnxRuntimeConfig, ctx: Context) -> Stage:
    if stage.precision == "fp32":
        path = link_or_copy(float_export(stage.module, ctx), ctx.work_dir)
    else:
        path = export_onnx(stage.module, ctx.example_input, ctx.work_dir / "model.onnx", ctx.input_name)
    runtime = RUNTIMES[cfg.runtime]
    details = {"exporter": "torch.onnx (dynamo)", **runtime_details(path, runtime, ctx)}
    precision = stage.precision
    if stage.precision != "fp32":
        n_int8 = details["int8_convs"]
        n_all = n_int8 + details["float_convs"]
        precision = f"mixed int8/fp32 ({n_int8} of {n_all} convs int8)" if n_int8 < n_all else "int8"
    return stage.then(cfg.method, details, module=None, precision=precision, runtime=runtime,
                      artifacts={"onnx": path})


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


def quantize_ort_static(prep: Path, out_path: Path, cfg: OrtStaticConfig, ctx: Context,
                        ranges: Path, exclude_nodes: tuple[str, ...] = ()) -> int | None:
    """QDQ-quantize ``prep`` into ``out_path``; returns the calibration item count (None: cached).

    ``ranges`` is the calibration cache (tensor ranges): read if it exists, else written.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    cached = ranges.is_file()
    if not cached and next(iter(ctx.calibration()), None) is None:
        raise CompressionError(f"{cfg.key}: the calibration set is empty")
    reader = _Reader(ctx, ctx.input_name)
    CalibrationDataReader.register(_Reader)
    quantize_static(str(prep), str(out_path), None if cached else reader, quant_format=QuantFormat.QDQ,
                    calibration_cache_path=str(ranges),
                    per_channel=cfg.per_channel, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude_nodes),
                    calibrate_method=getattr(CalibrationMethod, CALIBRATORS[cfg.calibrator]),
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                                   # int8 compute, float output: an 8-bit output of a regression
                                   # would round every prediction to a coarse grid
                                   "OpTypesToExcludeOutputQuantization": ["Gemm", "MatMul"]})
    return None if cached else reader.count


def weight_layers(onnx_path: Path) -> dict[str, str]:
    """Module name (from the weight's name, e.g. ``backbone.layer3.1.conv2``) -> ONNX node name,
    for the Conv/Gemm/MatMul nodes of a float graph."""
    import onnx

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


def _prepare(fp32: Path, work: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prep = work / "fp32.prep.onnx"
    quant_pre_process(str(fp32), str(prep), skip_symbolic_shape=True)
    return prep


def _ranges(fp32: Path, cfg: OrtStaticConfig, ctx: Context) -> tuple[Path, object]:
    """The calibration-ranges file for this export, calibrator and calibration set (keyed)."""
    from echolite.cache import file_digest, package_versions

    if ctx.store is None:  # nothing keyed to reuse: a fresh file, shared by this call's trials only
        import tempfile

        return Path(tempfile.mkdtemp(prefix="ranges-", dir=ctx.work_dir)) / "ranges.json", None
    entry = ctx.store.entry("ranges", f"ort ranges {cfg.calibrator}", {
        "onnx": file_digest(fp32), "calibrator": cfg.calibrator, "calibration": ctx.calibration_key,
        "versions": package_versions()})
    return entry.path / "ranges.json", entry


@register(OrtStaticConfig)
def ort_static(stage: Stage, cfg: OrtStaticConfig, ctx: Context) -> Stage:
    fp32 = float_export(stage.module, ctx)
    prep = _prepare(fp32, ctx.work_dir)
    layers = weight_layers(prep)
    unknown = [m for m in cfg.exclude if m not in layers]
    if unknown:
        raise CompressionError(f"{cfg.key}: exclude names no weight layer: {unknown} "
                               f"(layers: {', '.join(list(layers)[:4])}, ...)")
    ranges, entry = _ranges(fp32, cfg, ctx)
    out = ctx.work_dir / "model.onnx"
    if entry is not None and entry.complete:
        log.info("reusing the %s calibration ranges %s", cfg.calibrator, entry.path.name)
    if entry is not None and not entry.complete:
        log.info("calibrating ONNX Runtime ranges (%s)", entry.describe_miss())
        with entry.build() as tmp:
            n = quantize_ort_static(prep, out, cfg, ctx, tmp / "ranges.json")
    else:
        n = quantize_ort_static(prep, out, cfg, ctx, ranges)
    keep = tuple(cfg.exclude)
    details = {"library": "onnxruntime.quantization.quantize_static", "format": "QDQ",
               "activations": "uint8 affine", "weights": "int8 symmetric "
               + ("per-channel" if cfg.per_channel else "per-tensor"), "observer": cfg.calibrator,
               "calibration_items": n if n is not None else "cached ranges",
               "engine": "x86 (MLAS U8S8)"}
    if cfg.fallback:
        keep, search = _sensitivity_and_fallback(stage, cfg, ctx, prep, ranges, layers, out)
        details["sensitivity"] = search
    if keep:
        quantize_ort_static(prep, out, cfg, ctx, ranges, tuple(layers[m] for m in keep))
    prep.unlink(missing_ok=True)
    details["kept_fp32"] = list(keep)
    runtime = RUNTIMES[cfg.runtime]
    details.update(runtime_details(out, runtime, ctx))
    if details["int8_convs"] == 0 or (details["float_convs"] and not keep):
        raise CompressionError(f"{cfg.key}: {runtime} runs {details['int8_convs']} int8 and "
                               f"{details['float_convs']} float convolutions; refusing to call it int8")
    precision = "int8" if not keep else f"int8 ({len(keep)} layer(s) fp32)"
    return stage.then(cfg.method, details, module=None, precision=precision, runtime=runtime,
                      artifacts={"onnx": out})


def _sensitivity_and_fallback(stage, cfg, ctx, prep, ranges, layers, all_int8: Path):
    """Per-layer sensitivity on a VAL subset, then the float fallback search.

    Sensitivity of layer L = how much the score improves when only L stays in float. The
    fallback keeps the most sensitive layers in float, one at a time, until the score is within
    ``max_rel_delta`` of FP32 (relative, in the better direction) or ``max_layers`` are kept.
    """
    if ctx.score is None:
        raise CompressionError(f"{cfg.key}: the fallback search needs the task's score function")
    hib = ctx.higher_is_better

    def gain(before: float, after: float) -> float:
        return after - before if hib else before - after

    def score_file(path: Path) -> float:
        return ctx.score(onnx_runner(path, RUNTIMES[cfg.runtime], ctx.threads), cfg.sensitivity_items)

    module = copy.deepcopy(stage.module).eval()

    def fp32_run(x):
        with torch.no_grad():
            return module(x)

    fp32 = ctx.score(fp32_run, cfg.sensitivity_items)
    base = score_file(all_int8)
    trial = ctx.work_dir / "trial.onnx"
    sens = []
    for name, node in layers.items():
        quantize_ort_static(prep, trial, cfg, ctx, ranges, (node,))
        s = score_file(trial)
        sens.append({"layer": name, "score_with_layer_fp32": s, "gain": gain(base, s)})
    sens.sort(key=lambda r: -r["gain"])
    bound = fp32 * (1 - cfg.max_rel_delta) if hib else fp32 * (1 + cfg.max_rel_delta)

    def within(s: float) -> bool:
        return s >= bound if hib else s <= bound

    keep: list[str] = []
    current = base
    for r in sens[: cfg.max_layers]:
        if within(current):
            break
        keep.append(r["layer"])
        quantize_ort_static(prep, trial, cfg, ctx, ranges, tuple(layers[m] for m in keep))
        current = score_file(trial)
    trial.unlink(missing_ok=True)
    search = {"items": cfg.sensitivity_items, "split": "VAL", "fp32_score": fp32,
              "all_int8_score": base, "bound": bound,
              "final_score": current, "within_bound": within(current), "layers": sens,
              "higher_is_better": hib, "max_rel_delta": cfg.max_rel_delta}
    log.info("fallback: FP32 %.4f, all-int8 %.4f, keeping %s in float -> %.4f", fp32, base,
             keep or "nothing", current)
    return tuple(keep), search
