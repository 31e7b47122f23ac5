"""``unstructured_prune``: magnitude (L1) pruning of conv/linear weights, global or per layer, one-shot
or gradual (sparsity raised over a fine-tuning by a cubic schedule), masks made permanent. Dense
kernels do not get faster from zeros: the gain is the size stored compressed (every row reports its
file deflate-compressed beside the dense size)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar, Literal

from torch.nn.utils import prune as tprune

from echolite.compress.backends.pruning import apply_sparsity, prunable, recalibrate_bn, sparsity_over, take
from echolite.compress.base import CompressionError, Context, Stage, StepConfig, register, save_weights
from echolite.measure.complexity import macs_and_params
from echolite.typed import setting


@dataclass(frozen=True)
class UnstructuredPruneConfig(StepConfig):
    """Zero the smallest-magnitude weights of every conv/linear layer (L1).

    Attributes:
        sparsity: fraction of weights set to zero (of all pruned layers together if ``scope`` is
            global, of each layer if ``layer``).
        scope: global (one threshold for the network) | layer (the same fraction in every layer).
        gradual_epochs: 0 = one-shot; else fine-tune this many epochs while the sparsity rises
            by the cubic schedule s_t = s (1 - (1 - t/T)^3) (Zhu & Gupta, 2017), pruning at the
            start of every epoch; ``lr`` is that fine-tuning's learning rate.
        keep: module names left dense (the task's output layer always is).
        bn_items: one-shot only: calibration items to re-estimate BatchNorm statistics after
            pruning (measured: recovers most of the loss without any training); 0 = off.
    """

    key: ClassVar[str] = "unstructured_prune"
    method: ClassVar[str] = "unstructured-prune"
    family: ClassVar[str] = "pruning"

    sparsity: float = setting(0.5, "fraction of the weights set to zero")
    scope: Literal["global", "layer"] = setting("global", "one threshold for the network, or per layer")
    gradual_epochs: int = setting(0, "0 = one-shot; else fine-tune this many epochs, sparsity rising")
    lr: float = setting(1e-4, "the gradual fine-tuning's learning rate")
    max_items: int = setting(0, "TRAIN items per gradual epoch; 0 = all")
    keep: tuple[str, ...] = setting((), "module names left dense (the task's output layer always is)")
    bn_items: int = setting(64, "one-shot: calibration items to re-estimate BatchNorm statistics; 0 = off")

    def __post_init__(self):
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), but got {self.sparsity}")
        if self.gradual_epochs < 0 or self.bn_items < 0:
            raise ValueError(f"gradual_epochs and bn_items must be >= 0, got {self.gradual_epochs}, "
                             f"{self.bn_items}")



@register(UnstructuredPruneConfig)
def unstructured_prune(stage: Stage, cfg: UnstructuredPruneConfig, ctx: Context) -> Stage:
    module = copy.deepcopy(stage.module).eval()
    keep = tuple(cfg.keep) + tuple(ctx.protected(stage.model))
    layers = prunable(module, keep)
    if not layers:
        raise CompressionError(f"{cfg.key}: no conv/linear layer left to prune (keep={keep})")
    details = {"library": "torch.nn.utils.prune (L1Unstructured)", "scope": cfg.scope,
               "target_sparsity": cfg.sparsity, "kept_dense": list(keep)}
    if cfg.gradual_epochs:
        if ctx.finetune is None:
            raise CompressionError(f"{cfg.key}: gradual pruning needs the task's training loop")
        steps = cfg.gradual_epochs

        def on_epoch(epoch: int) -> None:  # the schedule reaches the target at the last epoch
            target = cfg.sparsity * (1.0 - (1.0 - (epoch + 1) / steps) ** 3)
            apply_sparsity(layers, target, cfg.scope)

        history = ctx.finetune(module, steps, cfg.lr, on_epoch=on_epoch, max_items=cfg.max_items,
                               keep_best=False)
        details.update(schedule="gradual (cubic)", epochs=steps, lr=cfg.lr, history=history)
    else:
        apply_sparsity(layers, cfg.sparsity, cfg.scope)
        details["schedule"] = "one-shot"
    for _, m in layers:
        if tprune.is_pruned(m):
            tprune.remove(m, "weight")  # masks made permanent: plain zeros in a plain weight
    if not cfg.gradual_epochs and cfg.bn_items and cfg.sparsity > 0:
        details["bn_recalibrated_on"] = recalibrate_bn(module, take(ctx.calibration(), cfg.bn_items))
    module.eval()
    s = sparsity_over(module, [n for n, _ in layers])
    details.update(reached_sparsity=s["overall"], per_layer_sparsity=s["per_layer"],
                   **macs_and_params(module, ctx.example_input))
    return stage.then(cfg.method, details, module=module,
                      artifacts={"state_dict": save_weights(module, ctx.work_dir)})
