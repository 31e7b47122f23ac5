"""Speed of a training step, fp32 against bf16 autocast, in one process (how train.amp=auto decides)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch


def training_step_seconds(model_factory: Callable[[], torch.nn.Module], shape: tuple[int, ...],
                          device: torch.device, steps: int = 3, warmup: int = 1) -> dict:
    """Median seconds of a forward+backward+AdamW step of ``model_factory()`` on random inputs of
    ``shape`` (batch first), fp32 and bf16 autocast alternated (drift hits both alike).
    Returns ``{"fp32": s, "bf16": s}``."""
    torch.manual_seed(0)
    model = model_factory().to(device, memory_format=torch.channels_last).train()
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
