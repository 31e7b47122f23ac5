"""Recipes: a variant is a named chain of steps, built with cached, shared prefixes.

The one registry of method names. ``compress.methods`` entries are either built-in names (below,
some with a suffix such as ``static-int8-histogram``) or names defined in ``compress.recipes``::

    compress:
      methods: [static-int8, my-stack]
      recipes:
        my-stack: [{structured_prune: {ratio: 0.5}}, finetune, static_ptq]

Every entry is parsed and type-checked when the config loads (:func:`resolve`): an unknown name,
suffix, step or field, or a step after a runtime step, is a one-line error naming the entry.

Building (:func:`build`): step k of a recipe is stored under a key made of its parent's key,
its config and (for data-dependent steps) the data key, so ``structured50-ft`` and
``structured50-ft-int8`` share their first two steps, built once.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import echolite.compress.steps  # noqa: F401 - registers every step type
from echolite import EcholiteError
from echolite.compress.base import FLOAT, RUNTIME, Context, Stage, StepConfig, apply, save_weights, step_types
from echolite.identity import stage_inputs
from echolite.store import tensors_digest
from echolite.typed import build as build_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    name: str
    steps: tuple[StepConfig, ...]

    @property
    def family(self) -> str:
        """fp32 runtimes | quantization | pruning | stacks | students (how the report groups rows)."""
        kinds = {s.family for s in self.steps}
        if "students" in kinds:
            return "students"
        if "pruning" in kinds:
            return "stacks" if "quantization" in kinds else "pruning"
        return "quantization" if "quantization" in kinds else "fp32 runtimes"

    def describe(self) -> str:
        return " → ".join(s.label() for s in self.steps)


@dataclass(frozen=True)
class _Builtin:
    pattern: re.Pattern
    usage: str
    make: Callable  # (compress config, **named groups) -> list of steps


_BUILTINS: list[_Builtin] = []


def builtin(pattern: str, usage: str):
    """Register a family of built-in recipe names (a full-match regex with named groups); a usage
    is registered once."""
    if any(b.usage == usage for b in _BUILTINS):
        raise EcholiteError(f"built-in recipe {usage!r} is registered already")

    def wrap(fn):
        _BUILTINS.append(_Builtin(re.compile(pattern), usage, fn))
        return fn

    return wrap


def known_names() -> str:
    return ", ".join(b.usage for b in _BUILTINS)


def expand(entry: str, cc) -> list[str]:
    """What a method name expands to: one line per step with its fields (``echolite recipes NAME``)."""
    recipe = parse_method(entry, cc)
    return [f"{i}. {s.label()}  [{s.consumes} -> {s.produces}]" for i, s in enumerate(recipe.steps, 1)]


# --- built-in recipes ----------------------------------------------------------------------------
class _Steps:
    """``_steps()["qat"](epochs=...)``: built-in recipes build their steps through the same typed
    builder as YAML recipes, so a bad value is the same one-line error either way."""

    def __getitem__(self, key: str):
        cls = step_types()[key]
        return lambda **fields: build_config(cls, fields, key)


def _steps() -> _Steps:
    return _Steps()


@builtin(r"fp32-inductor", "fp32-inductor")
def _fp32_inductor(cc):
    return [_steps()["compile"]()]


@builtin(r"fp32-onnxruntime", "fp32-onnxruntime")
def _fp32_ort(cc):
    return [_steps()["onnxruntime"]()]


@builtin(r"fp32-openvino", "fp32-openvino")
def _fp32_ov(cc):
    return [_steps()["onnxruntime"](runtime="openvino")]


@builtin(r"dynamic-int8", "dynamic-int8")
def _dynamic(cc):
    return [_steps()["dynamic_ptq"]()]


@builtin(r"static-int8(?:-(?P<observer>minmax|histogram|percentile))?",
         "static-int8[-minmax|-histogram|-percentile]")
def _static(cc, observer=None):
    return [_steps()["static_ptq"](observer=observer or cc.observer, per_channel=cc.per_channel)]


@builtin(r"static-int8-onnxruntime", "static-int8-onnxruntime")
def _static_exported(cc):
    return [*_static(cc), _steps()["onnxruntime"]()]


@builtin(r"static-int8-ort(?:-(?P<calibrator>minmax|entropy|percentile))?",
         "static-int8-ort[-minmax|-entropy|-percentile]")
def _ort(cc, calibrator=None):
    return [_steps()["ort_static"](calibrator=calibrator or cc.ort_calibrator, per_channel=cc.per_channel)]


@builtin(r"static-int8-ov", "static-int8-ov")
def _ov(cc):
    return [_steps()["ort_static"](calibrator=cc.ort_calibrator, per_channel=cc.per_channel,
                                   runtime="openvino")]


@builtin(r"static-int8-nncf(?P<ac>-ac)?", "static-int8-nncf[-ac]")
def _nncf(cc, ac=None):
    """OpenVINO's own pipeline: convert_model -> NNCF quantize (``-ac``: with accuracy control on VAL)."""
    return [_steps()["nncf_ptq"](accuracy_control=bool(ac))]


@builtin(r"executorch-int8", "executorch-int8")
def _executorch(cc):
    """The ARM/mobile path: XNNPACK-quantized int8 -> ExecuTorch .pte (timed here on x86)."""
    return [_steps()["executorch"](per_channel=cc.per_channel)]


@builtin(r"static-int8-ort-fallback", "static-int8-ort-fallback")
def _ort_fallback(cc):
    return [_steps()["ort_static"](calibrator=cc.ort_calibrator, per_channel=cc.per_channel, fallback=True,
                                   max_rel_delta=cc.fallback_max_rel_delta, max_layers=cc.fallback_max_layers,
                                   sensitivity_items=cc.sensitivity_items)]


@builtin(r"qat-int8", "qat-int8")
def _qat(cc):
    return [_steps()["qat"](epochs=cc.qat_epochs, lr=cc.qat_lr, max_items=cc.qat_items)]


def _finetune(cc):
    return _steps()["finetune"](epochs=cc.finetune_epochs, lr=cc.finetune_lr, max_items=cc.finetune_items,
                                warmup_epochs=cc.finetune_warmup)


_TAILS = {"int8": _static, "int8-ort": _ort, "int8-ov": _ov, "int8-nncf": _nncf, "int8-et": _executorch,
          "qat": _qat, "ort": _fp32_ort, "ov": _fp32_ov}


@builtin(r"structured(?P<pct>[1-9][0-9]?)(?:-(?P<importance>l1|l2|bn|taylor))?(?P<ft>-ft)?"
         r"(?:-(?P<tail>int8|int8-ort|int8-ov|int8-nncf|int8-et|qat|ort|ov))?",
         "structured<P>[-l1|-l2|-bn|-taylor][-ft][-int8|-int8-ort|-int8-ov|-int8-nncf|-int8-et|-qat|-ort|-ov]")
def _structured(cc, pct, importance=None, ft=None, tail=None):
    steps = [_steps()["structured_prune"](ratio=int(pct) / 100, importance=importance or cc.prune_importance,
                                          keep=tuple(cc.prune_keep), bn_items=cc.calib_items)]
    steps += [_finetune(cc)] if ft else []
    return steps + (_TAILS[tail](cc) if tail else [])


@builtin(r"unstructured(?P<pct>[1-9][0-9]?)(?P<layer>-layer)?(?:(?P<gradual>-gradual)|(?P<ft>-ft))?"
         r"(?:-(?P<tail>int8|int8-ort|int8-ov|int8-nncf|int8-et|ort|ov))?",
         "unstructured<P>[-layer][-gradual|-ft][-int8|-int8-ort|-int8-ov|-int8-nncf|-int8-et|-ort|-ov]")
def _unstructured(cc, pct, layer=None, gradual=None, ft=None, tail=None):
    steps = [_steps()["unstructured_prune"](sparsity=int(pct) / 100, scope="layer" if layer else "global",
                                            gradual_epochs=cc.finetune_epochs if gradual else 0,
                                            lr=cc.finetune_lr, max_items=cc.finetune_items,
                                            keep=tuple(cc.prune_keep), bn_items=cc.calib_items)]
    steps += [_finetune(cc)] if ft else []
    return steps + (_TAILS[tail](cc) if tail else [])


_STUDENT_TAILS = ("int8", "int8-ort", "int8-ov", "int8-nncf", "int8-et", "ort", "ov")


@builtin(r"(?P<kind>distill|student)-(?P<arch>[a-z0-9_]+(?:-[a-z0-9_]+)*?)(?:-s(?P<size>[0-9]+))?"
         r"(?:-(?P<pruned>structured(?P<pct>[1-9][0-9]?)-ft))?"
         r"(?:-(?P<tail>int8|int8-ort|int8-ov|int8-nncf|int8-et|ort|ov))?",
         "distill|student-<arch>[-s<frame size>][-structured<P>-ft]"
         "[-int8|-int8-ort|-int8-ov|-int8-nncf|-int8-et|-ort|-ov]")
def _student(cc, kind, arch, size=None, pruned=None, pct=None, tail=None):
    """A student distilled from the task's model (``student-``: the same student trained alone,
    alpha 0), optionally pruned and fine-tuned, then a runtime."""
    steps = [_steps()["distill"](arch=arch, frame_size=int(size or 0), alpha=cc.distill_alpha if kind == "distill"
                                 else 0.0, temperature=cc.distill_temperature, epochs=cc.distill_epochs,
                                 lr=cc.distill_lr, max_items=cc.distill_items)]
    if pruned:
        steps += _structured(cc, pct, ft="-ft")
    return steps + (_TAILS[tail](cc) if tail else [])


# --- parsing -----------------------------------------------------------------------------------
def parse_steps(name: str, raw) -> tuple[StepConfig, ...]:
    """A YAML recipe (a list of ``key`` or ``{key: {field: value}}``) as step configs."""
    types = step_types()
    if not isinstance(raw, list) or not raw:
        raise EcholiteError(f"compress.recipes.{name}: expected a non-empty list of steps")
    steps = []
    for i, item in enumerate(raw, 1):
        if isinstance(item, str):
            key, fields = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            key, fields = next(iter(item.items()))
            fields = fields or {}
        else:
            raise EcholiteError(f"compress.recipes.{name} step {i}: expected a step name or "
                                f"{{name: {{field: value}}}}, got {item!r}")
        if key not in types:
            raise EcholiteError(f"compress.recipes.{name} step {i}: unknown step {key!r} "
                                f"(known: {', '.join(sorted(types))})")
        steps.append(build_config(types[key], fields, f"compress.recipes.{name} step {i} ({key})"))
    return tuple(steps)


def check_chain(name: str, steps: tuple[StepConfig, ...]) -> None:
    """Steps must consume what the previous one produced; nothing may follow a runtime step."""
    state = FLOAT
    for i, step in enumerate(steps, 1):
        if state == RUNTIME:
            raise EcholiteError(f"compress.methods: {name}: step {i} ({step.key}) follows a runtime "
                                f"step ({steps[i - 2].key}), which can only be last")
        if step.consumes == FLOAT and state != FLOAT:
            raise EcholiteError(f"compress.methods: {name}: step {i} ({step.key}) needs a float "
                                f"model, but step {i - 1} ({steps[i - 2].key}) quantized it")
        state = step.produces


def parse_method(entry: str, cc) -> Recipe:
    """One ``compress.methods`` entry -> a validated recipe."""
    if not isinstance(entry, str) or not entry:
        raise EcholiteError(f"compress.methods: entries are recipe names, got {entry!r}")
    if entry in cc.recipes:
        steps = parse_steps(entry, cc.recipes[entry])
    else:
        for b in _BUILTINS:
            m = b.pattern.fullmatch(entry)
            if m:
                try:
                    steps = tuple(b.make(cc, **{k: v for k, v in m.groupdict().items() if v is not None}))
                except EcholiteError as err:
                    raise EcholiteError(f"compress.methods: {entry}: {err} (the built-in recipes take "
                                        "their steps' settings from the compress section)") from None
                break
        else:
            defined = f"; defined in compress.recipes: {', '.join(cc.recipes)}" if cc.recipes else ""
            raise EcholiteError(f"compress.methods: unknown method {entry!r} (known: {known_names()}"
                                f"{defined})")
    check_chain(entry, steps)
    return Recipe(entry, steps)


def resolve(cc) -> list[Recipe]:
    """Every entry of ``cc.methods`` as a recipe (validated); duplicates are an error."""
    seen = set()
    out = []
    for entry in cc.methods:
        if entry in seen or entry == "fp32":
            raise EcholiteError(f"compress.methods: {entry!r} is listed twice (or is the reference row)")
        seen.add(entry)
        out.append(parse_method(entry, cc))
    return out


# --- building ----------------------------------------------------------------------------------
class StepFailed(EcholiteError):
    """A step of a recipe raised; carries which one (its message names the step)."""

    names_its_step = True

    def __init__(self, recipe: str, index: int, step: StepConfig, error: BaseException):
        self.recipe, self.index, self.step, self.error = recipe, index, step, error
        first = (str(error).strip().splitlines() or [""])[0]
        super().__init__(f"step {index} ({step.key}): {type(error).__name__}: {first}")


def reference_stage(module, store, ctx: Context) -> tuple[Stage, str]:
    """The float model every recipe starts from, saved in the store; returns (stage, key)."""
    entry = store.entry("stage", "reference", stage_inputs(tensors_digest(module.state_dict()), {"step": "reference"},
                                                           ctx.model_key, None))
    if not entry.complete:
        log.info("saving the reference model (%s)", entry.describe_miss())
        with entry.build() as tmp:
            stage = Stage(module, artifacts={"state_dict": save_weights(module, tmp)})
            stage.save(tmp)
    return Stage.load(entry.path, module=module), entry.key


def build(recipe: Recipe, base: Stage, base_key: str, ctx: Context, store,
          reload: Callable[[Stage], object]) -> tuple[Stage, dict]:
    """Apply the recipe's steps to ``base``, reusing every stored prefix; returns (stage, info).

    ``reload(stage)`` gives the module of a stored stage when a later step must run on it.
    ``info`` says, per step, whether it was built or reused, its store folder and seconds.
    """
    stage, parent = base, base_key
    info = {"steps": []}
    n = len(recipe.steps)
    for i, step in enumerate(recipe.steps, 1):
        config = {**step.key_dict(), **({"task_budget": list(ctx.budget)} if step.uses_budget else {})}
        inputs = stage_inputs(parent, config, ctx.model_key, ctx.data_key if step.uses_data else None)
        entry = store.entry("stage", f"{recipe.name}#{i}", inputs)
        if entry.complete:
            log.info("%s: step %d/%d %s: reusing %s", recipe.name, i, n, step.label(), entry.path.name)
            stage = Stage.load(entry.path)
            info["steps"].append({"step": step.key, "store": entry.path.name, "built": False})
        else:
            log.info("%s: step %d/%d %s: building (%s)", recipe.name, i, n, step.label(),
                     entry.describe_miss())
            if stage.module is None:
                stage = dataclasses.replace(stage, module=reload(stage))
            t0 = time.perf_counter()
            try:
                with entry.build() as tmp:
                    out = apply(step, stage, dataclasses.replace(ctx, work_dir=tmp))
                    out.save(tmp)
            except Exception as err:  # noqa: BLE001 - re-raised with the step that failed
                raise StepFailed(recipe.name, i, step, err) from err
            stage = Stage.load(entry.path, module=out.module)
            info["steps"].append({"step": step.key, "store": entry.path.name, "built": True,
                                  "seconds": round(time.perf_counter() - t0, 1)})
        parent = entry.key
    info["store"] = entry.path.name
    return stage, info
