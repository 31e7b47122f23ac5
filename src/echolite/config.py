"""Typed run configuration: shipped presets (YAML) -> dataclasses, overridden by ``--set``.

``load_config("quick", task="cifar10")`` reads the preset shipped in ``echolite/configs``; a path
reads that file. A preset holds settings shared by every task and one block per task name
(``ef:``, ``cifar10:``) applied on top for that task. The sections are declared in
:mod:`echolite.settings` (``data``, ``model`` and ``eval`` by task; a plug-in task registers its own
with :func:`register_sections`).

Every value passes :func:`echolite.typed.coerce`. The whole
config, every entry of ``compress.methods`` included, is validated when it loads: a misspelt key,
value or method name is a one-line error before any work starts.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from echolite import EcholiteError
from echolite.compress.recipes import parse_method
from echolite.compress.recipes import resolve as resolve_recipes
from echolite.compress.search.budget import candidate_names
from echolite.env import atomic_write_text
from echolite.settings import (
    ClassifyDataConfig,
    ClassifyModelConfig,
    CompressConfig,
    EFDataConfig,
    EFEvalConfig,
    EFModelConfig,
    EvalConfig,
    MeasureConfig,
    SearchConfig,
    TrainConfig,
)
from echolite.typed import build, check, coerce, hints
from echolite.typed import describe as describe_fields

DEFAULT_TASK = "ef"
SECTIONS = ("data", "model", "train", "eval", "compress", "measure", "search")


@dataclass(frozen=True)
class TaskSections:
    """The config sections a task types: its data, model and eval settings."""

    data: type
    model: type
    eval: type


# the built-in tasks' sections; plug-in tasks add theirs (echolite.tasks.register_task does)
_TASK_SECTIONS: dict[str, TaskSections] = {
    "ef": TaskSections(EFDataConfig, EFModelConfig, EFEvalConfig),
    "cifar10": TaskSections(ClassifyDataConfig, ClassifyModelConfig, EvalConfig),
}


def register_sections(task: str, data: type, model: type, eval: type) -> None:  # noqa: A002
    """Called by the task registry (echolite.tasks) for every task; a name is registered once."""
    if task in _TASK_SECTIONS and _TASK_SECTIONS[task] != TaskSections(data, model, eval):
        raise EcholiteError(f"task {task!r} registers its config sections twice")
    _TASK_SECTIONS[task] = TaskSections(data, model, eval)


def unregister_sections(task: str) -> None:
    _TASK_SECTIONS.pop(task, None)


def task_sections(task: str) -> TaskSections:
    if task not in _TASK_SECTIONS:
        raise EcholiteError(f"unknown task {task!r} (known: {', '.join(_TASK_SECTIONS) or 'none registered'})")
    return _TASK_SECTIONS[task]


def known_tasks() -> list[str]:
    return list(_TASK_SECTIONS)


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
    search: SearchConfig = field(default_factory=SearchConfig)

    def __post_init__(self):
        sections = task_sections(self.task)
        self.data = self.data if self.data is not None else sections.data()
        self.model = self.model if self.model is not None else sections.model()
        self.eval = self.eval if self.eval is not None else sections.eval()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def section(self, name: str):
        return getattr(self, name)

    def recipes(self) -> list:
        """The validated recipes of ``compress.methods``, in order."""
        return resolve_recipes(self.compress)


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
    shared = {k: v for k, v in raw.items() if k not in _TASK_SECTIONS and k != "task"}
    return _merge(shared, raw.get(task) or {})


def _validate_blocks(raw: dict, source: str) -> None:
    """Every task block of a file must load for its task (a typo in another task's block is an
    error too, not a surprise for whoever runs that task next)."""
    for task in _TASK_SECTIONS:
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
    task = raw.get("task", DEFAULT_TASK)
    try:
        cfg = RunConfig(task=task)
    except EcholiteError as err:
        raise EcholiteError(f"{source}: {err}") from None
    has_blocks = any(k in _TASK_SECTIONS for k in raw)
    flat = _for_task(raw, task) if has_blocks else {k: v for k, v in raw.items() if k != "task"}
    for key, value in flat.items():
        if isinstance(value, dict) and key in SECTIONS:
            for sub, v in value.items():
                _set(cfg, f"{key}.{sub}", v, source)
        else:
            _set(cfg, key, value, source)
    return validate(cfg, source)


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply ``section.field=value`` strings (values parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise EcholiteError(f"--set {item!r}: expected section.field=value")
        key, value = item.split("=", 1)
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            raise EcholiteError(f"--set {item!r}: the value is not valid YAML") from None
        _set(cfg, key.strip(), parsed, "--set")
    return validate(cfg, "--set")


def _set(cfg: RunConfig, dotted: str, value, source: str) -> None:
    parts = dotted.split(".")
    if parts[0] == "task":
        raise EcholiteError(f"{source}: the task is chosen with --task (or a task: key at the top "
                            "of a config file), not overridden")
    if len(parts) == 1:
        if parts[0] != "name":
            raise EcholiteError(f"{source}: unknown config key {dotted!r} (sections: {', '.join(SECTIONS)})")
        cfg.name = coerce(value, str, f"{source}: name")
        return
    if len(parts) != 2 or parts[0] not in SECTIONS:
        raise EcholiteError(f"{source}: unknown config section {parts[0]!r} in {dotted!r} "
                            f"(sections: {', '.join(SECTIONS)})")
    target = cfg.section(parts[0])
    names = [f.name for f in dataclasses.fields(target)]
    if parts[1] not in names:
        raise EcholiteError(f"{source}: unknown config key {dotted!r} (known: {', '.join(names)})")
    if dotted == "train.amp" and isinstance(value, bool):
        value = "auto" if value else "off"  # older configs said amp: true/false
    setattr(target, parts[1], coerce(value, hints(type(target))[parts[1]], f"{source}: {dotted}"))


def validate(cfg: RunConfig, source: str) -> RunConfig:
    """Types and choices of every field, each section's own checks, and every recipe."""
    for name in SECTIONS:
        section = cfg.section(name)
        try:
            _check_section(section, name)
        except EcholiteError as err:
            raise EcholiteError(f"{source}: {err}") from None
    try:
        _check_students(cfg, cfg.recipes(), "compress.methods")
        search_recipes(cfg)
    except EcholiteError as err:
        raise EcholiteError(f"{source}: {err}") from None
    return cfg


def _check_students(cfg: RunConfig, recipes: list, where: str) -> None:
    """A student's model settings must be valid for the task, its frame size divide the input's."""
    size = getattr(cfg.data, "size", None)
    for recipe in recipes:
        for step in recipe.steps:
            if not hasattr(step, "model_overrides"):
                continue
            try:
                model = with_model(cfg, step.model_overrides()).model
            except EcholiteError as err:
                raise EcholiteError(f"{where}: {recipe.name}: {err}") from None
            frame = getattr(model, "frame_size", 0)
            if frame and size and size % frame:
                raise EcholiteError(f"{where}: {recipe.name}: frame size {frame} does not divide data.size={size}")


def search_recipes(cfg: RunConfig) -> list:
    """The validated recipes of ``cfg.search``'s space (``echolite search``), in order."""
    sc = cfg.search
    recipes = [parse_method(n, cfg.compress) for n in candidate_names(sc.students, sc.prune, sc.runtimes, sc.recipes)]
    _check_students(cfg, recipes, "search")
    return recipes


def _check_section(section, name: str) -> None:
    """Types and choices of every field of a section, then the section's own checks."""
    check(section, name)
    post = getattr(section, "__post_init__", None)
    if post:
        post()


def with_model(cfg: RunConfig, overrides: dict | None) -> RunConfig:
    """A copy of ``cfg`` whose model section has ``overrides`` (a stage's student settings, e.g.
    ``{"arch": "mobilenet_v3_small"}``), validated like any other setting."""
    if not overrides:
        return cfg
    out = copy.deepcopy(cfg)
    for key, value in overrides.items():
        _set(out, f"model.{key}", value, "student model")
    _check_section(out.model, "model")
    return out


def section_from_dict(cls: type, raw: dict, where: str):
    """A section from a mapping (a checkpoint's stored config, for example)."""
    return build(cls, raw, where)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def describe() -> list[str]:
    """Every setting of every section with its doc (``echolite settings``)."""
    lines = []
    for name, cls in (("train", TrainConfig), ("compress", CompressConfig), ("measure", MeasureConfig),
                      ("search", SearchConfig)):
        lines += [f"{name}:", *describe_fields(cls)]
    for task, sections in _TASK_SECTIONS.items():
        for name in ("data", "model", "eval"):
            lines += [f"{task}: {name}:", *describe_fields(getattr(sections, name))]
    return lines
