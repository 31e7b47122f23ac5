"""Epoch-keyed sampling: the order and the augmentation of every training item are functions of
(seed, epoch), whatever the number of loader workers or processes. An interrupted run resumes bit
for bit; with another number of processes it sees the same items per step (BatchNorm statistics
then differ, as each process normalises its own share, unless train.freeze_bn)."""

from __future__ import annotations

import numpy as np
import torch


class EpochSampler(torch.utils.data.Sampler):
    """Shuffled ``(index, item_seed)`` pairs; both depend only on (seed, epoch).

    With ``world > 1`` (one sampler per process of a distributed run) the epoch is cut into
    global batches of ``batch * world`` items and process ``rank`` takes slice ``rank`` of each,
    so the union of the processes' batches at every step is exactly the single-process batch of
    ``batch * world`` items at that step (a ragged end is dropped, as ``drop_last`` does).

    Args:
        n: dataset length.
        seed: base seed.
        max_items: items per epoch (a fresh random subset each epoch); 0 = all.
        rank, world: this process and the number of processes.
        batch: the per-process batch size (only used when ``world > 1``).
    """

    def __init__(self, n: int, seed: int, max_items: int = 0, rank: int = 0, world: int = 1, batch: int = 1):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside world of {world}")
        self.n, self.seed, self.epoch = n, seed, 0
        self.max_items = min(max_items, n) if max_items else n
        self.rank, self.world, self.batch = rank, world, batch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        if self.world == 1:
            return self.max_items
        return self.max_items // (self.batch * self.world) * self.batch

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.n)
        seeds = rng.integers(0, 2**63, self.n)
        pairs = list(zip(order, seeds))[: self.max_items]
        if self.world > 1:
            size = self.batch * self.world
            pairs = [p for start in range(0, len(pairs) - size + 1, size)
                     for p in pairs[start + self.rank * self.batch: start + (self.rank + 1) * self.batch]]
        return iter((int(i), int(s)) for i, s in pairs)
