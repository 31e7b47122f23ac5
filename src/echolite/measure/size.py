"""Size on disk of models and artifacts."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import torch


def model_files(path: str | Path) -> list[Path]:
    """A model file and the files it loads beside it: an ONNX external-data ``.data``, an OpenVINO
    IR's ``.bin`` (the weights of its ``.xml``)."""
    path = Path(path)
    if path.suffix == ".xml":
        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise FileNotFoundError(f"{path}: its weights {weights.name} are missing")
        return [path, weights]
    data = path.with_name(path.name + ".data")
    return [path] + ([data] if data.exists() else [])


def file_bytes(path: str | Path) -> int:
    """Bytes of a model file and its sidecars (:func:`model_files`)."""
    return sum(p.stat().st_size for p in model_files(path))


def compressed_bytes(path: str | Path, level: int = 6) -> int:
    """Bytes of the file (and sidecar) deflate-compressed (zlib ``level``): the size to store or
    ship it zipped. Zero weights (unstructured pruning) compress; dense weights barely do."""
    comp = zlib.compressobj(level)
    total = 0
    for p in model_files(path):
        with open(p, "rb") as f:
            while block := f.read(1 << 22):
                total += len(comp.compress(block))
    return total + len(comp.flush())


def state_dict_bytes(module: torch.nn.Module) -> int:
    """Bytes of ``torch.save(module.state_dict())``."""
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.getbuffer().nbytes
