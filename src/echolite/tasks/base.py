"""The task protocol: everything the engine (training, compression, measurement, report) asks of a task.

A task owns its data, its model architecture, its loss and its metrics. The engine owns the
training loop, the compression steps, the measuring loop and the report core, and learns about
a task only through this interface (as NNCF asks a task for a calibration set and a
``validation_fn``). What a task implements::

    prepare(cfg, run_dir) -> DataRef        resolve/generate + validate its data, before any work
    build_model(cfg) / init_stats()         the architecture (weights come from training or files)
    train_dataset() / loss() / val_score()  what the engine's training loop (and fine-tuning) needs
    example_input() / calibration_inputs()  what compression steps need
    eval_set(split) / decode(outputs)       what the measuring loop predicts on, and how to read it
    metric_fns() + METRICS + PRIMARY        its metrics (with 95 % CIs) and which one decides
    compare(pred, ref) / prediction_table() task words for "how different" and per-item outputs

Everything else (bootstrap CIs, paired Δ, batched prediction, scoring a VAL subset) is done here,
once, for every task.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from echolite.env import autocast, dist_info
from echolite.metrics.bootstrap import paired_delta, with_ci

SPLITS = ("TRAIN", "VAL", "TEST")


@dataclass(frozen=True)
class Metric:
    """A metric of a task as the report shows it."""

    key: str  # e.g. "accuracy"
    label: str  # column header, e.g. "top-1 accuracy"
    unit: str = ""  # e.g. "pp", "%"; "" for unitless
    fmt: str = ".2f"
    higher_is_better: bool = False


@dataclass(frozen=True)
class Budget:
    """How much worse than the reference the primary metric may get for a variant to ship.

    ``relative``: the bound is a fraction of the reference value (an error may grow by 5 %);
    otherwise it is in the metric's own units (accuracy: 0.01 = -1 pp).
    """

    max_worsening: float
    relative: bool

    def describe(self, metric: Metric) -> str:
        sign = "-" if metric.higher_is_better else "+"
        if self.relative:
            return f"{metric.label} {sign}{100 * self.max_worsening:g} % (relative)"
        unit = "pp" if metric.unit == "%" else metric.unit  # a difference of percentages
        return f"{metric.label} {sign}{self.max_worsening:g} {unit}".rstrip()


@dataclass
class DataRef:
    """A resolved, validated dataset.

    Attributes:
        root: dataset folder.
        table: the task's index of items (e.g. FileList rows) after validation.
        key: digest of what the data is (its index and every item's content, not where it lies):
            keys everything trained on it.
        description: shown in results ("kind", split sizes, provenance).
        items: item name -> content digest, where items are files (the frame cache's keys).
    """

    root: Path
    table: Any
    key: str
    description: dict
    items: dict = field(default_factory=dict)


@dataclass
class EvalSet:
    """Items of one split, loaded once, in a fixed order.

    Attributes:
        inputs: (N, ...) model inputs (uint8 or float; ``.float()`` gives what the model takes).
        targets: (N,) targets as the task's metric functions take them.
        ids: N item identifiers (file names, indices).
        split: split name.
    """

    inputs: torch.Tensor
    targets: np.ndarray
    ids: list[str]
    split: str

    def __len__(self) -> int:
        return len(self.targets)


class Task(abc.ABC):
    """Base of every task. Subclasses set the class attributes and implement the abstract methods."""

    NAME: ClassVar[str]  # the --task name
    TITLE: ClassVar[str]  # one line for reports
    INPUT_NAME: ClassVar[str]  # graph input name in exported files
    ITEM: ClassVar[str]  # unit of throughput: "video", "image"
    METRICS: ClassVar[tuple[Metric, ...]]
    PRIMARY: ClassVar[str]  # key of the metric that decides (and is used by searches)
    BUDGET: ClassVar[Budget]  # default accuracy budget for recommending a variant
    EVAL_BATCH: ClassVar[int] = 1  # batch size of the measuring loop's predictions
    OUTPUT_LAYERS: ClassVar[tuple[str, ...]] = ()  # modules producing the outputs (never pruned)
    FIGURES: ClassVar[tuple[str, ...]] = ()  # the task's report figures (names in echolite.figures)
    DataConfig: ClassVar[type]
    ModelConfig: ClassVar[type]
    EvalConfig: ClassVar[type]

    def __init__(self, cfg, data: DataRef, store=None):
        self.cfg, self.data = cfg, data

    # --- data ---------------------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def prepare(cls, cfg, run_dir: Path, store, splits=SPLITS) -> DataRef:
        """Resolve (or generate, into ``store``) and validate the data; raise EcholiteError before
        any long work. ``splits``: the splits the job needs (evaluation needs only its own)."""

    @property
    def num_workers(self) -> int:
        return int(getattr(self.cfg.data, "num_workers", 0))

    # --- model --------------------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def build_model(cls, cfg, stats: dict | None = None) -> torch.nn.Module:
        """The architecture of ``cfg``; ``stats`` (from :meth:`init_stats`) initialise it for training."""

    @classmethod
    def model_name(cls, cfg) -> str:
        return cls.NAME

    @classmethod
    def output_layers(cls, cfg) -> tuple[str, ...]:
        """Modules of ``cfg``'s architecture whose outputs are the model's outputs (never pruned)."""
        return cls.OUTPUT_LAYERS

    def distill_loss(self, output: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
        """How far a student's outputs are from the teacher's stored outputs (distillation's match
        term, on the same scale as :meth:`loss`)."""
        raise NotImplementedError(f"task {self.NAME} has no distillation loss")

    @classmethod
    @abc.abstractmethod
    def example_shape(cls, cfg) -> tuple[int, ...]:
        """Shape of one input item (without the batch dimension)."""

    @classmethod
    def validate(cls, root: Path, check_items: bool = True, splits=SPLITS):
        """Check a dataset folder: a :class:`echolite.data.validate.Report` (every problem once)."""
        raise NotImplementedError(f"task {cls.NAME} has no validator")

    def load_pretrained(self, model: torch.nn.Module, path: str) -> None:
        raise NotImplementedError(f"task {self.NAME} takes no pretrained weights")

    def init_stats(self) -> dict:
        """Statistics of TRAIN that a fresh model is initialised with (normalisation, output scale)."""
        return {}

    # --- training -----------------------------------------------------------------------------
    @abc.abstractmethod
    def train_dataset(self) -> torch.utils.data.Dataset:
        """TRAIN items addressed by ``(index, seed)`` (augmentation drawn from the seed)."""

    @abc.abstractmethod
    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Training loss of a batch (model output and target, on the training device)."""

    def val_score(self, model: torch.nn.Module, device: torch.device, amp=None) -> float:
        """The primary metric on the whole VAL split (model selection). In a distributed run every
        process predicts its share and the outputs are gathered: every item counts once."""
        evalset = self.eval_set("VAL")
        rank, world, _ = dist_info()
        run = model_runner(model, device, amp)
        if world == 1:
            outputs = predict_outputs(run, evalset, self.cfg.train.batch_size)
        else:
            mine = np.arange(rank, len(evalset), world)
            part = EvalSet(evalset.inputs[mine], evalset.targets[mine], [], evalset.split)
            shares: list = [None] * world
            dist.all_gather_object(shares, (mine, predict_outputs(run, part, self.cfg.train.batch_size)))
            shape = next(out.shape[1:] for _, out in shares if len(out))
            outputs = torch.empty(len(evalset), *shape)
            for index, out in shares:
                outputs[torch.as_tensor(index)] = out
        return self.primary_fn()(evalset.targets, self.decode(outputs))

    # --- compression --------------------------------------------------------------------------
    @abc.abstractmethod
    def example_input(self) -> torch.Tensor:
        """One deployment-shaped batch of size 1 (float), for export and timing."""

    @abc.abstractmethod
    def calibration_inputs(self, n: int, split: str) -> list[torch.Tensor]:
        """``n`` batches of size 1 (float) drawn deterministically from ``split``."""

    # --- evaluation ---------------------------------------------------------------------------
    @abc.abstractmethod
    def eval_set(self, split: str, limit: int | None = None, seed: int = 0) -> EvalSet:
        """The items of ``split`` in file order (or ``limit`` of them drawn with ``seed``)."""

    @abc.abstractmethod
    def decode(self, outputs: torch.Tensor) -> np.ndarray:
        """Model outputs (N, ...) -> predictions (N,) as the metric functions take them."""

    @abc.abstractmethod
    def metric_fns(self) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
        """``fn(targets, predictions) -> float`` for every key of METRICS."""

    def extra_metrics(self, targets: np.ndarray, pred: np.ndarray) -> dict:
        """Metrics without CIs (e.g. per-class accuracy, a constant-prediction reference)."""
        return {}

    @abc.abstractmethod
    def compare(self, pred: np.ndarray, ref_pred: np.ndarray) -> dict:
        """How far a variant's predictions are from the reference's, in the task's words."""

    def prediction_table(self, evalset: EvalSet, pred: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"id": evalset.ids, "target": evalset.targets, "prediction": pred,
                             "split": evalset.split})

    @classmethod
    def report_sections(cls, results: dict) -> list[str]:
        """Extra markdown the task adds to the report (after the summary)."""
        return []

    # --- generic, the same for every task -------------------------------------------------------
    @classmethod
    def metric(cls, key: str) -> Metric:
        return next(m for m in cls.METRICS if m.key == key)

    def primary_fn(self):
        return self.metric_fns()[self.PRIMARY]

    def budget(self) -> Budget:
        override = getattr(self.cfg.eval, "budget", None)
        return self.BUDGET if override is None else Budget(float(override), self.BUDGET.relative)

    def score_subset(self, fn: Callable, n: int, split: str = "VAL", seed: int = 2) -> float:
        """Primary metric of the runner ``fn`` on ``n`` items of ``split`` (fixed by ``seed``)."""
        evalset = self._subset_cache(split, n, seed)
        return self.primary_fn()(evalset.targets, self.decode(predict_outputs(fn, evalset, self.EVAL_BATCH)))

    def _subset_cache(self, split: str, n: int, seed: int) -> EvalSet:
        cache = self.__dict__.setdefault("_subsets", {})
        if (split, n, seed) not in cache:
            cache[(split, n, seed)] = self.eval_set(split, limit=n, seed=seed)
        return cache[(split, n, seed)]

    def score(self, evalset: EvalSet, pred: np.ndarray, idx: np.ndarray,
              ref_pred: np.ndarray | None = None) -> dict:
        """Metrics with CIs on the resamples ``idx``; paired Δ against ``ref_pred`` if given."""
        fns = self.metric_fns()
        out = {"n": len(evalset), "split": evalset.split,
               "values": with_ci(fns, evalset.targets, pred, idx),
               "extra": self.extra_metrics(evalset.targets, pred)}
        if ref_pred is not None:
            out["paired_delta"] = paired_delta(fns, evalset.targets, pred, ref_pred, idx)
        return out

    def spec(self) -> dict:
        """What the report core needs to know of this task (stored in results.json)."""
        primary = self.metric(self.PRIMARY)
        budget = self.budget()
        return {"name": self.NAME, "title": self.TITLE, "item": self.ITEM,
                "input_name": self.INPUT_NAME, "primary": self.PRIMARY,
                "metrics": [asdict(m) for m in self.METRICS],
                "budget": {**asdict(budget), "text": budget.describe(primary)},
                "model": self.model_name(self.cfg), "figures": list(self.FIGURES)}


def logit_distill_loss(output: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's distillation loss for classifiers: KL(teacher || student) of the logits softened at
    ``temperature``, times T² (so its gradients keep their scale as T changes)."""
    t = float(temperature)
    return torch.nn.functional.kl_div(torch.log_softmax(output / t, dim=1), torch.log_softmax(teacher / t, dim=1),
                                      reduction="batchmean", log_target=True) * t * t


def model_runner(model: torch.nn.Module, device: torch.device | None = None, amp=None) -> Callable:
    """An inference callable of an eager module: float input on its device, float CPU output."""
    device = device or torch.device("cpu")

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), autocast(device, amp):
            return model(x.to(device)).float().cpu()

    model.eval()
    return run


def predict_outputs(fn: Callable, evalset: EvalSet, batch: int) -> torch.Tensor:
    """Run ``fn`` over ``evalset`` in batches of ``batch``; the last batch is padded to full size
    (so a compiled runtime sees only the shapes 1 and ``batch``) and the padding dropped."""
    outs = []
    n = len(evalset)
    if n == 0:
        return torch.empty(0)
    for start in range(0, n, batch):
        x = evalset.inputs[start:start + batch]
        real = len(x)
        if real < batch and batch > 1:
            x = torch.cat([x, x[-1:].expand(batch - real, *x.shape[1:])])
        with torch.no_grad():
            y = torch.as_tensor(fn(x.float()))
        outs.append(y[:real].float())
    return torch.cat(outs)
