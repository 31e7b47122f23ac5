"""Helpers the pruning steps share: sparsity, holding zeros while training, BatchNorm re-estimation,
magnitude pruning (torch.nn.utils.prune) and Torch-Pruning's importance criteria.

``torch_pruning`` is imported where it is used (only the structured step needs it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.nn.utils import prune as tprune

from echolite.measure.complexity import WEIGHTED

IMPORTANCES = ("l1", "l2", "bn", "taylor")
BN_BATCH = 16  # items per forward when re-estimating BatchNorm statistics


def sparsity(module: nn.Module) -> dict:
    """Fraction of exactly-zero weights, per conv/linear layer and overall."""
    per_layer, zeros, total = {}, 0, 0
    for name, m in module.named_modules():
        if isinstance(m, WEIGHTED):
            z = int((m.weight == 0).sum())
            per_layer[name] = round(z / m.weight.numel(), 4)
            zeros, total = zeros + z, total + m.weight.numel()
    return {"overall": zeros / max(1, total), "per_layer": per_layer}


def recalibrate_bn(module: nn.Module, items, batch: int = BN_BATCH) -> int:
    """Re-estimate BatchNorm running statistics from ``items`` (input batches of any size), with
    no weight changing: the running mean and variance become the average over forwards of
    ``batch`` items each. Batches of one item would leave out the variance between items
    (measured on the phantom: a VAL error 27 % above FP32 instead of 3 % after 50 % unstructured
    pruning)."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    saved = [(m, m.momentum) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = the mean over all forwards
    module.train()
    n, pending = 0, []

    def forward(parts):
        with torch.no_grad():
            module(torch.cat(parts))
        return sum(len(p) for p in parts)

    for x in items:
        pending.append(x)
        if sum(len(p) for p in pending) >= batch:
            n += forward(pending)
            pending = []
    if pending and n == 0:  # a short tail would weigh as much as a full batch: only if it is all
        n += forward(pending)
    for m, momentum in saved:
        m.momentum = momentum
    module.eval()
    return n


def hold_zeros(module: nn.Module) -> list:
    """Keep today's zero weights at zero while training (pruning masks); returns the masked layers."""
    held = []
    for m in module.modules():
        if isinstance(m, WEIGHTED) and bool((m.weight == 0).any()):
            tprune.custom_from_mask(m, "weight", m.weight != 0)
            held.append(m)
    return held


def release(held: list) -> None:
    for m in held:
        tprune.remove(m, "weight")


def take(batches: Iterable[torch.Tensor], n: int) -> Iterator[torch.Tensor]:
    """The first batches of ``batches`` holding ``n`` items."""
    count = 0
    for x in batches:
        if count >= n:
            return
        yield x
        count += len(x)


def prunable(module: nn.Module, keep: tuple[str, ...]) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in module.named_modules() if isinstance(m, WEIGHTED) and n not in keep]


def apply_sparsity(layers, amount: float, scope: str) -> None:
    """Prune so that ``amount`` of the weights are zero (masks compose with earlier ones)."""
    if amount <= 0:
        return
    params = [(m, "weight") for _, m in layers]
    if scope == "global":
        total = sum(m.weight.numel() for m, _ in params)
        zero = sum(int((m.weight == 0).sum()) for m, _ in params)
        extra = round(amount * total) - zero
        if extra > 0:
            tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=extra)
    else:
        for m, _ in params:
            extra = round(amount * m.weight.numel()) - int((m.weight == 0).sum())
            if extra > 0:
                tprune.l1_unstructured(m, "weight", amount=extra)


def sparsity_over(module: nn.Module, names: list[str]) -> dict:
    s = sparsity(module)
    per = {n: s["per_layer"][n] for n in names}
    numels = {n: module.get_submodule(n).weight.numel() for n in names}
    overall = sum(per[n] * numels[n] for n in names) / sum(numels.values())
    return {"overall": round(overall, 4), "per_layer": per}


def importance(name: str):
    """A Torch-Pruning importance criterion by name (l1, l2, bn, taylor)."""
    import torch_pruning as tp  # heavy: only the structured step loads it

    return {"l1": lambda: tp.importance.MagnitudeImportance(p=1),
            "l2": lambda: tp.importance.MagnitudeImportance(p=2),
            "bn": tp.importance.BNScaleImportance,
            "taylor": tp.importance.TaylorImportance}[name]()
