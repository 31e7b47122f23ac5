"""Speed of a training step, fp32 against bf16 autocast, in one process (how train.amp=auto decides)."""

from __future__ import annotations

import time

import numpy as np
import torch

from echolite.runtime import cpu_flags, cpu_name, resolve_amp, resolve_device


def training_step_seconds(cfg, device: torch.device, steps: int = 3, warmup: int = 1) -> dict:
    """Median seconds of a forward+backward+AdamW step of the task's model at ``train.batch_size``,
    fp32 and bf16 autocast alternated (drift hits both alike), on random inputs of the
    deployment shape. Returns ``{"fp32": s, "bf16": s}``."""
    from echolite.tasks import task_class

    cls = task_class(cfg.task)
    shape = (cfg.train.batch_size, *cls.example_shape(cfg))
    torch.manual_seed(0)
    model = cls.build_model(cfg).to(device, memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = (torch.rand(shape) * 255).to(device)

    def step(dtype):
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            out = model(x)
        loss = out.float().pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    dtypes = {"fp32": None, "bf16": torch.bfloat16}
    times = {k: [] for k in dtypes}
    for i in range(warmup + steps):
        for name, dtype in dtypes.items():
            t = step(dtype)
            if i >= warmup:
                times[name].append(t)
    return {k: float(np.median(v)) for k, v in times.items()}


def bench_training_step(cfg, steps: int = 5) -> str:
    """The measurement behind ``train.amp=auto``, printed (``echolite bench-train``)."""
    from echolite.tasks import task_class

    device = resolve_device(cfg.train.device)
    med = training_step_seconds(cfg, device, steps, warmup=2)
    simd = sorted(f for f in cpu_flags() if f in ("avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni"))
    cls = task_class(cfg.task)
    _, auto = resolve_amp(device, "auto", probe=lambda: med)
    return (f"device: {device} ({cpu_name()}; {', '.join(simd) or 'no bf16/AMX flags'}), "
            f"{torch.get_num_threads()} threads, model {cls.model_name(cfg)}, batch "
            f"{cfg.train.batch_size}x{cls.example_shape(cfg)}\n"
            f"fp32 step: {med['fp32']:.3f} s   bf16 autocast step: {med['bf16']:.3f} s   "
            f"bf16/fp32 = {med['bf16'] / med['fp32']:.2f} (median of {steps})\n"
            f"train.amp=auto here: {auto}")
