"""Typed run configuration: shipped presets (YAML) -> dataclasses, overridden by flags.

``load_config("quick")`` reads the preset shipped in ``echolite/configs``; a path reads that file.
``apply_overrides(cfg, ["train.epochs=3"])`` sets fields with their declared types.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from echolite import EcholiteError


@dataclass
class DataConfig:
    root: str | None = None  # dataset root; None = generate the phantom below
    phantom_n: int = 600  # videos in the generated phantom dataset
    phantom_seed: int = 0
    n_frames: int = 8  # frames per clip
    sampling: str = "window"  # window: frames span window_s seconds; spread: the whole video
    window_s: float = 1.2  # ~one beat at 50 bpm: 8 frames at every phase, no aliasing with HR
    size: int = 112  # model input height = width
    shift_px: int = 0  # training augmentation: random translation (pixels)
    num_workers: int = 1  # DataLoader worker processes
    stats_videos: int = 64  # TRAIN videos used to estimate pixel mean/std
    drop_bad_rows: bool = False  # drop rows that fail validation instead of stopping

    def __post_init__(self):
        if self.sampling not in ("window", "spread"):
            raise EcholiteError(f"data.sampling must be window or spread, but got {self.sampling!r}")
        if self.n_frames < 1 or self.size < 16:
            raise EcholiteError(f"data.n_frames must be >= 1 and data.size >= 16, got "
                                f"{self.n_frames}, {self.size}")


@dataclass
class ModelConfig:
    pooling: str = "meanstd"  # temporal pooling: mean | meanstd
    pretrained: str | None = None  # local torchvision ResNet-18 state dict; None = random init


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3  # AdamW peak learning rate
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5  # linear warm-up before the cosine decay
    schedule: str = "cosine"  # cosine | step
    step_epochs: int = 5  # with schedule=step: x0.1 every this many epochs
    grad_clip: float = 1.0  # max gradient norm, 0 disables
    amp: bool = True  # mixed precision: fp16 on CUDA, bf16 on CPUs that support it
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda

    def __post_init__(self):
        if self.schedule not in ("cosine", "step"):
            raise EcholiteError(f"train.schedule must be cosine or step, but got {self.schedule!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise EcholiteError("train.epochs, train.batch_size and train.lr must be positive")


@dataclass
class EvalConfig:
    n_bootstrap: int = 1000  # resamples for the 95 % confidence intervals
    threshold_ef: float = 50.0  # AUC target: EF below this is "reduced"


METHODS = ("fp32-inductor", "fp32-onnxruntime", "dynamic-int8", "static-int8", "static-int8-ort",
           "qat-int8")


@dataclass
class CompressConfig:
    """Which compressed variants `echolite run` builds and measures after the baseline.

    Method names: fp32-inductor, fp32-onnxruntime, dynamic-int8, static-int8[-minmax|-histogram|
    -percentile] (PT2E, torch.compile), static-int8-ort[-minmax|-entropy|-percentile] (ONNX
    Runtime QDQ), qat-int8.
    """

    methods: list = field(default_factory=lambda: list(METHODS))
    calib_videos: int = 64  # calibration clips, drawn from calib_split
    calib_split: str = "TRAIN"
    observer: str = "minmax"  # default activation observer of static-int8 (measured best here)
    per_channel: bool = True
    ort_calibrator: str = "minmax"  # default calibrator of static-int8-ort
    qat_epochs: int = 1
    qat_lr: float = 1.0e-5
    qat_videos: int = 0  # TRAIN videos per QAT epoch; 0 = all
    sensitivity_videos: int = 48  # VAL videos for per-layer sensitivity; 0 = skip sensitivity
    fallback_max_rel_delta_mae: float = 0.03  # keep sensitive layers fp32 until within this; <0 = off
    fallback_max_layers: int = 4
    threads: int = 2  # intra-op threads for every runtime
    latency_min_runs: int = 50
    latency_min_seconds: float = 5.0
    throughput_batch: int = 16

    def __post_init__(self):
        for m in self.methods:
            if not any(str(m).startswith(k) for k in METHODS):
                raise EcholiteError(f"compress.methods: unknown method {m!r} (known: {', '.join(METHODS)})")
        if self.calib_split not in ("TRAIN", "VAL"):
            raise EcholiteError(f"compress.calib_split must be TRAIN or VAL, but got {self.calib_split!r}")


@dataclass
class RunConfig:
    name: str = "run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    compress: CompressConfig = field(default_factory=CompressConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def presets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("echolite.configs").iterdir()
                  if p.name.endswith(".yaml"))


def load_config(source: str | Path | None = None) -> RunConfig:
    """A preset name (``smoke``, ``quick``, ``full``), a YAML path, or None for the defaults."""
    if source is None:
        return RunConfig()
    path = Path(source)
    if not path.is_file():
        if str(source) not in presets():
            raise EcholiteError(f"--config {source}: neither a file nor a preset ({', '.join(presets())})")
        text = resources.files("echolite.configs").joinpath(f"{source}.yaml").read_text()
    else:
        text = path.read_text()
    return from_dict(yaml.safe_load(text) or {}, source=str(source))


def from_dict(raw: dict, source: str = "config") -> RunConfig:
    cfg = RunConfig()
    for key, value in raw.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                _set(cfg, f"{key}.{sub}", v, source)
        else:
            _set(cfg, key, value, source)
    return _revalidate(cfg)


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.field=value`` strings (YAML-parsed values)."""
    for item in overrides:
        if "=" not in item:
            raise EcholiteError(f"--set {item!r}: expected section.field=value")
        key, value = item.split("=", 1)
        _set(cfg, key.strip(), yaml.safe_load(value), "--set")
    return _revalidate(cfg)


def _set(cfg: RunConfig, dotted: str, value, source: str) -> None:
    parts = dotted.split(".")
    target = cfg
    for part in parts[:-1]:
        if not hasattr(target, part) or not dataclasses.is_dataclass(getattr(target, part)):
            raise EcholiteError(f"{source}: unknown config section {part!r} in {dotted!r}")
        target = getattr(target, part)
    name = parts[-1]
    fields = {f.name: f for f in dataclasses.fields(target)}
    if name not in fields:
        raise EcholiteError(f"{source}: unknown config key {dotted!r} (known: {', '.join(fields)})")
    hint = typing.get_type_hints(type(target))[name]
    setattr(target, name, _coerce(value, hint, dotted, source))


def _coerce(value, hint, dotted: str, source: str):
    args = typing.get_args(hint)
    if value is None and type(None) in args:
        return None
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    try:
        if base is bool and not isinstance(value, bool):
            raise ValueError
        if base is list:
            return [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
        return base(value) if base in (int, float, str, bool) else value
    except (TypeError, ValueError):
        raise EcholiteError(f"{source}: {dotted} must be {base.__name__}, but got {value!r}") from None


def _revalidate(cfg: RunConfig) -> RunConfig:
    for section in (cfg.data, cfg.model, cfg.train, cfg.eval, cfg.compress):
        post = getattr(section, "__post_init__", None)
        if post:
            post()
    return cfg


def save_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
