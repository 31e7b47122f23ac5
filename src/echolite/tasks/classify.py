"""Image classification of datasets in the CIFAR-10 python layout (real CIFAR-10, or the built-in
handwritten digits written in that layout by ``echolite digits``).

Items are uint8 images (3, 32, 32); targets are class indices; models are the tutorial-size CNN
or a CIFAR-style ResNet-18 (:mod:`echolite.models.classify`). VAL is carved from the training
batches (stratified, deterministic); TEST is ``test_batch``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from echolite import EcholiteError
from echolite.data.cifar import META, TEST_BATCH, TRAIN_BATCHES, batches_dir, read_cifar, stratified_split
from echolite.data.cifar import validate as validate_cifar
from echolite.data.digits import write_digits
from echolite.identity import dataset_key, digits_inputs
from echolite.metrics.classification import accuracy, macro_f1
from echolite.models.classify import OUTPUT_LAYERS, build_classifier
from echolite.results import MB, ok_rows, size_bytes
from echolite.settings import ClassifyDataConfig, ClassifyModelConfig, EvalConfig
from echolite.store import file_digest
from echolite.tasks.base import Budget, DataRef, EvalSet, Metric, Task, logit_distill_loss

log = logging.getLogger(__name__)
DIGITS_FOLDER = "digits-cifar10"


class _Images(torch.utils.data.Dataset):
    """uint8 images with random crop/flip drawn from the per-item seed of ``(index, seed)``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, pad: int, flip: bool):
        self.images, self.labels, self.pad, self.flip = images, labels, pad, flip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item):
        index, seed = item if isinstance(item, tuple) else (item, None)
        x = self.images[index]
        if seed is not None:
            rng = np.random.default_rng(seed)
            if self.pad:
                padded = np.pad(x, ((0, 0), (self.pad, self.pad), (self.pad, self.pad)))
                i, j = rng.integers(0, 2 * self.pad + 1, 2)
                x = padded[:, i: i + x.shape[1], j: j + x.shape[2]]
            if self.flip and rng.random() < 0.5:
                x = x[:, :, ::-1]
        return torch.from_numpy(np.ascontiguousarray(x)), int(self.labels[index])


class ClassifyTask(Task):
    NAME = "cifar10"
    TITLE = "image classification (CIFAR-10 layout)"
    INPUT_NAME = "images"
    ITEM = "image"
    METRICS = (Metric("accuracy", "accuracy", "%", fmt=".2f", higher_is_better=True),
               Metric("macro_f1", "macro-F1", "%", fmt=".2f", higher_is_better=True))
    PRIMARY = "accuracy"
    BUDGET = Budget(1.0, relative=False)  # accuracy may drop by 1 percentage point
    EVAL_BATCH = 64  # small models are overhead-bound one image at a time: predict in batches
    DataConfig, ModelConfig, EvalConfig = ClassifyDataConfig, ClassifyModelConfig, EvalConfig

    FIGURES = ("confusion",)

    def __init__(self, cfg, data: DataRef, store=None):
        super().__init__(cfg, data)
        self.classes = data.table["classes"]

    # --- data ---------------------------------------------------------------------------------
    @classmethod
    def prepare(cls, cfg, run_dir: Path, store, splits=("TRAIN", "VAL", "TEST")) -> DataRef:
        dc = cfg.data
        if dc.root:
            root, kind = Path(dc.root), "CIFAR-10-layout dataset"
        else:
            entry = store.entry("digits", "digits", digits_inputs(DIGITS_FOLDER))
            if not entry.complete:
                log.info("writing the built-in digits data set to %s", entry.path)
                with entry.build() as tmp:
                    write_digits(tmp)
            root, kind = entry.path, "built-in sklearn digits in the CIFAR-10 layout"
        report = cls.validate(root)
        for problem in report.problems:
            log.error("%s", problem)
        if not report.ok:
            raise EcholiteError(report.summary() + " (see above)")
        data = read_cifar(root)
        n_val = dc.val_items or round(0.1 * len(data.train.labels))
        if not 0 < n_val < len(data.train.labels):
            raise EcholiteError(f"data.val_items={dc.val_items}: VAL must leave TRAIN images "
                                f"(the training batches hold {len(data.train.labels)})")
        train, val = stratified_split(data.train.labels, n_val, dc.val_seed)
        table = {"classes": data.classes,
                 "TRAIN": (data.train.images[train], data.train.labels[train]),
                 "VAL": (data.train.images[val], data.train.labels[val]),
                 "TEST": (data.test.images, data.test.labels)}
        folder = batches_dir(root)
        key = dataset_key("CIFAR-10 python", {
            "val": [n_val, dc.val_seed],
            "files": {n: file_digest(folder / n) for n in (*TRAIN_BATCHES, TEST_BATCH, META)}})
        splits = {s: int(len(table[s][1])) for s in ("TRAIN", "VAL", "TEST")}
        return DataRef(folder, table, key, {"root": str(folder), "kind": kind, "splits": splits,
                                            "classes": len(data.classes)})

    @classmethod
    def validate(cls, root: Path, check_items: bool = True, splits=("TRAIN", "VAL", "TEST")):
        report = validate_cifar(root)
        report.unit = "images"
        return report

    # --- model --------------------------------------------------------------------------------
    @classmethod
    def build_model(cls, cfg, stats: dict | None = None) -> torch.nn.Module:
        stats = stats or {"classes": 10, "pixel_mean": [0.0] * 3, "pixel_std": [1.0] * 3}
        return build_classifier(cfg.model.arch, stats["classes"], stats["pixel_mean"], stats["pixel_std"])

    @classmethod
    def model_name(cls, cfg) -> str:
        return cfg.model.arch

    @classmethod
    def output_layers(cls, cfg) -> tuple[str, ...]:
        return OUTPUT_LAYERS[cfg.model.arch]

    @classmethod
    def example_shape(cls, cfg) -> tuple[int, ...]:
        return (3, 32, 32)

    def init_stats(self) -> dict:
        images = self.data.table["TRAIN"][0].astype(np.float64)
        return {"classes": len(self.classes), "pixel_mean": images.mean(axis=(0, 2, 3)).tolist(),
                "pixel_std": np.maximum(images.std(axis=(0, 2, 3)), 1e-3).tolist()}

    # --- training -----------------------------------------------------------------------------
    def train_dataset(self) -> _Images:
        images, labels = self.data.table["TRAIN"]
        return _Images(images, labels, self.cfg.data.crop_pad, self.cfg.data.flip)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        smoothing = self.cfg.model.label_smoothing
        return torch.nn.functional.cross_entropy(output, target, label_smoothing=smoothing)

    def distill_loss(self, output: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        return logit_distill_loss(output, teacher, temperature)

    # --- compression and evaluation -----------------------------------------------------------
    def example_input(self) -> torch.Tensor:
        return torch.from_numpy(self.data.table[self.cfg.eval.split][0][:1]).float()

    def calibration_inputs(self, n: int, split: str) -> list[torch.Tensor]:
        return [x.unsqueeze(0).float() for x in self.eval_set(split, limit=n, seed=1).inputs]

    def eval_set(self, split: str, limit: int | None = None, seed: int = 0) -> EvalSet:
        images, labels = self.data.table[split]
        index = np.arange(len(labels))
        if limit:
            index = np.sort(np.random.default_rng(seed).permutation(len(labels))[:limit])
        ids = [f"{split.lower()}-{i}" for i in index]
        return EvalSet(torch.from_numpy(images[index]), labels[index], ids, split)

    def decode(self, outputs: torch.Tensor) -> np.ndarray:
        return outputs.argmax(dim=1).numpy()

    def metric_fns(self) -> dict:
        return {"accuracy": accuracy, "macro_f1": macro_f1}

    def extra_metrics(self, targets: np.ndarray, pred: np.ndarray) -> dict:
        k = len(self.classes)
        confusion = np.zeros((k, k), dtype=np.int64)
        np.add.at(confusion, (targets, pred), 1)
        per_class = {c: float(100.0 * confusion[i, i] / max(1, confusion[i].sum()))
                     for i, c in enumerate(self.classes)}
        return {"per_class_accuracy": per_class, "confusion": confusion.tolist(), "classes": self.classes}

    def compare(self, pred: np.ndarray, ref_pred: np.ndarray) -> dict:
        return {"agreement": float(100.0 * np.mean(pred == ref_pred)),
                "changed": int(np.sum(pred != ref_pred)), "unit": "% of images with the reference's class"}

    def prediction_table(self, evalset: EvalSet, pred: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"id": evalset.ids, "label": evalset.targets, "predicted": pred,
                             "label_name": [self.classes[i] for i in evalset.targets],
                             "predicted_name": [self.classes[i] for i in pred], "split": evalset.split})

    @classmethod
    def report_sections(cls, results: dict) -> list[str]:
        """The tutorial's comparison: accuracy and size per method (then latency, from the main table)."""
        lines = ["## Accuracy and size per method", "",
                 "| variant | precision | backend | accuracy (%) | paired Δ (pp) [95% CI] | size (MB) | "
                 "p50 ms @1 | images/s @batch |", "|---|---|---|---|---|---|---|---|"]
        for r in ok_rows(results):
            acc = r["metrics"]["values"]["accuracy"]["value"]
            d = (r["metrics"].get("paired_delta") or {}).get("accuracy")
            delta = "—" if d is None else f"{d['value']:+.2f} [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}]"
            lines.append(f"| {r['name']} | {r['precision']} | {r['backend']} | {acc:.2f} | {delta} | "
                         f"{size_bytes(r) / MB:.2f} | {r['latency_ms']['p50']:.2f} | "
                         f"{r['latency_ms']['throughput_items_per_s']:.0f} |")
        return lines + [""]
