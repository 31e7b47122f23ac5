"""Where a run executes: device, processes, threads, precision, seeds, atomic files, installed
packages and the provenance of a run (nothing here knows a task, a model or a config)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import random
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from echolite import EcholiteError

# the packages whose versions every run records and every store key includes (one list)
PACKAGES = ("echolite", "torch", "torchvision", "torchao", "onnx", "onnxscript", "onnxruntime",
            "openvino", "nncf", "executorch", "torch-pruning", "numpy", "opencv-python-headless", "pandas",
            "scikit-learn")


@functools.cache
def package_versions(names: tuple[str, ...] = PACKAGES) -> dict:
    """Installed versions of ``names`` (None where not installed)."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise EcholiteError("--device cuda: no CUDA device is available (use cpu or auto)")
    return torch.device(name)


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) while a process group is up; (0, 1, 0) otherwise."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def init_distributed(device: torch.device) -> torch.device:
    """Join the process group torchrun set up (NCCL on GPUs, gloo on CPUs); returns this process's
    device (its own GPU under torchrun). A process not started by torchrun is left alone."""
    world, local = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))
    if world == 1:
        return device
    if device.type == "cuda":
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def dist_backend() -> str | None:
    """The process group's backend (nccl, gloo) while one is up, else None."""
    return dist.get_backend() if dist.is_available() and dist.is_initialized() else None


def broadcast(obj):
    """Process 0's ``obj`` on every process (``obj`` itself outside a process group): ranks that
    do not share a file system still agree on what process 0 read."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def pinned_threads(n: int):
    """Run the block on ``n`` intra-op threads (timing), then give the caller's count back."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def end_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


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


AMP_CHOICES = ("auto", "off", "bf16", "fp16")


def resolve_amp(device: torch.device, requested: str, probe=None) -> tuple[torch.dtype | None, str]:
    """The autocast dtype training really uses, and why (recorded in the run).

    ``auto``: bf16 on CUDA devices that support it, else fp16. On CPUs: bf16 with AMX; fp32
    without bf16 instructions; with AVX512-BF16 but no AMX the answer differs by CPU (measured
    here: 2x faster than fp32 on an AMD EPYC, 25 % slower on an Intel Xeon), so ``auto`` times
    both with ``probe() -> {"fp32": s, "bf16": s}`` (seconds per training step) and takes bf16
    only if it is at least 10 % faster. An explicit ``bf16`` on a CPU without bf16 instructions
    runs fp32, and says so.
    """
    if requested == "off":
        return None, "off (fp32)"
    flags = set(cpu_flags())
    if device.type == "cuda":
        if requested == "fp16" or (requested == "auto" and not torch.cuda.is_bf16_supported()):
            return torch.float16, "fp16 autocast + GradScaler (CUDA)"
        return torch.bfloat16, "bf16 autocast (CUDA)"
    if requested == "fp16":
        return None, "fp32: fp16 autocast is not used on CPUs (requested fp16)"
    has_bf16 = bool({"avx512_bf16", "amx_bf16"} & flags)
    if requested == "bf16":
        return (torch.bfloat16, "bf16 autocast (CPU, requested)") if has_bf16 else \
            (None, "fp32: the CPU lacks bf16 instructions (requested bf16)")
    if "amx_bf16" in flags:
        return torch.bfloat16, "bf16 autocast (auto: CPU with AMX)"
    if not has_bf16:
        return None, "fp32 (auto: the CPU has no bf16 instructions)"
    if probe is None:
        return None, "fp32 (auto: bf16 speed on this CPU not measured)"
    t = probe()
    faster = t["bf16"] < 0.9 * t["fp32"]
    return (torch.bfloat16 if faster else None,
            f"{'bf16 autocast' if faster else 'fp32'} (auto: measured a training step at "
            f"{t['bf16']:.2f} s in bf16 vs {t['fp32']:.2f} s in fp32 on this CPU)")


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _atomic(path: str | Path, write) -> None:
    """Write through a temporary file renamed into place: a kill mid-write leaves ``path`` as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_torch_save(obj, path: str | Path) -> None:
    _atomic(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(path: str | Path, text: str) -> None:
    _atomic(path, lambda tmp: tmp.write_text(text))


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
    versions = package_versions()
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
