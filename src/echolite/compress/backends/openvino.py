"""OpenVINO (CPU plugin) as a backend: it runs ONNX files (float, or ORT's QDQ INT8) and its own IR
(``.xml`` + ``.bin``: PyTorch converted by ``openvino.convert_model``, quantized by NNCF) compiled per
input shape, says at what precision each of its layers really runs, and profiles them.

``openvino`` is imported where it is used (loaded only by the rows that run on it).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

OPENVINO = "openvino-cpu"


def openvino_runner(path: Path, threads: int):
    """An OpenVINO CPU runner of an .onnx file, compiled per input shape (static shapes are
    OpenVINO's fast path), and the facts of its first compilation."""
    import openvino as ov  # optional-heavy: only OpenVINO rows load it

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




def convert_from_torch(module: torch.nn.Module, example: torch.Tensor):
    """``openvino.convert_model`` of a float module, batch dimension dynamic (the rest as ``example``)."""
    import openvino as ov

    shape = ov.PartialShape([-1, *example.shape[1:]])
    with torch.no_grad():
        return ov.convert_model(module.eval(), example_input=example, input=[shape])


def save_ir(model, path: Path) -> Path:
    """An OpenVINO IR (``path`` .xml and its .bin), weights as they are (no fp16 compression)."""
    import openvino as ov

    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


def profile(path: Path, threads: int, example: torch.Tensor, runs: int = 30) -> list[dict]:
    """OpenVINO's per-layer timings (``PERF_COUNT``) of ``path`` on ``example``, summed over ``runs``
    calls by layer type and the kernel that ran it; rows sorted by time."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({model.inputs[0]: list(example.shape)})
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
              "PERF_COUNT": True}
    request = core.compile_model(model, "CPU", config).create_infer_request()
    x = example.numpy().astype(np.float32)
    for _ in range(3):
        request.infer({0: x})
    totals: Counter = Counter()
    counts: Counter = Counter()
    for _ in range(runs):
        request.infer({0: x})
        for info in request.get_profiling_info():
            key = (info.node_type, info.exec_type)
            totals[key] += info.real_time.total_seconds() * 1e3 / runs
            counts[key] += 1 / runs
    return [{"op": k[0], "kernel": k[1], "ms": round(v, 3), "count": round(counts[k])}
            for k, v in totals.most_common()]


def openvino_details(path: Path, threads: int, example_shape) -> dict:
    """What OpenVINO runs for ``path``: every layer's runtime precision (int8 and float convolutions)."""
    _, facts = openvino_runner(path, threads)
    return {**facts(example_shape), "plugin": "CPU"}
