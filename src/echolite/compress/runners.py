"""Open a stage's files as something that runs: the one path from artifact to prediction.

The measuring loop, ``echolite bench`` and the steps that score a candidate (the fallback search)
all run every artifact through this module, from the files on disk, never from objects left in
memory by the build: what is measured is what would be deployed. It is also the one place that
maps a runtime name to its backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch._dynamo.utils import counters

from echolite.compress.backends.executorch import EXECUTORCH, pte_runner
from echolite.compress.backends.onnxruntime import ORT, ort_details, runner, runtime_ops, session
from echolite.compress.backends.openvino import OPENVINO, openvino_details, openvino_runner
from echolite.compress.backends.pt2e import EAGER, INDUCTOR, compile_for_cpu, load_program
from echolite.compress.base import CompressionError, Stage

INT8_MATMULS = ("aten._int_mm.default", "torchao.int_scaled_matmul.default")
RUNTIMES = {"onnxruntime": ORT, "openvino": OPENVINO}  # what runs an .onnx file, by its step name


def onnx_runner(path: Path, runtime: str, threads: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn(x) -> y`` for an .onnx file on ONNX Runtime or OpenVINO."""
    if runtime == OPENVINO:
        return openvino_runner(path, threads)[0]
    return runner(session(path, threads))


def runtime_details(path: Path, runtime: str, threads: int, example_shape) -> dict:
    """What the runtime really runs for ``path``: int8 and float convolutions after its fusions."""
    if runtime == OPENVINO:
        return {"runtime": runtime, **openvino_details(path, threads, example_shape)}
    return {"runtime": runtime, **ort_details(path, threads)}


@dataclass
class Runner:
    """``fn(x) -> y`` on float CPU tensors, and what the runtime reports having run."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    facts: Callable[[], dict] = field(default=lambda: {})

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def rebuild_from_state_dict(module: nn.Module, state: dict) -> nn.Module:
    """Give ``module`` the layer widths of ``state`` (channel-pruned weights), then load it.

    The architecture stays the same; Conv2d/BatchNorm2d/Linear layers whose saved tensors are
    narrower are re-created at the saved width. A pruned model thus loads from its state dict
    with the model code alone (no pruning library).
    """
    for name, mod in list(module.named_modules()):
        w = state.get(f"{name}.weight")
        if w is None or not isinstance(mod, nn.Conv2d | nn.BatchNorm2d | nn.Linear):
            continue
        if tuple(w.shape) == tuple(mod.weight.shape):
            continue
        if isinstance(mod, nn.Conv2d):
            depthwise = mod.groups == mod.in_channels == mod.out_channels and mod.groups > 1
            if mod.groups != 1 and not depthwise:
                raise CompressionError(f"{name}: grouped convolutions cannot be resized")
            groups = w.shape[0] if depthwise else 1
            new = nn.Conv2d(w.shape[1] * groups, w.shape[0], mod.kernel_size, mod.stride, mod.padding,
                            mod.dilation, groups, mod.bias is not None, mod.padding_mode)
        elif isinstance(mod, nn.BatchNorm2d):
            new = nn.BatchNorm2d(w.shape[0], mod.eps, mod.momentum, mod.affine, mod.track_running_stats)
        else:
            new = nn.Linear(w.shape[1], w.shape[0], mod.bias is not None)
        parent_name, _, attr = name.rpartition(".")
        setattr(module.get_submodule(parent_name) if parent_name else module, attr, new)
    module.load_state_dict(state)
    return module


def load_module(stage: Stage, model_factory: Callable[..., nn.Module] | None) -> nn.Module:
    """The PyTorch module of a saved stage (float weights or a saved program).

    ``model_factory(overrides)`` builds the stage's architecture (``stage.model``: a student's)."""
    if "state_dict" in stage.artifacts:
        if model_factory is None:
            raise CompressionError("loading float weights needs the task's model factory")
        state = torch.load(stage.artifacts["state_dict"], map_location="cpu", weights_only=True)
        return rebuild_from_state_dict(model_factory(stage.model), state).eval()
    if "pt2" in stage.artifacts:
        return load_program(stage.artifacts["pt2"])
    raise CompressionError(f"stage with artifacts {sorted(stage.artifacts)} holds no PyTorch module")


def open_runner(stage: Stage, model_factory: Callable[..., nn.Module] | None, threads: int) -> Runner:
    """A runner for ``stage`` loaded from its files, on ``stage.runtime``."""
    if stage.runtime == ORT:
        path = Path(stage.artifacts["onnx"])
        ops = runtime_ops(path, threads)
        return Runner(onnx_runner(path, ORT, threads), lambda: {"runtime_ops": ops})
    if stage.runtime == OPENVINO:  # an .onnx file or its own IR (.xml)
        return Runner(onnx_runner(Path(next(iter(stage.artifacts.values()))), OPENVINO, threads))
    if stage.runtime == EXECUTORCH:
        return Runner(pte_runner(Path(stage.artifacts["pte"])))
    module = load_module(stage, model_factory)
    if stage.runtime == EAGER:
        def eager(x):
            with torch.no_grad():
                return module(x)

        facts = {}
        if isinstance(module, torch.fx.GraphModule):  # a saved program: what will it compute in int8?
            targets = [str(n.target) for n in module.graph.nodes if n.op == "call_function"]
            facts["int8_matmuls"] = sum(t in INT8_MATMULS for t in targets)
        return Runner(eager, lambda: dict(facts))
    if stage.runtime == INDUCTOR:
        counters.clear()  # the int8 lowering passes count their matches here
        run = compile_for_cpu(module)
        first: dict = {}

        def counted(x):
            y = run(x)
            if not first:  # the counts of the first compilation (later shapes recompile)
                inductor = counters["inductor"]
                first.update({"int8_kernels": {
                    "qconv": inductor.get("qconv_weight_prepack_matcher_count", 0),
                    "qlinear": inductor.get("qlinear_weight_prepack_matcher_count", 0)},
                    "graph_breaks": sum(counters["graph_break"].values()), "compiled": "fullgraph"})
            return y

        return Runner(counted, lambda: dict(first))
    raise CompressionError(f"unknown runtime {stage.runtime!r}")
