"""``distill``: train a student of another architecture to match the current float model (the teacher).

The student is a fresh network of the task's model settings with ``arch`` (and ``frame_size``)
changed, initialised with the TRAIN statistics (or its backbone from a local torchvision file); the
loss is the task's, mixed with a match to the teacher's outputs, which are computed once on every
TRAIN item and stored (keyed by the teacher's weights and the data). ``alpha=0`` trains the same
student alone (no teacher): the comparison that says whether distillation helps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from echolite.compress.base import CompressionError, Context, Stage, StepConfig, register, save_weights
from echolite.measure.complexity import macs_and_params
from echolite.models.backbones import load_torchvision_weights
from echolite.store import file_digest
from echolite.typed import setting


@dataclass(frozen=True)
class DistillConfig(StepConfig):
    """Knowledge distillation into a student (the task's loop; AdamW, warm-up then cosine).

    Attributes:
        arch: the student's ``model.arch`` (the task's registry, e.g. mobilenet_v3_small).
        frame_size: the student's ``model.frame_size`` (video tasks: frames pooled to this size
            inside the model; 0 = the task's setting).
        alpha: weight of the match to the teacher (1 - alpha: the task loss on the true targets);
            0 = the student trained alone.
        temperature: softening of classification logits (regression ignores it).
        epochs, lr, warmup_epochs, max_items: the student's training (the task's batch size and
            weight decay); the epoch with the best VAL score is kept.
        weights: a local torchvision state dict for the student's backbone (never downloaded).
    """

    key: ClassVar[str] = "distill"
    method: ClassVar[str] = "distill"
    family: ClassVar[str] = "students"

    arch: str = setting("mobilenet_v3_small", "the student's model.arch")
    frame_size: int = setting(0, "the student's model.frame_size (video tasks); 0 = the task's")
    alpha: float = setting(1.0, "weight of the match to the teacher; 0 = the student trained alone")
    temperature: float = setting(4.0, "softening of classification logits (KL at T, times T²)")
    epochs: int = setting(5, "student training epochs")
    lr: float = setting(1e-3, "peak learning rate (AdamW)")
    warmup_epochs: float = setting(0.5, "linear learning-rate warm-up")
    max_items: int = setting(0, "TRAIN items per epoch; 0 = all")
    weights: str | None = setting(None, "a local torchvision state dict of the student's backbone")

    def __post_init__(self):
        if not 0.0 <= self.alpha <= 1.0 or self.temperature <= 0:
            raise ValueError(f"alpha must be in [0, 1] and temperature > 0, got {self.alpha}, {self.temperature}")
        if self.epochs < 1 or self.lr <= 0 or self.max_items < 0 or self.frame_size < 0 or self.warmup_epochs < 0:
            raise ValueError(f"distill needs epochs >= 1, lr > 0, max_items >= 0, frame_size >= 0, "
                             f"warmup_epochs >= 0, got {self.epochs}, {self.lr}, {self.max_items}, "
                             f"{self.frame_size}, {self.warmup_epochs}")
        if self.weights is not None and not Path(self.weights).is_file():
            raise ValueError(f"weights: {self.weights}: no such file (weights are never downloaded)")

    def label(self) -> str:
        return super().label().replace(f"{self.key}(", f"{self.key}(arch={self.arch!r}, ", 1).replace(
            f", arch={self.arch!r}", "", 1).replace(", )", ")")

    def model_overrides(self) -> dict:
        """The student's model settings (what its stages' ``model`` records)."""
        return {"arch": self.arch, **({"frame_size": self.frame_size} if self.frame_size else {})}

    def key_dict(self) -> dict:
        """The config, with the weights file's content instead of its path."""
        out = self.as_dict()
        out["weights"] = file_digest(Path(self.weights)) if self.weights else None
        return out


@register(DistillConfig)
def distill(stage: Stage, cfg: DistillConfig, ctx: Context) -> Stage:
    if ctx.distill is None or ctx.student is None:
        raise CompressionError(f"{cfg.key}: needs the task's training loop and model builder")
    teacher = stage.module.eval()
    overrides = cfg.model_overrides()
    torch.manual_seed(0)  # the student's initial weights
    student = ctx.student(overrides)
    loaded = None
    if cfg.weights:
        if not hasattr(student, "backbone"):
            raise CompressionError(f"{cfg.key}: {cfg.arch} has no torchvision backbone to load {cfg.weights} into")
        loaded = load_torchvision_weights(student.backbone, cfg.arch, torch.load(cfg.weights, weights_only=True),
                                          f"{cfg.key} weights {cfg.weights}")
    t0 = time.perf_counter()
    history, info = ctx.distill(student, teacher, stage.model, cfg.epochs, cfg.lr, cfg.alpha, cfg.temperature,
                                cfg.max_items, cfg.warmup_epochs)
    student.eval()
    details = {"student": overrides, "alpha": cfg.alpha, "temperature": cfg.temperature, "epochs": cfg.epochs,
               "lr": cfg.lr, "initial_weights": loaded or "random (seed 0)", "history": history,
               "kept_epoch": info["kept_epoch"], "kept_val_score": info["kept_val_score"],
               "teacher": macs_and_params(teacher, ctx.example_input),
               **macs_and_params(student, ctx.example_input), **info,
               "seconds": round(time.perf_counter() - t0, 1)}
    size = f" @{cfg.frame_size}px" if cfg.frame_size else ""
    label = f"distill({cfg.arch}{size})" if cfg.alpha > 0 else f"student({cfg.arch}{size}, alone)"
    return stage.then(label, details, module=student, model=overrides,
                      artifacts={"state_dict": save_weights(student, ctx.work_dir)})
