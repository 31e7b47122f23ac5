"""Typed run configuration: shipped presets (YAML) -> dataclasses, overridden by flags.

``load_config("quick", task="cifar10")`` reads the preset shipped in ``echolite/configs``; a path
reads that file. A preset holds settings shared by every task and one block per task name
(``ef:``, ``cifar10:``) applied on top for that task. The sections ``data``, ``model`` and
``eval`` are typed by the task (each task declares its config dataclasses); ``train``,
``compress`` and ``measure`` are the same for every task.

``apply_overrides(cfg, ["train.epochs=3"])`` sets fields with their declared types. Everything,
including every entry of ``compress.methods``, is validated when the config loads: a misspelt
key, value or method name is a one-line error before any work starts.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from echolite import EcholiteError

DEFAULT_TASK = "ef"


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 16  # per step, global: split across the processes of a torchrun launch
    lr: float = 1e-3  # AdamW peak learning rate
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5  # linear warm-up before the decay
    schedule: str = "cosine"  # cosine | step
    step_epochs: int = 5  # with schedule=step: x0.1 every this many epochs
    grad_clip: float = 1.0  # max gradient norm, 0 disables
    amp: str = "auto"  # auto | off | bf16 | fp16 (auto: see runtime.resolve_amp; measured)
    compile: bool = False  # torch.compile the training forward (GPUs; costs a compilation first)
    freeze_bn: bool = False  # BatchNorm on running statistics while training (tiny per-device batches;
    #                          then N processes compute exactly what one process does)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda

    def __post_init__(self):
        from echolite.runtime import AMP_CHOICES

        if isinstance(self.amp, bool):  # older configs said amp: true/false
            self.amp = "auto" if self.amp else "off"
        if self.amp not in AMP_CHOICES:
            raise EcholiteError(f"train.amp must be one of {', '.join(AMP_CHOICES)}, but got {self.amp!r}")
        if self.schedule not in ("cosine", "step"):
            raise EcholiteError(f"train.schedule must be cosine or step, but got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise EcholiteError("train.epochs, train.batch_size and train.lr must be positive")


@dataclass
class EvalConfig:
    """Shared by every task; a task may extend it (its ``EvalConfig`` subclass)."""

    split: str = "TEST"  # where rows are scored: TEST to report, VAL to choose defaults
    n_bootstrap: int = 1000  # resamples for the 95 % confidence intervals
    seed: int = 0  # of the resamples (the same for every row: paired CIs)
    budget: float | None = None  # allowed worsening of the primary metric; None = the task's

    def __post_init__(self):
        if self.split not in ("TEST", "VAL"):
            raise EcholiteError(f"eval.split must be TEST or VAL, but got {self.split!r}")
        if self.n_bootstrap < 10:
            raise EcholiteError(f"eval.n_bootstrap must be >= 10, got {self.n_bootstrap}")


@dataclass
class CompressConfig:
    """Which compressed variants `echolite run` builds and measures after the baseline.

    ``methods`` lists recipe names: built-in ones (see ``echolite recipes``) or ones defined in
    ``recipes`` (name -> list of steps, e.g. ``[{structured_prune: {ratio: 0.5}}, finetune,
    static_ptq]``). The other fields are the defaults built-in recipes take their steps from.
    """

    methods: list = field(default_factory=lambda: ["fp32-inductor", "fp32-onnxruntime", "dynamic-int8",
                                                   "static-int8", "static-int8-ort", "qat-int8"])
    recipes: dict = field(default_factory=dict)
    calib_items: int = 64  # calibration inputs, drawn from calib_split
    calib_split: str = "TRAIN"
    observer: str = "percentile"  # static-int8's activation observer (chosen on VAL: see README)
    per_channel: bool = True
    ort_calibrator: str = "minmax"  # static-int8-ort's calibrator
    qat_epochs: int = 1
    qat_lr: float = 1.0e-5
    qat_items: int = 0  # TRAIN items per QAT epoch; 0 = all
    finetune_epochs: int = 2  # fine-tuning after pruning (and gradual pruning's schedule)
    finetune_lr: float = 1.0e-4
    finetune_items: int = 0  # TRAIN items per fine-tuning epoch; 0 = all
    finetune_warmup: float = 0.3  # epochs of learning-rate warm-up
    prune_importance: str = "l1"  # structured pruning's channel criterion: l1 | l2 | bn | taylor
    prune_keep: list = field(default_factory=list)  # module names never pruned (besides the output)
    sensitivity_items: int = 48  # VAL items scoring per-layer sensitivity / the fallback search
    fallback_max_rel_delta: float = 0.03  # fallback keeps layers fp32 until within this of fp32
    fallback_max_layers: int = 4

    def __post_init__(self):
        if self.calib_split not in ("TRAIN", "VAL"):
            raise EcholiteError(f"compress.calib_split must be TRAIN or VAL, but got {self.calib_split!r}")
        if not isinstance(self.recipes, dict):
            raise EcholiteError("compress.recipes must map recipe names to lists of steps")


@dataclass
class MeasureConfig:
    threads: int = 2  # intra-op threads of every runtime
    latency_min_runs: int = 50  # timed batch-1 calls per variant, at least ...
    latency_min_seconds: float = 5.0  # ... and this long
    throughput_batch: int = 16  # batch of the throughput measurement

    def __post_init__(self):
        if self.threads < 1 or self.throughput_batch < 1 or self.latency_min_runs < 1:
            raise EcholiteError("measure.threads, measure.throughput_batch and measure.latency_min_runs "
                                "must be positive")


@dataclass
class RunConfig:
    name: str = "run"
    task: str = DEFAULT_TASK
    data: Any = None  # the task's DataConfig
    model: Any = None  # the task's ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: Any = None  # the task's EvalConfig (an EvalConfig subclass)
    compress: CompressConfig = field(default_factory=CompressConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)

    def __post_init__(self):
        from echolite.tasks import task_class

        cls = task_class(self.task)
        self.data = self.data if self.data is not None else cls.DataConfig()
        self.model = self.model if self.model is not None else cls.ModelConfig()
        self.eval = self.eval if self.eval is not None else cls.EvalConfig()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def recipes(self) -> list:
        """The validated recipes of ``compress.methods``, in order."""
        from echolite.compress.recipes import resolve

        return resolve(self.compress)


def presets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("echolite.configs").iterdir()
                  if p.name.endswith(".yaml"))


def load_config(source: str | Path | None = None, task: str | None = None) -> RunConfig:
    """A preset name (``smoke``, ``quick``, ``full``, ...), a YAML path, or None for the defaults.

    ``task`` (the --task flag) wins over a ``task:`` key in the file. A file may start from a
    preset with ``extends: NAME``: each file's settings for the task (its shared keys, then its
    block for the task) are applied in turn, the extending file's last, so its keys win
    (lists are replaced, not merged).
    """
    if source is None:
        return from_dict({"task": task} if task else {})
    chain = _chain(source)  # the file, then what it extends, ...
    task = task or next((raw["task"] for _, raw in chain if "task" in raw), DEFAULT_TASK)
    merged: dict = {"task": task}
    for name, raw in reversed(chain):
        _validate_blocks(raw, name)
        merged = _merge(merged, _for_task(raw, task))
    return from_dict(merged, source=str(source))


def _chain(source, seen: tuple = ()) -> list[tuple[str, dict]]:
    if str(source) in seen:
        raise EcholiteError(f"--config {source}: extends itself ({' -> '.join(map(str, seen))})")
    raw = _read_raw(source)
    base = raw.pop("extends", None)
    return [(str(source), raw)] + (_chain(base, (*seen, str(source))) if base else [])


def _for_task(raw: dict, task: str) -> dict:
    """A file's settings for ``task``: its shared keys, then its block for that task on top."""
    from echolite.tasks import TASKS

    shared = {k: v for k, v in raw.items() if k not in TASKS and k != "task"}
    return _merge(shared, raw.get(task) or {})


def _validate_blocks(raw: dict, source: str) -> None:
    """Every task block of a file must load for its task (a typo in another task's block is an
    error too, not a surprise for whoever runs that task next)."""
    from echolite.tasks import TASKS

    for task in TASKS:
        if task in raw:
            if not isinstance(raw[task], dict):
                raise EcholiteError(f"{source}: the {task}: block must be a mapping of sections")
            from_dict({"task": task, **_for_task(raw, task)}, source=f"{source} [{task}]")


def _read_raw(source) -> dict:
    path = Path(source)
    if not path.is_file():
        if str(source) not in presets():
            raise EcholiteError(f"--config {source}: neither a file nor a preset ({', '.join(presets())})")
        text = resources.files("echolite.configs").joinpath(f"{source}.yaml").read_text()
    else:
        text = path.read_text()
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise EcholiteError(f"--config {source}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise EcholiteError(f"--config {source}: expected a mapping of sections")
    return raw


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


def from_dict(raw: dict, source: str = "config") -> RunConfig:
    """A config from a mapping of sections (task blocks, if any, applied for ``raw["task"]``)."""
    from echolite.tasks import TASKS

    task = raw.get("task", DEFAULT_TASK)
    try:
        cfg = RunConfig(task=task)
    except EcholiteError as err:
        raise EcholiteError(f"{source}: {err}") from None
    has_blocks = any(k in TASKS for k in raw)
    flat = _for_task(raw, task) if has_blocks else {k: v for k, v in raw.items() if k != "task"}
    for key, value in flat.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                _set(cfg, f"{key}.{sub}", v, source)
        else:
            _set(cfg, key, value, source)
    return _revalidate(cfg, source)


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.field=value`` strings (YAML-parsed values)."""
    for item in overrides:
        if "=" not in item:
            raise EcholiteError(f"--set {item!r}: expected section.field=value")
        key, value = item.split("=", 1)
        _set(cfg, key.strip(), yaml.safe_load(value), "--set")
    return _revalidate(cfg, "--set")


def _set(cfg: RunConfig, dotted: str, value, source: str) -> None:
    parts = dotted.split(".")
    if parts[0] == "task":
        raise EcholiteError(f"{source}: the task is chosen with --task (or a task: key at the top "
                            "of a config file), not overridden")
    target = cfg
    for part in parts[:-1]:
        if not hasattr(target, part) or not dataclasses.is_dataclass(getattr(target, part)):
            raise EcholiteError(f"{source}: unknown config section {part!r} in {dotted!r}")
        target = getattr(target, part)
    name = parts[-1]
    fields = {f.name: f for f in dataclasses.fields(target)}
    if name not in fields or dataclasses.is_dataclass(getattr(target, name)):
        known = [f for f in fields if not dataclasses.is_dataclass(getattr(target, f))]
        raise EcholiteError(f"{source}: unknown config key {dotted!r} (known: {', '.join(known)})")
    hint = typing.get_type_hints(type(target))[name]
    setattr(target, name, _coerce(value, hint, dotted, source))


def _coerce(value, hint, dotted: str, source: str):
    args = typing.get_args(hint)
    if value is None and type(None) in args:
        return None
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    base = typing.get_origin(base) or base
    try:
        if base is bool and not isinstance(value, bool):
            raise ValueError
        if base is list:
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            return list(value)
        if base is dict:
            if not isinstance(value, dict):
                raise TypeError
            return dict(value)
        if base is str and dotted == "train.amp" and isinstance(value, bool):
            return value  # TrainConfig maps the old true/false
        if base is int and isinstance(value, float) and not value.is_integer():
            raise ValueError  # 2.5 epochs is an error, not 2
        return base(value) if base in (int, float, str, bool) else value
    except (TypeError, ValueError):
        raise EcholiteError(f"{source}: {dotted} must be {base.__name__}, but got {value!r}") from None


def _revalidate(cfg: RunConfig, source: str) -> RunConfig:
    for section in (cfg.data, cfg.model, cfg.train, cfg.eval, cfg.compress, cfg.measure):
        post = getattr(section, "__post_init__", None)
        if post:
            try:
                post()
            except EcholiteError as err:
                raise EcholiteError(f"{source}: {err}") from None
    try:
        cfg.recipes()
    except EcholiteError as err:
        raise EcholiteError(f"{source}: {err}") from None
    return cfg


def save_config(cfg: RunConfig, path: str | Path) -> None:
    from echolite.runtime import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
