"""Complexity of a model: multiply-accumulates of one forward and parameter counts."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

WEIGHTED = (nn.Conv2d, nn.Linear)


def macs_and_params(module: nn.Module, example: torch.Tensor) -> dict:
    """Multiply-accumulates of one forward at ``example`` (torch.utils.flop_counter: conv and
    matmul FLOPs / 2) and the parameter count; the parameters of conv/linear layers only too."""
    module = copy.deepcopy(module).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(example)
    weights = sum(m.weight.numel() for m in module.modules() if isinstance(m, WEIGHTED))
    params = sum(p.numel() for p in module.parameters())
    return {"macs": int(counter.get_total_flops() // 2), "params": params, "weight_params": weights,
            "counter": "torch.utils.flop_counter (conv/linear FLOPs / 2)"}
