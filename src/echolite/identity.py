"""What every artifact is made from: the one module that says what goes into a key.

Settings that never change a result (how data is read, where caches go, which device trains)
are marked once, where they are declared (``setting(..., identity=False)``, see
:mod:`echolite.typed`); every function here takes config sections through :func:`section`,
which leaves them out. So a key changes exactly when something it was made from changes, and
:func:`describe_changes` says what (the store logs it on every rebuild).

What each kind is made from:

  phantom    the phantom's version, size, number of videos and seed, and the code that draws it
  digits     the built-in digits: the code that writes them and scikit-learn's version
  data       the dataset's layout and content (dataset_key): its index rows and every item's bytes (digests), not where
             it lies (a moved or copied dataset keeps its key)
  frames     one video's bytes and the decoding, with OpenCV's version (one frame-cache entry per video)
  onnx       a float model's ONNX export: its weights, model key, input, code, package versions
  ranges     ONNX Runtime's calibrated ranges: the ONNX file's bytes, calibrator, batches, code
  amp        the training-step timing behind train.amp=auto: CPU, flags, threads, model, batch
  baseline   data + the identity settings of data, model and train + the training precision it
             resolved to + the pretrained file's bytes + the code that trains + package versions.
             Not the number of torchrun processes: with one global batch DDP trains like one
             process (exactly with train.freeze_bn; per-rank BatchNorm statistics differ a little
             otherwise), so a killed torchrun training resumes in one process and vice versa
  model      the task, its model and data settings and the example input's shape (every stage)
  teacher    a teacher's outputs on every TRAIN item (distillation): its weights, its model
             settings, the dataset's content, the data settings and input shape (model key), the code
  stage      its parent stage + the step's config + model + the code that compresses + package
             versions (+ the training/calibration data, for steps that use data)
  run        a run folder's results: the baseline's inputs, the compress, eval and measure
             settings (a folder holds one run; another run goes beside it)

Code digests (:data:`CODE`) cover the source files that make each kind: editing the report,
the CLI, a figure or this package's docs rebuilds nothing.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

from echolite import EcholiteError
from echolite.env import package_versions
from echolite.store import bytes_digest, describe_changes, digest, file_digest
from echolite.typed import is_identity

__all__ = ["CODE", "section", "code_digest", "baseline_inputs", "model_inputs", "data_inputs",
           "stage_inputs", "run_identity", "phantom_inputs", "digits_inputs", "frames_inputs", "dataset_key",
           "pretrained_file", "teacher_inputs", "onnx_export_inputs",
           "ranges_inputs", "amp_probe_inputs", "describe_changes"]

# echolite's source files that make each kind of entry (relative to the package; a folder means
# every .py file in it, minus what EXCLUDED names inside it: a part named explicitly always counts)
CODE = {
    "phantom": ("data/phantom", "data/video.py", "data/tracings.py"),
    "digits": ("data/digits.py", "data/cifar.py"),
    "frames": ("data/video.py", "data/framecache.py"),
    "baseline": ("train.py", "env.py", "typed.py", "data", "models", "metrics", "tasks"),
    "stages": ("train.py", "env.py", "typed.py", "data", "models", "metrics", "tasks", "compress",
               "task_context.py", "measure/complexity.py"),
}
# code that reads or makes datasets, not models: a dataset's content is in the data key already
EXCLUDED = ("data/realism.py", "data/phantom", "data/digits.py", "data/fingerprint.py", "data/validate.py")


def section(obj) -> dict:
    """The identity fields of a config section (a dataclass) as plain values."""
    out = {}
    for f in dataclasses.fields(obj):
        if is_identity(f):
            value = getattr(obj, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


@functools.cache
def code_digest(kind: str) -> str:
    """Digest of the source files that make entries of ``kind`` (a key of :data:`CODE`)."""
    root = Path(__file__).parent
    return bytes_digest(name.encode() + b"\0" + (root / name).read_bytes() for name in code_files(kind))


def code_files(kind: str) -> list[str]:
    """The files in ``kind``'s code digest (what the README lists)."""
    root = Path(__file__).parent
    files = set()
    for part in CODE[kind]:
        if not (root / part).is_dir():
            files.add(part)
            continue
        inside = [e for e in EXCLUDED if e.startswith(part + "/")]
        names = (f.relative_to(root).as_posix() for f in (root / part).rglob("*.py"))
        files |= {n for n in names if not any(n == e or n.startswith(e + "/") for e in inside)}
    return sorted(files)


def digits_inputs(folder: str) -> dict:
    """The built-in digits in the CIFAR-10 layout: the code that writes them and scikit-learn's data."""
    return {"what": folder, "code": code_digest("digits"),
            "versions": {"scikit-learn": package_versions()["scikit-learn"]}}


def phantom_inputs(version: int, n: int, seed: int, size: int) -> dict:
    return {"version": version, "n": n, "seed": seed, "size": size, "code": code_digest("phantom")}


def pretrained_file(cfg) -> Path | None:
    """The config's ``model.pretrained`` file (None when it names none); a name that is not a file
    is an error: keyed as "no weights" it would reuse a baseline trained from scratch."""
    pretrained = getattr(cfg.model, "pretrained", None)
    if pretrained and not Path(pretrained).is_file():
        raise EcholiteError(f"model.pretrained: {pretrained}: no such file (name a local checkpoint or "
                            "torchvision state dict, or leave --pretrained out)")
    return Path(pretrained) if pretrained else None


def _baseline_part(task) -> dict:
    cfg = task.cfg
    pretrained = pretrained_file(cfg)
    return {"task": task.NAME, "data_key": task.data.key, "data": section(cfg.data),
            "model": section(cfg.model), "train": section(cfg.train),
            "pretrained": file_digest(pretrained) if pretrained else None}


def baseline_inputs(task, amp) -> dict:
    """What a baseline is made from (its store key)."""
    return {**_baseline_part(task), "amp": str(amp), "code": code_digest("baseline"),
            "versions": package_versions()}


def model_inputs(task, example_shape, input_name: str) -> dict:
    """What every stage's model is: the task's architecture and data settings, the input shape."""
    cfg = task.cfg
    return {"task": task.NAME, "model": section(cfg.model), "data": section(cfg.data),
            "example_shape": list(example_shape), "input_name": input_name}


def data_inputs(task, calibration_key: str, amp) -> dict:
    """What data-dependent steps read: the data, the calibration batches and the training loop's
    settings (fine-tuning trains with the task's loop; its own epochs and learning rate are in the
    step's config)."""
    train = {k: v for k, v in section(task.cfg.train).items() if k not in ("epochs", "lr")}
    return {"data": task.data.key, "calibration": calibration_key, "train": train, "amp": str(amp)}


def stage_inputs(parent: str, step: dict, model_key: str, data_key: str | None) -> dict:
    inputs = {"parent": parent, "step": step, "model": model_key, "code": code_digest("stages"),
              "versions": package_versions()}
    if data_key is not None:
        inputs["data"] = data_key
    return inputs


def frames_inputs(decoding_version: int) -> dict:
    """How a video's frames are decoded (an entry of the frame cache is its bytes' digest + this)."""
    return {"decoding": decoding_version, "code": code_digest("frames"),
            "versions": {"opencv-python-headless": package_versions()["opencv-python-headless"]}}


def dataset_key(layout: str, content: dict) -> str:
    """A dataset's data key: its layout (what a loader makes of it) and its content (digests of
    the index rows and of every item's bytes — never a path, so a moved copy keeps its key).
    Tasks call this from ``prepare``; the key goes into every baseline and data-using stage."""
    return digest({"layout": layout, **content})


def teacher_inputs(weights: str, model: dict, data_key: str, model_key: str) -> dict:
    """A teacher's stored outputs on TRAIN: its weights' digest, its model settings, the dataset's
    content and how items are read (``model_key``: the task's data settings and input shape)."""
    return {"weights": weights, "model": model, "data": data_key, "items": model_key,
            "code": code_digest("stages"), "versions": package_versions()}


def onnx_export_inputs(weights: str, model_key: str, input_name: str, example_shape, overrides: dict) -> dict:
    """A float model's ONNX export: its weights' digest, what model it is (the task's, with a
    student's ``overrides``), the input it takes."""
    return {"weights": weights, "model": model_key, "overrides": overrides, "code": code_digest("stages"),
            "input_name": input_name,
            "example_shape": list(example_shape), "versions": package_versions()}


def ranges_inputs(onnx: str, calibrator: str, calibration_key: str) -> dict:
    """ONNX Runtime's calibrated ranges: the ONNX file's bytes, the calibrator, the batches."""
    return {"onnx": onnx, "calibrator": calibrator, "calibration": calibration_key, "code": code_digest("stages"),
            "versions": package_versions()}


def amp_probe_inputs(cpu: str, flags: list[str], device: str, threads: int, model: str, shape) -> dict:
    """The timing of a training step that resolves ``train.amp=auto``: this CPU (and its bf16/AMX
    flags), threads, model and batch, torch's version."""
    return {"cpu": cpu, "flags": sorted(flags), "device": device, "threads": threads, "model": model,
            "shape": list(shape), "versions": {"torch": package_versions()["torch"]}}


def run_identity(task, search: bool = False) -> dict:
    """What a run folder's results are made from: its baseline's inputs and how it compresses,
    evaluates and measures (and, for a search folder, the search's space)."""
    cfg = task.cfg
    out = {"baseline": _baseline_part(task), "compress": section(cfg.compress), "eval": section(cfg.eval),
           "measure": section(cfg.measure)}
    if search:
        out["search"] = section(cfg.search)
    return out


def key(inputs: dict) -> str:
    """The short key of a mapping of inputs (as the store names its entries)."""
    return digest(inputs)[:16]
