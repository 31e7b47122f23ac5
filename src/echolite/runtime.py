"""Where a run executes: device, precision, seeds, atomic files and the provenance of a run."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from echolite import EcholiteError

PACKAGES = ("echolite", "torch", "torchvision", "torchao", "onnx", "onnxruntime", "numpy",
            "opencv-python-headless", "pandas")


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise EcholiteError("--device cuda: no CUDA device is available (use cpu or auto)")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _cpuinfo(field: str) -> str | None:
    """The first value of ``field`` in /proc/cpuinfo (Linux), or None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> list[str]:
    return (_cpuinfo("flags") or "").split()


def cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """fp16 on CUDA, bf16 on CPUs with native bf16 (AVX512-BF16/AMX), else None (fp32)."""
    if not enabled:
        return None
    if device.type == "cuda":
        return torch.float16
    flags = set(cpu_flags())
    return torch.bfloat16 if {"avx512_bf16", "amx_bf16"} & flags else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def atomic_torch_save(obj, path: str | Path) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict:
    """Package versions, git commit, CPU and thread settings: stored with every run."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    flags = cpu_flags()
    return {
        "python": platform.python_version(),
        "packages": versions,
        "git_commit": git_commit(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_flags_simd": sorted(f for f in flags if f.startswith(("avx", "amx", "sse4", "fma"))),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
