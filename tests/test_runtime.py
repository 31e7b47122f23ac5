import pytest
import torch

from echolite import runtime
from echolite.runtime import resolve_amp

CPU = torch.device("cpu")


@pytest.mark.parametrize("flags, requested, seconds, dtype, note", [
    ([], "auto", None, None, "no bf16 instructions"),
    (["avx512_bf16"], "auto", {"fp32": 2.07, "bf16": 1.05}, torch.bfloat16, "1.05 s in bf16 vs 2.07 s"),
    (["avx512_bf16"], "auto", {"fp32": 1.77, "bf16": 2.23}, None, "2.23 s in bf16 vs 1.77 s"),
    (["avx512_bf16"], "auto", {"fp32": 1.00, "bf16": 0.95}, None, "0.95 s in bf16"),  # < 10 % faster
    (["amx_bf16", "avx512_bf16"], "auto", None, torch.bfloat16, "AMX"),
    ([], "bf16", None, None, "lacks bf16 instructions (requested bf16)"),
    (["avx512_bf16"], "off", None, None, "off"),
])
def test_cpu_training_precision_is_decided_by_measurement(monkeypatch, flags, requested, seconds, dtype,
                                                         note):
    calls = []
    monkeypatch.setattr(runtime, "cpu_flags", lambda: flags)
    got, text = resolve_amp(CPU, requested, probe=lambda: calls.append(1) or seconds)
    assert got == dtype and note in text
    assert len(calls) == (1 if seconds else 0)  # timed only when the flags cannot decide
