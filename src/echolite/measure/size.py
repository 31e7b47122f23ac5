"""Size on disk of models and artifacts."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import torch


def file_bytes(path: str | Path) -> int:
    """Bytes of a file plus its ONNX external-data sidecar, if any."""
    path = Path(path)
    total = path.stat().st_size
    sidecar = path.with_name(path.name + ".data")
    return total + (sidecar.stat().st_size if sidecar.exists() else 0)


def compressed_bytes(path: str | Path, level: int = 6) -> int:
    """Bytes of the file (and sidecar) deflate-compressed (zlib ``level``): the size to store or
    ship it zipped. Zero weights (unstructured pruning) compress; dense weights barely do."""
    path = Path(path)
    comp = zlib.compressobj(level)
    total = 0
    for p in (path, path.with_name(path.name + ".data")):
        if p.exists():
            with open(p, "rb") as f:
                while block := f.read(1 << 22):
                    total += len(comp.compress(block))
    return total + len(comp.flush())


def state_dict_bytes(module: torch.nn.Module) -> int:
    """Bytes of ``torch.save(module.state_dict())``."""
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.getbuffer().nbytes
