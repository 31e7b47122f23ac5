import pytest
import torch

from echolite import env, pipeline
from echolite.config import apply_overrides, load_config
from echolite.env import resolve_amp
from echolite.store import Store

CPU = torch.device("cpu")


def test_the_precision_probe_is_timed_once_and_kept_in_the_store(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(env, "cpu_flags", lambda: ["avx512_bf16"])
    monkeypatch.setattr(pipeline, "training_step_seconds",
                        lambda factory, shape, device: calls.append(1) or {"fp32": 2.0, "bf16": 1.0})
    cfg = apply_overrides(load_config("smoke"), ["train.amp=auto"])
    store = Store(tmp_path)
    first = pipeline.training_precision(cfg, CPU, store)
    second = pipeline.training_precision(cfg, CPU, store)
    assert first == second and first[0] == torch.bfloat16 and len(calls) == 1
    other = apply_overrides(load_config("smoke"), ["train.amp=auto", "train.batch_size=8"])
    pipeline.training_precision(other, CPU, store)
    assert len(calls) == 2  # another batch: timed again


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
    monkeypatch.setattr(env, "cpu_flags", lambda: flags)
    got, text = resolve_amp(CPU, requested, probe=lambda: calls.append(1) or seconds)
    assert got == dtype and note in text
    assert len(calls) == (1 if seconds else 0)  # timed only when the flags cannot decide


def test_process_0_sends_what_it_read_to_every_process(tmp_path):
    """Issue 16 (multi-node resumes): ranks without the checkpoint file resume from process 0's."""
    import json

    import torch.multiprocessing as mp
    from dist_helpers import resume_state

    mp.spawn(resume_state, args=(2, f"file://{tmp_path / 'rendezvous'}", str(tmp_path)), nprocs=2)
    assert json.loads((tmp_path / "rank1.json").read_text()) == {"epoch": 7, "history": [1, 2]}
    assert json.loads((tmp_path / "rank0.json").read_text()) == {"epoch": 7, "history": [1, 2]}
