"""Epoch-keyed sampling: the order and the augmentation of every training item are functions of
(seed, epoch), whatever the number of workers, so an interrupted run resumes bit for bit."""

from __future__ import annotations

import numpy as np
import torch


class EpochSampler(torch.utils.data.Sampler):
    """Shuffled ``(index, item_seed)`` pairs; both depend only on (seed, epoch).

    Args:
        n: dataset length.
        seed: base seed.
        max_items: items per epoch (a fresh random subset each epoch); 0 = all.
    """

    def __init__(self, n: int, seed: int, max_items: int = 0):
        self.n, self.seed, self.epoch = n, seed, 0
        self.max_items = min(max_items, n) if max_items else n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.max_items

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.n)
        seeds = rng.integers(0, 2**63, self.n)
        return iter((int(i), int(s)) for i, s in list(zip(order, seeds))[: self.max_items])
