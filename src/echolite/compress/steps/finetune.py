"""``finetune``: the task's training loop on the current float model (zero weights stay zero)."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import ClassVar

from echolite.compress.backends.pruning import hold_zeros, recalibrate_bn, release, sparsity, take
from echolite.compress.base import (
    CompressionError,
    Context,
    Stage,
    StepConfig,
    kept_epoch,
    register,
    save_weights,
)
from echolite.typed import setting


@dataclass(frozen=True)
class FineTuneConfig(StepConfig):
    """The task's training loop on the current float model, from its weights.

    Attributes:
        epochs, lr: cosine schedule from ``lr`` (AdamW; the task's batch size and weight decay).
        max_items: TRAIN items per epoch; 0 = all.
        warmup_epochs: linear warm-up of the learning rate (AdamW starts without moments).
        keep_best: keep the epoch with the best VAL score (epoch 0 = no fine-tuning counts too).
        bn_items: calibration items to re-estimate BatchNorm statistics with afterwards; 0 = off
            (training keeps them current).
    """

    key: ClassVar[str] = "finetune"
    method: ClassVar[str] = "finetune"
    family: ClassVar[str] = "training"

    epochs: int = setting(2, "epochs (cosine schedule; the task's batch size and weight decay)")
    lr: float = setting(1e-4, "peak learning rate (AdamW)")
    max_items: int = setting(0, "TRAIN items per epoch; 0 = all")
    warmup_epochs: float = setting(0.0, "linear warm-up (AdamW starts without moments)")
    keep_best: bool = setting(True, "keep the epoch with the best VAL score (epoch 0 = no fine-tuning)")
    bn_items: int = setting(0, "calibration items to re-estimate BatchNorm statistics afterwards; 0 = off")

    def __post_init__(self):
        if self.epochs < 1 or self.lr <= 0 or self.max_items < 0 or self.bn_items < 0:
            raise ValueError(f"fine-tuning needs epochs >= 1, lr > 0, max_items >= 0, bn_items >= 0, got "
                             f"epochs={self.epochs}, lr={self.lr}, max_items={self.max_items}, "
                             f"bn_items={self.bn_items}")



@register(FineTuneConfig)
def finetune(stage: Stage, cfg: FineTuneConfig, ctx: Context) -> Stage:
    if ctx.finetune is None:
        raise CompressionError(f"{cfg.key}: needs the task's training loop")
    module = copy.deepcopy(stage.module)
    before = sparsity(module)["overall"]
    held = hold_zeros(module)
    t0 = time.perf_counter()
    history = ctx.finetune(module, cfg.epochs, cfg.lr, max_items=cfg.max_items, keep_best=cfg.keep_best,
                           warmup_epochs=cfg.warmup_epochs)
    release(held)
    bn = recalibrate_bn(module, take(ctx.calibration(), cfg.bn_items)) if cfg.bn_items else 0
    kept = kept_epoch(history, ctx.higher_is_better, cfg.keep_best)
    details = {"epochs": cfg.epochs, "lr": cfg.lr, "history": history, "kept_epoch": kept["epoch"],
               "kept_val_score": kept["val_score"],
               "bn_recalibrated_on": bn, "sparsity_held": round(before, 4),
               "seconds": round(time.perf_counter() - t0, 1)}
    after = sparsity(module)["overall"]
    if after + 1e-6 < before:
        raise CompressionError(f"{cfg.key}: sparsity fell from {before:.3f} to {after:.3f}")
    module.eval()
    return stage.then(cfg.method, details, module=module,
                      artifacts={"state_dict": save_weights(module, ctx.work_dir)})
