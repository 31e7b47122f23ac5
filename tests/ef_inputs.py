"""Inputs shared by the compression tests: a small EF model and seeded random clips (64² frames:
ResNet-18 runs on any frame size and small frames keep the tests fast)."""

import torch
from torch import nn

from echolite.models.ef import EFRegressor

SIZE = 64


def clips(n: int, seed: int = 0) -> list[torch.Tensor]:
    """``n`` batch-1 clips (1, 8, 3, SIZE, SIZE) of raw pixel values, from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(1, 8, 3, SIZE, SIZE, generator=g) * 255 for _ in range(n)]


def ef_model(spread_bn: bool = False) -> EFRegressor:
    """A seeded EF model whose BatchNorm has realistic running statistics (a few train-mode
    passes); ``spread_bn``: distinct BatchNorm scales, so channel importances differ."""
    torch.manual_seed(0)
    m = EFRegressor("meanstd", (40.0,) * 3, (50.0,) * 3, ef_mean=56.0, ef_std=12.0)
    with torch.no_grad():
        if spread_bn:
            for mod in m.modules():
                if isinstance(mod, nn.BatchNorm2d):
                    mod.weight.uniform_(0.5, 1.5)
        for _ in range(3):
            m(torch.rand(4, 8, 3, SIZE, SIZE) * 255)
    return m.eval()
