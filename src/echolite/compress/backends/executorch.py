"""ExecuTorch with the XNNPACK delegate as a backend: the ARM/mobile path. PT2E with torchao's
``XNNPACKQuantizer`` (int8 symmetric, per-channel weights) -> ``to_edge_transform_and_lower`` with
the ``XnnpackPartitioner`` -> a ``.pte`` program, run by ExecuTorch's runtime.

XNNPACK has x86 kernels too, so a ``.pte`` runs here and its predictions are checked here; its
latency on this machine is an x86 latency, never an ARM one (rows say so). ``executorch`` is
imported where it is used; when it is missing or cannot lower the model, the row fails with why.
"""

from __future__ import annotations

import json
import multiprocessing
import signal
from collections import Counter
from pathlib import Path

import torch

from echolite.compress.base import CompressionError, Context

EXECUTORCH = "executorch-xnnpack"


def require() -> str:
    """ExecuTorch's version, or a CompressionError saying how to install it."""
    try:
        from importlib.metadata import version

        import executorch  # noqa: F401
        return version("executorch")
    except Exception as err:  # noqa: BLE001 - any import failure is the row's reason
        raise CompressionError(f"ExecuTorch is not usable here ({type(err).__name__}: {err}); "
                               "pip install executorch (see README, ARM path)") from err


def xnnpack_quantizer(per_channel: bool = True):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )

    return XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=per_channel))


def dense(x: torch.Tensor) -> torch.Tensor:
    """``x`` with ordinary strides: ExecuTorch refuses a 0 stride, which a size-1 dimension of an
    expanded tensor may carry."""
    return x.clone(memory_format=torch.contiguous_format)


def lower(converted: torch.nn.Module, example: torch.Tensor, path: Path) -> dict:
    """Export the PT2E int8 program, lower it to XNNPACK and write ``path`` (.pte); returns what
    was delegated (ops left outside XNNPACK run in ExecuTorch's portable kernels)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = torch.export.export(converted, (dense(example),))
    edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    outside = Counter(str(n.target).split(">:")[0].replace("<EdgeOpOverload: ", "")
                      for n in edge.exported_program().graph.nodes
                      if n.op == "call_function" and "call_delegate" not in str(n.target)
                      and "getitem" not in str(n.target))
    delegates = sum("call_delegate" in str(n.target) for n in edge.exported_program().graph.nodes)
    path.write_bytes(edge.to_executorch().buffer)
    convs_outside = sum(v for k, v in outside.items() if "convolution" in k or "conv2d" in k or "conv3d" in k)
    if convs_outside:
        raise CompressionError(f"{convs_outside} convolution(s) were not delegated to XNNPACK: {dict(outside)}")
    return {"xnnpack_partitions": delegates, "ops_outside_xnnpack": dict(outside)}


def _lower_child(inputs: str, path: str, result: str) -> None:
    """In a process of its own: quantize (XNNPACKQuantizer, the given calibration), lower, write
    ``path``; what was found goes to ``result`` (json), an error too."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from echolite.compress.backends.pt2e import calibrate, count_quantized_ops, export_graph

    try:
        data = torch.load(inputs, weights_only=False)  # written by lower_isolated, just before
        example, calib = data["example"], data["calibration"]
        prepared = prepare_pt2e(export_graph(data["module"].eval(), example), xnnpack_quantizer(data["per_channel"]))
        ctx = Context(example_input=example, calibration=lambda: iter(calib), work_dir=Path(path).parent)
        n = calibrate(prepared, ctx, "executorch")
        converted = convert_pt2e(prepared)
        found = {"calibration_items": n, "quantized_ops": count_quantized_ops(converted),
                 **lower(converted, example, Path(path))}
    except Exception as err:  # noqa: BLE001 - reported to the parent, which fails the row with it
        found = {"error": f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"}
    Path(result).write_text(json.dumps(found))


def lower_isolated(module: torch.nn.Module, example: torch.Tensor, calibration: list[torch.Tensor],
                   per_channel: bool, path: Path, name: str) -> dict:
    """Quantize and lower ``module`` to ``path`` in a spawned process; returns what it found.

    Raises:
        CompressionError: the child raised (its error) or died (its exit code or signal).
    """
    inputs, result = path.with_name("lowering-inputs.pt"), path.with_name("lowering.json")
    torch.save({"module": module, "example": example, "calibration": calibration, "per_channel": per_channel},
               inputs)
    child = multiprocessing.get_context("spawn").Process(target=_lower_child, args=(str(inputs), str(path),
                                                                                    str(result)))
    child.start()
    child.join()
    inputs.unlink(missing_ok=True)
    if child.exitcode != 0:
        how = f"signal {signal.Signals(-child.exitcode).name}" if child.exitcode < 0 else f"exit code {child.exitcode}"
        raise CompressionError(f"{name}: ExecuTorch's quantize-and-lower process died ({how})")
    found = json.loads(result.read_text())
    result.unlink()
    if "error" in found:
        raise CompressionError(f"{name}: {found['error']}")
    return found


def pte_runner(path: Path):
    """``fn(x) -> y`` for a .pte file (ExecuTorch's Python runtime; static shapes: a batch of
    several items runs item by item)."""
    require()
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).load_method("forward")
    shape = tuple(method.metadata.input_tensor_meta(0).sizes())

    def run(x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape) == shape:
            return method.execute([dense(x.float())])[0]
        if tuple(x.shape[1:]) != shape[1:] or shape[0] != 1:
            raise CompressionError(f"{path.name} takes {shape}, got {tuple(x.shape)}")
        return torch.cat([method.execute([dense(x[i:i + 1].float())])[0] for i in range(len(x))])

    return run
