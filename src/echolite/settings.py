"""Every setting echolite has: the config sections of a run, each field typed, documented and marked
as part of what artifacts are made from or not (see :mod:`echolite.typed`).

``train``, ``compress`` and ``measure`` are the same for every task; ``data``, ``model`` and ``eval``
are typed by the task (the built-in tasks' sections are below; a plug-in task brings its own and
registers them with :func:`echolite.config.register_sections`). Loading, merging and overriding a
config is :mod:`echolite.config`; ``echolite settings`` prints all of this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from echolite import EcholiteError
from echolite.models.backbones import ARCHS
from echolite.models.classify import CLASSIFIERS
from echolite.typed import setting


@dataclass
class TrainConfig:
    epochs: int = setting(10, "epochs of the baseline training")
    batch_size: int = setting(16, "items per step, global: split across the processes of a torchrun launch")
    lr: float = setting(1e-3, "AdamW peak learning rate")
    weight_decay: float = setting(1e-4, "AdamW weight decay")
    warmup_epochs: float = setting(0.5, "linear learning-rate warm-up before the decay")
    schedule: Literal["cosine", "step"] = setting("cosine", "learning-rate decay after the warm-up")
    step_epochs: int = setting(5, "with schedule=step: x0.1 every this many epochs")
    grad_clip: float = setting(1.0, "max gradient norm; 0 disables")
    amp: Literal["auto", "off", "bf16", "fp16"] = setting(
        "auto", "mixed precision asked for (auto: measured, see env.resolve_amp); the precision it "
        "resolves to is part of the baseline's key", identity=False)
    compile: bool = setting(False, "torch.compile the training forward (GPUs; costs a compilation first)")
    freeze_bn: bool = setting(False, "BatchNorm on running statistics while training (tiny per-device "
                                     "batches: N processes then compute exactly what one does)")
    seed: int = setting(0, "seed of the weights' initialisation, the item order and augmentation")
    device: Literal["auto", "cpu", "cuda"] = setting(
        "auto", "where training runs; not in the key, the precision it trained in is: a GPU's baseline is "
        "reused on a CPU whose train.amp resolves alike (name train.amp to be sure)", identity=False)

    def __post_init__(self):
        if isinstance(self.amp, bool):  # older configs said amp: true/false
            self.amp = "auto" if self.amp else "off"
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise EcholiteError("train.epochs, train.batch_size and train.lr must be positive")


@dataclass
class EvalConfig:
    """Shared by every task; a task may extend it (its ``EvalConfig`` subclass)."""

    split: Literal["TEST", "VAL"] = setting("TEST", "where rows are scored: TEST to report, VAL to choose defaults")
    n_bootstrap: int = setting(1000, "resamples of the 95 % confidence intervals")
    seed: int = setting(0, "seed of the resamples (the same for every row: paired CIs)")
    budget: float | None = setting(None, "allowed worsening of the primary metric; null = the task's")

    def __post_init__(self):
        if self.n_bootstrap < 10:
            raise EcholiteError(f"eval.n_bootstrap must be >= 10, got {self.n_bootstrap}")


@dataclass
class CompressConfig:
    """Which compressed variants `echolite run` builds and measures after the baseline.

    ``methods`` lists recipe names: built-in ones (see ``echolite recipes``) or ones defined in
    ``recipes`` (name -> list of steps, e.g. ``[{structured_prune: {ratio: 0.5}}, finetune,
    static_ptq]``). The other fields are the defaults built-in recipes take their steps from.
    """

    methods: list[str] = setting(["fp32-inductor", "fp32-onnxruntime", "dynamic-int8", "static-int8",
                                  "static-int8-ort", "qat-int8"], "recipe names to build and measure")
    recipes: dict = setting({}, "your own recipes: name -> list of steps")
    calib_items: int = setting(64, "calibration inputs, drawn from calib_split")
    calib_split: Literal["TRAIN", "VAL"] = setting("TRAIN", "where calibration inputs come from")
    observer: Literal["minmax", "histogram", "percentile"] = setting(
        "percentile", "static-int8's activation observer (chosen on VAL: see README)")
    per_channel: bool = setting(True, "per-output-channel weight scales")
    ort_calibrator: Literal["minmax", "entropy", "percentile"] = setting("minmax", "static-int8-ort's calibrator")
    qat_epochs: int = setting(1, "QAT fine-tuning epochs")
    qat_lr: float = setting(1.0e-5, "QAT learning rate")
    qat_items: int = setting(0, "TRAIN items per QAT epoch; 0 = all")
    finetune_epochs: int = setting(2, "fine-tuning after pruning (and gradual pruning's schedule)")
    finetune_lr: float = setting(1.0e-4, "fine-tuning learning rate")
    finetune_items: int = setting(0, "TRAIN items per fine-tuning epoch; 0 = all")
    finetune_warmup: float = setting(0.3, "epochs of learning-rate warm-up of a fine-tuning")
    prune_importance: Literal["l1", "l2", "bn", "taylor"] = setting("l1", "structured pruning's channel criterion")
    prune_keep: list[str] = setting([], "module names never pruned (besides the output)")
    distill_alpha: float = setting(1.0, "distill-*: weight of the match to the teacher (chosen on VAL: README)")
    distill_temperature: float = setting(4.0, "distill-*: softening of classification logits")
    distill_epochs: int = setting(5, "distill-* and student-*: the student's training epochs")
    distill_lr: float = setting(1.0e-3, "distill-* and student-*: the student's peak learning rate")
    distill_items: int = setting(0, "distill-* and student-*: TRAIN items per epoch; 0 = all")
    sensitivity_items: int = setting(48, "VAL items scoring per-layer sensitivity / the fallback search")
    fallback_max_rel_delta: float = setting(0.03, "the fallback keeps layers fp32 until within this of fp32")
    fallback_max_layers: int = setting(4, "at most this many layers kept in fp32 by the fallback")

    def __post_init__(self):
        at_least = {"calib_items": 1, "sensitivity_items": 1, "qat_epochs": 1, "finetune_epochs": 1,
                    "qat_items": 0, "finetune_items": 0, "fallback_max_layers": 0, "distill_epochs": 1,
                    "distill_items": 0}
        for name, low in at_least.items():
            if getattr(self, name) < low:
                raise EcholiteError(f"compress.{name} must be >= {low}, got {getattr(self, name)}")
        for name in ("qat_lr", "finetune_lr", "distill_lr", "distill_temperature"):
            if getattr(self, name) <= 0:
                raise EcholiteError(f"compress.{name} must be > 0 (a learning rate), got {getattr(self, name)}")
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise EcholiteError(f"compress.distill_alpha must be in [0, 1], got {self.distill_alpha}")
        if self.finetune_warmup < 0 or self.fallback_max_rel_delta < 0:
            raise EcholiteError("compress.finetune_warmup and compress.fallback_max_rel_delta must be >= 0")


@dataclass
class MeasureConfig:
    threads: int = setting(2, "intra-op threads of every runtime while timing")
    latency_min_runs: int = setting(50, "timed batch-1 calls per variant, at least ...")
    latency_min_seconds: float = setting(5.0, "... and this long")
    throughput_batch: int = setting(16, "batch of the throughput measurement")

    def __post_init__(self):
        if self.threads < 1 or self.throughput_batch < 1 or self.latency_min_runs < 1:
            raise EcholiteError("measure.threads, measure.throughput_batch and measure.latency_min_runs "
                                "must be positive")


@dataclass
class SearchConfig:
    """``echolite search``: the space of candidates (students × structured pruning × runtimes, plus
    any recipes listed), the budget and the objective. Candidates are recipe names of
    ``echolite recipes``; ``teacher`` stands for the task's own model."""

    students: list[str] = setting(["teacher"], "architectures (a distill- recipe's <arch>[-s<frame size>]; teacher = "
                                               "the task's model, quantized/pruned without distillation); the "
                                               "presets list the students of each task")
    prune: list[int] = setting([0, 50], "structured pruning percentages (0 = unpruned); pruned ones are fine-tuned")
    runtimes: list[str] = setting(["int8-ort", "int8-ov"],
                                  "recipe tails: int8-ort | int8-ov | int8-nncf | int8 | ort | ov")
    recipes: list[str] = setting([], "further recipe names scored as candidates")
    objective: Literal["latency", "size"] = setting("latency", "the fastest (p50) or the smallest (file bytes) wins")
    max_minutes: float = setting(60.0, "no new candidate is started after this many minutes")
    items: int = setting(0, "VAL items candidates are scored on; 0 = all of VAL")

    def __post_init__(self):
        tails = {"int8-ort", "int8-ov", "int8-nncf", "int8", "ort", "ov"}
        bad = [t for t in self.runtimes if t not in tails]
        if bad or not self.runtimes:
            raise EcholiteError(f"search.runtimes: {bad or 'empty'}: use some of {', '.join(sorted(tails))}")
        if any(not 0 <= p < 100 for p in self.prune) or not self.prune:
            raise EcholiteError(f"search.prune: percentages in [0, 100), got {self.prune}")
        if self.max_minutes <= 0 or self.items < 0:
            raise EcholiteError("search.max_minutes must be > 0 and search.items >= 0")


# --- ef: ejection fraction from echo videos (echolite.tasks.ef) -----------------------------------------
@dataclass
class EFDataConfig:
    root: str | None = setting(None, "dataset root (EchoNet-Dynamic layout); null = the built-in phantom",
                               identity=False)  # what the data is: the data key (content digests)
    phantom_n: int = setting(600, "videos of the generated phantom", identity=False)
    phantom_seed: int = setting(0, "seed of the generated phantom", identity=False)
    phantom_version: Literal[1, 2] = setting(2, "2: anatomy + simulated scanner; 1: the first, cartoon phantom",
                                             identity=False)
    n_frames: int = setting(8, "frames per clip")
    sampling: Literal["window", "spread"] = setting(
        "window", "window: the frames span window_s seconds; spread: the whole video")
    window_s: float = setting(1.2, "~one beat at 50 bpm: 8 frames at every phase, no aliasing with HR")
    size: int = setting(112, "model input height = width (pixels)")
    shift_px: int = setting(0, "training augmentation: random translation (pixels)")
    augment: float = setting(0.0, "training augmentation: appearance strength (data/augment.py), 0 = off "
                                  "(chosen on VAL: README, how the defaults were chosen)")
    num_workers: int = setting(1, "DataLoader worker processes", identity=False)
    stats_items: int = setting(64, "TRAIN videos the pixel mean/std are estimated on")
    drop_bad_rows: bool = setting(False, "drop rows that fail validation instead of stopping",
                                  identity=False)  # the rows kept are in the data key
    frame_cache: bool = setting(False, "decode the videos once into the store's frame cache (an existing "
                                       "complete one is always used)", identity=False)

    def __post_init__(self):
        if self.n_frames < 1 or self.size < 16:
            raise EcholiteError(f"data.n_frames must be >= 1 and data.size >= 16, got {self.n_frames}, "
                                f"{self.size}")
        if self.stats_items < 1:
            raise EcholiteError(f"data.stats_items must be >= 1 (TRAIN videos for the pixel statistics), "
                                f"got {self.stats_items}")
        if self.augment < 0:
            raise EcholiteError(f"data.augment must be >= 0 (0 = off), but got {self.augment}")
        if self.phantom_n < 3:
            raise EcholiteError(f"data.phantom_n must be >= 3 (one video per split), got {self.phantom_n}")


@dataclass
class EFModelConfig:
    arch: Literal[ARCHS] = setting("resnet18", "the backbone (echolite.models.backbones): per frame, or "
                                               "r2plus1d_18 on the clip")
    frame_size: int = setting(0, "frames average-pooled to this size inside the model (a cheaper student on "
                                 "the same input); 0 = data.size")
    pooling: Literal["mean", "meanstd"] = setting("meanstd", "temporal pooling (chosen on VAL: see README)")
    channels: Literal["grey", "motion"] = setting(
        "motion", "backbone input: grey (repeated) | motion (frame, deviation from the clip, difference); "
        "chosen on VAL")
    pretrained: str | None = setting(None, "initial weights from a local file: an echolite checkpoint (e.g. "
                                           "phantom-trained) or a torchvision ResNet-18 state dict",
                                     identity=False)  # its bytes are in the baseline's key


    def __post_init__(self):
        if self.frame_size < 0 or 0 < self.frame_size < 8:
            raise EcholiteError(f"model.frame_size must be 0 (off) or >= 8, got {self.frame_size}")


@dataclass
class EFEvalConfig(EvalConfig):
    threshold_ef: float = setting(50.0, "AUC target: EF below this is 'reduced'")


# --- cifar10: image classification in the CIFAR-10 layout (echolite.tasks.classify) ------------------------
@dataclass
class ClassifyDataConfig:
    root: str | None = setting(None, "CIFAR-10-layout folder (or its parent); null = the built-in digits",
                               identity=False)  # what the data is: the data key (file digests)
    val_items: int = setting(0, "VAL images carved from the training batches (stratified); 0 = 10 %")
    val_seed: int = setting(0, "seed of the VAL carve-out")
    crop_pad: int = setting(2, "training augmentation: zero-pad by this much, crop back at random; 0 = off")
    flip: bool = setting(False, "random horizontal flip: yes for natural images, no for digits")
    num_workers: int = setting(0, "DataLoader worker processes", identity=False)


@dataclass
class ClassifyModelConfig:
    arch: Literal[CLASSIFIERS] = setting("tutorial-cnn", "the classifier (echolite.models.classify)")
    label_smoothing: float = setting(0.1, "of the training loss's targets")

    def __post_init__(self):
        if not 0.0 <= self.label_smoothing < 1.0:
            raise EcholiteError(f"model.label_smoothing must be in [0, 1), got {self.label_smoothing}")
