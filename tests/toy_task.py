"""A second, tiny task for the tests: 3-class image classification on generated blobs.

It implements the task protocol and nothing else, to show that training, compression, the
measuring loop and the report run a task they were never written for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from echolite.config import EvalConfig, apply_overrides, from_dict
from echolite.store import tensors_digest
from echolite.tasks.base import Budget, DataRef, EvalSet, Metric, Task, logit_distill_loss
from echolite.typed import setting

SIZE, CLASSES = 16, 3


@dataclass
class ToyData:
    n_train: int = setting(96, "TRAIN items")
    n_val: int = setting(24, "VAL items")
    n_test: int = setting(30, "TEST items")
    seed: int = setting(0, "seed of the blobs")
    num_workers: int = setting(0, "loader processes", identity=False)


@dataclass
class ToyModel:
    width: int = setting(8, "channels")
    arch: Literal["toynet", "toynet-small"] = setting("toynet", "toynet-small: 2 channels (a student)")


class ToyNet(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        self.register_buffer("scale", torch.tensor(1 / 255.0))
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, stride=2), nn.BatchNorm2d(width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(width, CLASSES)

    def forward(self, x):
        return self.head(self.features(x * self.scale))


def blobs(n: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """uint8 (n, 3, 16, 16) noise images with a square, placed at random, bright in the class's channel."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    x = rng.integers(0, 100, (n, 3, SIZE, SIZE))
    for i, c in enumerate(y):
        r, col = rng.integers(0, SIZE - 6, 2)
        x[i, int(c), r: r + 6, col: col + 6] += 120
    return torch.from_numpy(x.astype(np.uint8)), y


class _Items(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, item):
        index = item[0] if isinstance(item, tuple) else item
        return self.x[index], int(self.y[index])


class ToyTask(Task):
    NAME = "toy"
    TITLE = "toy 3-class blobs"
    INPUT_NAME = "images"
    ITEM = "image"
    METRICS = (Metric("accuracy", "accuracy", fmt=".3f", higher_is_better=True),)
    PRIMARY = "accuracy"
    BUDGET = Budget(0.05, relative=False)
    EVAL_BATCH = 8
    OUTPUT_LAYERS = ("head",)
    DataConfig, ModelConfig, EvalConfig = ToyData, ToyModel, EvalConfig

    @classmethod
    def prepare(cls, cfg, run_dir, store=None, splits=("TRAIN", "VAL", "TEST")):
        d = cfg.data
        splits = {"TRAIN": blobs(d.n_train, d.seed), "VAL": blobs(d.n_val, d.seed + 1),
                  "TEST": blobs(d.n_test, d.seed + 2)}
        key = tensors_digest([t for x, y in splits.values() for t in (x, y)])
        return DataRef(run_dir, splits, key, {"root": "generated", "kind": "toy blobs",
                                              "splits": {k: len(v[1]) for k, v in splits.items()}})

    @classmethod
    def build_model(cls, cfg, stats=None):
        return ToyNet(cfg.model.width if cfg.model.arch == "toynet" else 2)

    @classmethod
    def example_shape(cls, cfg):
        return (3, SIZE, SIZE)

    def train_dataset(self):
        return _Items(*self.data.table["TRAIN"])

    def loss(self, output, target):
        return nn.functional.cross_entropy(output, target)

    def example_input(self):
        return self.data.table[self.cfg.eval.split][0][:1].float()

    def calibration_inputs(self, n, split):
        return [x[None].float() for x in self.data.table[split][0][:n]]

    def eval_set(self, split, limit=None, seed=0):
        x, y = self.data.table[split]
        if limit:
            pick = np.random.default_rng(seed).permutation(len(y))[:limit]
            x, y = x[pick], y[pick]
        return EvalSet(x, y, [str(i) for i in range(len(y))], split)

    def decode(self, outputs):
        return outputs.argmax(1).numpy()

    def metric_fns(self):
        return {"accuracy": lambda y, p: float(np.mean(y == p))}

    def distill_loss(self, output, teacher, temperature):
        return logit_distill_loss(output, teacher, temperature)

    def compare(self, pred, ref_pred):
        return {"agreement": float(np.mean(pred == ref_pred))}


def toy_config(*sets, recipes=None):
    """A fast toy config (4 epochs, tiny timing budgets) with ``--set`` strings on top."""
    cfg = from_dict({"task": "toy", "name": "toy", "compress": {"recipes": recipes or {}}})
    return apply_overrides(cfg, ["train.epochs=4", "train.lr=0.01", "train.batch_size=16",
                                 "train.warmup_epochs=0", "eval.n_bootstrap=200",
                                 "measure.latency_min_runs=3", "measure.latency_min_seconds=0",
                                 "measure.throughput_batch=4", "compress.calib_items=8",
                                 "compress.sensitivity_items=8", *sets])
