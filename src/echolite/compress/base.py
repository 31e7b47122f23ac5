"""The compression engine's vocabulary: steps (config types), the stage they pass on, one verb.

    stage = apply(StaticPTQConfig(observer="histogram"), stage, ctx)

A *step* is a frozen dataclass registered with :func:`register`; its handler takes the previous
:class:`Stage` (a PyTorch module and how it runs) and returns the next one, writing its files
into ``ctx.work_dir``. A *recipe* (see :mod:`echolite.compress.recipes`) is a named chain of steps.

Each step type declares what it consumes and produces, so a chain is type-checked when the
config loads: ``float`` (an fp32 PyTorch module), ``quantized`` (an int8 PyTorch program) or
``runtime`` (a deployed runtime, e.g. an ONNX Runtime session: nothing can follow it).

Nothing here knows which task it serves: a task supplies an example input, calibration batches,
a fine-tuning loop and a scoring function through :class:`Context`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from echolite import EcholiteError

FLOAT, QUANTIZED, RUNTIME = "float", "quantized", "runtime"
STAGE_FILE = "stage.json"


class CompressionError(EcholiteError):
    """A method could not produce what it promises (e.g. nothing got quantized)."""


@dataclass
class Context:
    """What a task hands the engine.

    Attributes:
        example_input: one batch (batch size 1) with the deployment shape, for export and timing.
        calibration: callable returning an iterable of input batches (fresh iterator each call).
        work_dir: where the running step writes its files.
        input_name: the graph input's name in exported files (the task's, e.g. "images").
        threads: intra-op threads every runtime is pinned to.
        calibration_key: digest of the calibration batches (keys calibration caches).
        data_key: digest of everything data-dependent steps read (keys their outputs).
        model_key: digest of the task, its model and data settings and the example input's shape
            (keys every stage, with the parent stage's weights).
        finetune: ``finetune(module, epochs, lr, on_epoch=None, max_items=0) -> history``: the
            task's training loop, run in place on ``module`` (QAT, fine-tuning after pruning).
        score: ``score(predict_fn, n) -> float``: the task's primary metric on ``n`` fixed VAL
            items (accuracy-aware searches); ``higher_is_better`` says which way is better.
        model_factory: ``model_factory(overrides=None)``: a fresh module of the task's architecture,
            or of the task's model settings with ``overrides`` (a stage's ``model``, e.g.
            ``{"arch": "mobilenet_v3_small"}``); weights come from files.
        student: ``student(overrides) -> module``: a fresh module of those settings, initialised
            with the TRAIN statistics (input normalisation, output scale) a training starts from.
        distill: ``distill(student, teacher, epochs, lr, alpha, temperature, max_items, warmup_epochs)
            -> (history, teacher info)``: the task's loop on ``student`` with the loss mixed with a
            match to the teacher's outputs (stored per TRAIN item, keyed by the teacher's weights).
        store: the run's keyed store, for sub-artifacts shared by steps (exports, ranges).
        protected: ``protected(overrides) -> names``: modules whose outputs are the model's outputs
            (never pruned), for the architecture of a stage's ``model``.
        gradient_batches: ``gradient_batches(n) -> [(inputs, targets, loss_fn), ...]`` of TRAIN,
            for methods scored by gradients (Taylor importance).
        validation: ``validation(n) -> (inputs, targets, metric)``: ``n`` fixed VAL items (0 = all)
            and ``metric(targets, outputs) -> float``, the task's primary metric on raw outputs
            (for outside tools that search against a metric: NNCF's accuracy control).
        budget: ``(max_worsening, relative)``: how much worse than FP32 the task lets a variant be.
    """

    example_input: torch.Tensor
    calibration: Callable[[], Iterable[torch.Tensor]]
    work_dir: Path
    input_name: str = "input"
    threads: int = 2
    calibration_key: str = "default"
    data_key: str = "default"
    model_key: str = "default"
    finetune: Callable[..., list] | None = None
    score: Callable[[Callable], float] | None = None
    higher_is_better: bool = False
    model_factory: Callable[..., torch.nn.Module] | None = None
    student: Callable[[dict], torch.nn.Module] | None = None
    distill: Callable[..., tuple[list, dict]] | None = None
    store: object | None = None
    protected: Callable[[dict], tuple[str, ...]] = lambda overrides: ()
    gradient_batches: Callable[[int], Iterable] | None = None
    validation: Callable[[int], tuple] | None = None
    budget: tuple[float, bool] | None = None


@dataclass
class Stage:
    """A model part-way through a recipe and how it runs.

    Attributes:
        module: the PyTorch module after the steps so far (None after a runtime step).
        precision: what the arithmetic is, e.g. "fp32", "int8", "int8 (Linear only)".
        runtime: how it runs: "pytorch-eager", "torch.compile-inductor", "onnxruntime-cpu".
        artifacts: files of this stage by format ("state_dict", "pt2", "onnx", ...); the first
            one is the file the runtime loads, the others are extra deployables.
        details: one dict per applied step: what actually ran.
        methods: the method label of every applied step (e.g. ["structured-prune", "finetune"]).
        model: the model settings this stage's module differs in from the task's (a student's
            ``{"arch": ..., "frame_size": ...}``); empty = the task's own architecture.
    """

    module: torch.nn.Module | None
    precision: str = "fp32"
    runtime: str = "pytorch-eager"
    artifacts: dict[str, Path] = field(default_factory=dict)
    details: list[dict] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    model: dict = field(default_factory=dict)

    def then(self, method: str, details: dict, **changes) -> Stage:
        """The next stage: same fields unless changed, with one more step recorded."""
        return dataclasses.replace(self, details=[*self.details, {"method": method, **details}],
                                   methods=[*self.methods, method], **changes)

    @property
    def method(self) -> str:
        return " → ".join(self.methods) or "baseline"

    def save(self, folder: Path) -> None:
        """Write ``stage.json`` (artifacts relative to ``folder``, where they must lie)."""
        arts = {}
        for kind, path in self.artifacts.items():
            path = Path(path)
            if path.parent.resolve() != folder.resolve():
                raise CompressionError(f"artifact {path} is not inside the stage folder {folder}")
            arts[kind] = path.name
        record = {"precision": self.precision, "runtime": self.runtime, "artifacts": arts,
                  "details": self.details, "methods": self.methods, "model": self.model}
        (folder / STAGE_FILE).write_text(json.dumps(record, indent=1, default=str))

    @classmethod
    def load(cls, folder: Path, module: torch.nn.Module | None = None) -> Stage:
        record = json.loads((folder / STAGE_FILE).read_text())
        return cls(module=module, precision=record["precision"], runtime=record["runtime"],
                   artifacts={k: folder / v for k, v in record["artifacts"].items()},
                   details=record["details"], methods=record["methods"],
                   model=record.get("model", {}))  # stages written before students: the task's own model


class StepConfig:
    """Base of every step config (a frozen dataclass). Class attributes describe the step type.

    Attributes:
        key: its name in YAML recipes (``static_ptq``).
        method: the label of its rows' method column.
        family: quantization | pruning | training | students | runtime (groups rows in the report).
        consumes: FLOAT or QUANTIZED ("any PyTorch module").
        produces: FLOAT, QUANTIZED or RUNTIME (nothing may follow a RUNTIME step).
        uses_data: whether its output depends on the task's data (calibration, fine-tuning).
        uses_budget: whether its output depends on the task's budget (``Context.budget``), which
            then joins its store key.
    """

    key: ClassVar[str]
    method: ClassVar[str]
    family: ClassVar[str]
    consumes: ClassVar[str] = FLOAT
    produces: ClassVar[str] = FLOAT
    uses_data: ClassVar[bool] = True
    uses_budget: ClassVar[bool] = False  # a step may make it a property of its fields

    def label(self) -> str:
        """``key(field=value, ...)`` with the non-default fields: how a step shows in logs."""
        changed = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
                   if getattr(self, f.name) != f.default
                   and not (f.default_factory is not dataclasses.MISSING
                            and getattr(self, f.name) == f.default_factory())]
        return f"{self.key}({', '.join(changed)})"

    def key_dict(self) -> dict:
        """What of the config goes into its stage's key (the config; a step naming a file puts
        the file's content there instead)."""
        return self.as_dict()

    def as_dict(self) -> dict:
        return {"step": self.key, **{k: list(v) if isinstance(v, tuple) else v
                                     for k, v in dataclasses.asdict(self).items()}}


_HANDLERS: dict[type, Callable] = {}


def register(config_type: type):
    """Decorator mapping a step config type (a StepConfig dataclass) to its handler. A YAML key is
    registered once: a second step type under the same key is refused."""
    if not (dataclasses.is_dataclass(config_type) and issubclass(config_type, StepConfig)):
        raise TypeError(f"{config_type.__name__} must be a StepConfig dataclass")
    taken = next((t for t in _HANDLERS if t.key == config_type.key and t is not config_type), None)
    if taken is not None:
        raise EcholiteError(f"step {config_type.key!r} is registered already ({taken.__name__})")

    def wrap(fn):
        _HANDLERS[config_type] = fn
        return fn

    return wrap


def step_types() -> dict[str, type]:
    """Every registered step type by its YAML key (the steps register when echolite.compress.steps
    is imported: echolite.compress does)."""
    return {t.key: t for t in _HANDLERS}


def apply(config: StepConfig, stage: Stage, ctx: Context) -> Stage:
    """Apply one step to ``stage``; its files go to ``ctx.work_dir``."""
    handler = _HANDLERS.get(type(config))
    if handler is None:
        raise EcholiteError(f"no compression step registered for {type(config).__name__}")
    want = config.consumes
    have = FLOAT if stage.precision == "fp32" and stage.module is not None else \
        (QUANTIZED if stage.module is not None else RUNTIME)
    if have == RUNTIME or (want == FLOAT and have != FLOAT):
        raise CompressionError(f"{config.key} needs a {want} PyTorch module, got a {have} stage")
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    return handler(stage, config, ctx)


def kept_epoch(history: list[dict], higher_is_better: bool, keep_best: bool) -> dict:
    """The epoch a fine-tuning kept: the best VAL score if ``keep_best`` (epoch 0 = as it started),
    else the last."""
    if not keep_best:
        return history[-1]
    pick = max if higher_is_better else min
    return pick(history, key=lambda h: h["val_score"])


def link_or_copy(src: Path, folder: Path) -> Path:
    """Place ``src`` in ``folder`` (hard link, else copy): stages keep their files together."""
    dst = Path(folder) / Path(src).name
    if dst.exists() and dst.samefile(src):
        return dst
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def save_weights(module: torch.nn.Module, folder: Path) -> Path:
    """A float stage's file: its state dict (``torch.load(weights_only=True)`` safe)."""
    path = Path(folder) / "model.state_dict.pt"
    torch.save({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, path)
    return path
