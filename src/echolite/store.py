"""The keyed store: the one place that decides whether something built before is reused.

Runs keep everything they may reuse in a store, ``<runs>/store/<kind>-<key>/`` (shared by the run
folders under one parent), where ``key`` is a digest of the *inputs* the entry was made from (what
:mod:`echolite.identity` says each kind is made from). A different input gives a different key, so
nothing stale can be picked up and nothing another build made is overwritten; two runs with the
same inputs share one build. When an entry is built because no entry with its key exists, the log
says which inputs differ from the most recent entry of the same label (:func:`describe_changes`).

Entries appear atomically: a build writes into a temporary folder that is renamed into place
only once complete, so an interrupted build leaves nothing that looks finished. (A baseline
training is the exception: it checkpoints inside its folder and resumes; see ``Entry.path``.)
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

INPUTS = "inputs.json"
COMPLETE = "COMPLETE"


def canonical(obj) -> str:
    """Stable JSON text of ``obj`` (sorted keys; tuples as lists; paths and others as str)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def digest(obj) -> str:
    """sha256 hex of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical(obj).encode()).hexdigest()


def bytes_digest(chunks) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | Path) -> str:
    def chunks():
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                yield block

    return bytes_digest(chunks())


def tensors_digest(named) -> str:
    """Digest of named tensors/arrays: names, dtypes, shapes and bytes (a state dict, a batch list).

    Args:
        named: a mapping name -> tensor, or an iterable of tensors (named by position).
    """
    items = named.items() if isinstance(named, Mapping) else enumerate(named)

    def chunks():
        for name, t in items:
            if isinstance(t, torch.Tensor):
                t = t.detach().cpu()
                if t.is_quantized or type(t) is not torch.Tensor:  # quantized / subclass tensors
                    buffer = io.BytesIO()
                    torch.save(t, buffer)
                    yield f"{name}:{type(t).__name__}:".encode()
                    yield buffer.getvalue()
                    continue
                arr = t.contiguous().view(-1).view(torch.uint8).numpy() if t.numel() else np.zeros(0)
            else:
                arr = np.ascontiguousarray(t)
                t = arr
            yield f"{name}:{t.dtype}:{tuple(t.shape)}:".encode()
            yield arr.tobytes()

    return bytes_digest(chunks())


@dataclass
class Entry:
    """One keyed folder of the store. ``inputs`` is everything it was made from."""

    store: Store
    kind: str
    label: str  # what is being built, for log lines and for "what changed" comparisons
    inputs: dict
    key: str

    @property
    def path(self) -> Path:
        return self.store.root / f"{self.kind}-{self.key}"

    @property
    def complete(self) -> bool:
        return (self.path / COMPLETE).is_file()

    def describe_miss(self) -> str:
        """Why no finished entry could be reused: which inputs differ from the latest one."""
        latest = self.store.latest(self.kind, self.label, exclude=self.key)
        if latest is None:
            return "nothing built before"
        changed = describe_changes(latest, self.inputs)
        return "changed: " + "; ".join(changed[:6]) + (" ..." if len(changed) > 6 else "") \
            if changed else "previous build incomplete"

    @contextlib.contextmanager
    def build(self) -> Iterator[Path]:
        """Yield a private temporary folder; on success it becomes this entry, atomically."""
        self.store.root.mkdir(parents=True, exist_ok=True)
        tmp = self.store.root / f".tmp-{self.kind}-{self.key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            yield tmp
            self._write_inputs(tmp)
            (tmp / COMPLETE).write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
            if self.complete:  # another process finished the same entry meanwhile: keep theirs
                return
            if self.path.exists():  # an incomplete leftover of a killed build
                shutil.rmtree(self.path)
            os.replace(tmp, self.path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def open_in_place(self) -> Path:
        """Create the folder for a resumable build that checkpoints inside it (training)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._write_inputs(self.path)
        return self.path

    def mark_complete(self) -> None:
        (self.path / COMPLETE).write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))

    def _write_inputs(self, folder: Path) -> None:
        record = {"kind": self.kind, "label": self.label, "key": self.key, "inputs": self.inputs}
        (folder / INPUTS).write_text(json.dumps(record, indent=1, sort_keys=True, default=str))


class Store:
    """Keyed folders ``root/<kind>-<key>``: the one place that decides whether to reuse."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def entry(self, kind: str, label: str, inputs: dict) -> Entry:
        inputs = json.loads(canonical(inputs))  # exactly what will be written and compared
        return Entry(self, kind, label, inputs, digest({"kind": kind, "inputs": inputs})[:16])

    def latest(self, kind: str, label: str, exclude: str | None = None) -> dict | None:
        """Inputs of the most recently written entry of ``kind`` with ``label`` (any state)."""
        best, best_time = None, -1.0
        if not self.root.is_dir():
            return None
        for folder in self.root.glob(f"{kind}-*"):
            record_path = folder / INPUTS
            if folder.name == f"{kind}-{exclude}" or not record_path.is_file():
                continue
            try:
                record = json.loads(record_path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if record.get("label") == label and record_path.stat().st_mtime > best_time:
                best, best_time = record["inputs"], record_path.stat().st_mtime
        return best


def describe_changes(old, new, prefix: str = "") -> list[str]:
    """``path old -> new`` for every dotted path whose value differs between two JSON-like objects
    (what made a key change: "data.phantom_seed 0 -> 7")."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += describe_changes(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    if old == new:
        return []
    return [f"{prefix.rstrip('.')} {_short(old)} -> {_short(new)}"]


def _short(value) -> str:
    text = canonical(value)
    return text if len(text) <= 40 else text[:16] + "…" + text[-8:]
