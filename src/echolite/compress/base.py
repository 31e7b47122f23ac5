"""The compression engine's vocabulary: a config type per method, one verb, one result type.

    variant = compress(model, StaticPTQConfig(observer="histogram"), ctx)

Nothing here knows about echocardiograms or EF: a task supplies a float model, an example input,
calibration batches and (for QAT) a fine-tuning callback through :class:`Context`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from echolite import EcholiteError


class CompressionError(EcholiteError):
    """A method could not produce what it promises (e.g. nothing got quantized)."""


@dataclass
class Context:
    """What a task hands the engine.

    Attributes:
        example_input: one batch (batch size 1) with the deployment shape, for export and timing.
        calibration: callable returning an iterable of input batches (fresh iterator each call).
        work_dir: where artifacts are written.
        finetune: ``finetune(module, epochs, lr, on_epoch)`` trains a (fake-quantized) module in
            place on the task's data, calling ``on_epoch(epoch)`` before each epoch; QAT only.
        threads: intra-op threads every runtime is pinned to.
        calibration_key: names the calibration set, for caches of calibration results.
    """

    example_input: torch.Tensor
    calibration: Callable[[], Iterable[torch.Tensor]]
    work_dir: Path
    finetune: Callable[..., None] | None = None
    threads: int = 2
    calibration_key: str = "default"


@dataclass
class Variant:
    """A runnable, measured-to-be model variant.

    Attributes:
        predict: float input batch -> output tensor (CPU), for accuracy and latency.
        artifacts: deployable files by kind ("state_dict", "pt2", "onnx"); sizes are measured on them.
        details: what actually ran: backend, engine, observer, quantized-op counts, timings.
        reference: the PyTorch module of this variant (e.g. the eager Q/DQ graph of an int8
            model), against which other runtimes of the same variant are checked for parity.
    """

    name: str
    method: str
    precision: str
    backend: str
    predict: Callable[[torch.Tensor], torch.Tensor]
    artifacts: dict[str, Path] = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    reference: torch.nn.Module | None = None


_HANDLERS: dict[type, Callable] = {}


def register(config_type: type):
    """Class decorator / function decorator mapping a config dataclass to its handler."""

    def wrap(fn):
        _HANDLERS[config_type] = fn
        return fn

    return wrap


def compress(model: torch.nn.Module, config, ctx: Context) -> Variant:
    """Apply the method described by ``config`` to a copy of ``model``; returns the variant."""
    handler = _HANDLERS.get(type(config))
    if handler is None:
        raise EcholiteError(f"no compression method registered for {type(config).__name__}")
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    return handler(model, config, ctx)
