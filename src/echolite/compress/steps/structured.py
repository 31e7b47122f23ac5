"""``structured_prune``: whole channels removed with Torch-Pruning (DepGraph), which keeps coupled
layers (residual adds, concatenations, the two halves a mean+std pooling feeds the head) consistent.
The model keeps its module names, so it reloads from its state dict alone
(:func:`echolite.compress.runners.rebuild_from_state_dict`); BatchNorm statistics are re-estimated
afterwards on the calibration inputs."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from echolite.compress.backends.pruning import importance, recalibrate_bn, take
from echolite.compress.base import CompressionError, Context, Stage, StepConfig, register, save_weights
from echolite.env import package_versions
from echolite.measure.complexity import macs_and_params
from echolite.typed import setting

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StructuredPruneConfig(StepConfig):
    """Remove whole channels (Torch-Pruning, DepGraph); the model really gets narrower.

    Attributes:
        ratio: fraction of the channels removed from every prunable layer (uniform).
        importance: l1 | l2 (weight magnitude), bn (BatchNorm scale), taylor (|w * dL/dw| on
            TRAIN batches of the task's loss).
        keep: module names whose output channels are kept (the task's output layer always is).
        round_to: channel counts kept multiple of this (SIMD-friendly).
        global_pruning: rank channels across layers (non-uniform widths) instead of per layer.
        bn_items: calibration items to re-estimate BatchNorm statistics afterwards; 0 = off.
        taylor_batches: TRAIN batches whose gradients score channels (importance=taylor).
    """

    key: ClassVar[str] = "structured_prune"
    method: ClassVar[str] = "structured-prune"
    family: ClassVar[str] = "pruning"

    ratio: float = setting(0.5, "fraction of the channels removed from every prunable layer")
    importance: Literal["l1", "l2", "bn", "taylor"] = setting("l1", "the channel criterion")
    keep: tuple[str, ...] = setting((), "module names whose output channels are kept (the output layer is)")
    round_to: int = setting(8, "channel counts kept multiple of this (SIMD-friendly)")
    global_pruning: bool = setting(False, "rank channels across layers (non-uniform widths)")
    bn_items: int = setting(64, "calibration items to re-estimate BatchNorm statistics afterwards; 0 = off")
    taylor_batches: int = setting(4, "TRAIN batches whose gradients score channels (taylor)")

    def __post_init__(self):
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"ratio must be in [0, 1), but got {self.ratio}")
        if self.round_to < 1 or self.bn_items < 0 or self.taylor_batches < 1:
            raise ValueError(f"round_to and taylor_batches must be >= 1 and bn_items >= 0, got "
                             f"{self.round_to}, {self.taylor_batches}, {self.bn_items}")



@register(StructuredPruneConfig)
def structured_prune(stage: Stage, cfg: StructuredPruneConfig, ctx: Context) -> Stage:
    import torch_pruning as tp  # heavy: only this step loads it

    module = copy.deepcopy(stage.module).eval()
    before = macs_and_params(module, ctx.example_input)
    details = {"library": f"torch-pruning {package_versions()['torch-pruning']} "
                          "(DepGraph, MetaPruner)",
               "importance": cfg.importance, "ratio": cfg.ratio, "round_to": cfg.round_to,
               "global_pruning": cfg.global_pruning, "macs_before": before["macs"],
               "params_before": before["params"]}
    if cfg.ratio > 0:
        keep = set(cfg.keep) | set(ctx.protected(stage.model))
        missing = sorted(keep - {n for n, _ in module.named_modules()})
        if missing:
            raise CompressionError(f"{cfg.key}: keep names no module: {missing}")
        ignored = [module.get_submodule(n) for n in sorted(keep)]
        example = torch.cat([ctx.example_input[:1]] * 2)  # batch 2: shapes that stay symbolic
        criterion = importance(cfg.importance)
        with torch.enable_grad():
            pruner = tp.pruner.MetaPruner(module, example_inputs=example, importance=criterion,
                                          pruning_ratio=cfg.ratio, global_pruning=cfg.global_pruning,
                                          ignored_layers=ignored, round_to=cfg.round_to)
            if cfg.importance == "taylor":
                if ctx.gradient_batches is None:
                    raise CompressionError(f"{cfg.key}: taylor importance needs the task's loss and data")
                module.zero_grad()
                for x, y, loss_fn in ctx.gradient_batches(cfg.taylor_batches):
                    loss_fn(module(x), y).backward()
            pruner.step()
        module.zero_grad(set_to_none=True)
        widths = {n: m.out_channels for n, m in module.named_modules() if isinstance(m, nn.Conv2d)}
        details["conv_widths"] = widths
    recal = cfg.bn_items and cfg.ratio > 0  # ratio 0 is the identity
    bn = recalibrate_bn(module, take(ctx.calibration(), cfg.bn_items)) if recal else 0
    module.eval()
    after = macs_and_params(module, ctx.example_input)
    if cfg.ratio > 0 and after["macs"] >= before["macs"]:
        raise CompressionError(f"{cfg.key}: pruning {cfg.ratio:.0%} of the channels removed no MACs "
                               f"({before['macs'] / 1e9:.2f}G before and after): nothing was prunable")
    details.update(bn_recalibrated_on=bn, **after, macs_ratio=after["macs"] / before["macs"],
                   params_ratio=after["params"] / before["params"])
    log.info("structured pruning %.0f %% (%s): MACs %.2fG -> %.2fG, params %.2fM -> %.2fM", 100 * cfg.ratio,
             cfg.importance, before["macs"] / 1e9, after["macs"] / 1e9, before["params"] / 1e6,
             after["params"] / 1e6)
    return stage.then(cfg.method, details, module=module,
                      artifacts={"state_dict": save_weights(module, ctx.work_dir)})
