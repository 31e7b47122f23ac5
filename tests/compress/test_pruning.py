"""Pruning steps, the shared fine-tuning step and QAT started from PTQ ranges, on the real EF model."""

import dataclasses

import numpy as np
import pytest
import torch
from ef_inputs import clips, ef_model
from torch import nn

from echolite.compress import (
    FineTuneConfig,
    OnnxRuntimeConfig,
    QATConfig,
    Stage,
    StaticPTQConfig,
    StructuredPruneConfig,
    UnstructuredPruneConfig,
    apply,
)
from echolite.compress.backends.pruning import sparsity
from echolite.compress.base import Context, save_weights
from echolite.compress.recipes import Recipe, build, reference_stage
from echolite.compress.runners import load_module, open_runner
from echolite.measure.complexity import macs_and_params
from echolite.models.ef import EFRegressor
from echolite.store import Store


@pytest.fixture(scope="module")
def model():
    return ef_model(spread_bn=True)


def make_ctx(tmp_path, finetune=None, store=None):
    calib = clips(4)
    return Context(example_input=clips(1, seed=9)[0], calibration=lambda: iter(calib), work_dir=tmp_path,
                   input_name="clips", threads=2, protected=lambda overrides=None: ("head",), finetune=finetune,
                   model_factory=lambda overrides=None: EFRegressor("meanstd"), store=store)


def prune(model, config, tmp_path, **kw):
    c = make_ctx(tmp_path, **kw)
    c.work_dir.mkdir(parents=True, exist_ok=True)
    return apply(config, Stage(model, artifacts={"state_dict": save_weights(model, tmp_path)}), c)


def run(module, x):
    if not isinstance(module, torch.fx.GraphModule):  # exported programs have no train/eval switch
        module.eval()
    with torch.no_grad():
        return module(x)


@pytest.mark.parametrize("target, scope", [(0.5, "global"), (0.8, "global"), (0.9, "layer")])
def test_unstructured_sparsity_reached_is_sparsity_asked(model, tmp_path, target, scope):
    stage = prune(model, UnstructuredPruneConfig(sparsity=target, scope=scope), tmp_path)
    d = stage.details[-1]
    weights = [m.weight for n, m in stage.module.named_modules()  # counted here, not by the step
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and n != "head"]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert abs(zeros - target) < 1e-3 and abs(d["reached_sparsity"] - zeros) < 1e-6
    if scope == "layer":
        assert all(abs(s - target) < 0.01 for s in d["per_layer_sparsity"].values())
    assert "head" not in d["per_layer_sparsity"] and sparsity(stage.module)["per_layer"]["head"] == 0.0
    # masks are permanent: plain parameters, no hooks, loads into a plain model
    assert not any(hasattr(m, "weight_orig") for m in stage.module.modules())
    reloaded = load_module(stage, lambda overrides=None: EFRegressor("meanstd"))
    x = torch.cat(clips(2, seed=5))
    assert torch.equal(run(reloaded, x), run(stage.module, x))


def test_ratio_zero_is_the_identity(model, tmp_path):
    x = torch.cat(clips(2, seed=5))
    for cfg in (UnstructuredPruneConfig(sparsity=0.0), StructuredPruneConfig(ratio=0.0)):
        stage = prune(model, cfg, tmp_path / cfg.key)
        assert torch.equal(run(stage.module, x), run(model, x))


def test_structured_pruning_removes_channels_consistently(model, tmp_path):
    stage = prune(model, StructuredPruneConfig(ratio=0.5, bn_items=0), tmp_path)
    pruned, d = stage.module, stage.details[-1]
    bb = pruned.backbone
    # residual adds stay consistent: every block's output width equals its input width (or downsample's)
    for layer in (bb.layer1, bb.layer2, bb.layer3, bb.layer4):
        for block in layer:
            out = block.conv2.out_channels
            assert out == (block.downsample[0].out_channels if block.downsample else block.conv1.in_channels)
    assert bb.layer4[1].conv2.out_channels == 256 and pruned.head.in_features == 512
    # the head after mean+std pooling keeps both columns of every kept channel
    before = model.backbone.layer4[1].bn2.weight.detach()
    after = bb.layer4[1].bn2.weight.detach()
    kept = torch.tensor([int(torch.nonzero(before == v)[0]) for v in after])
    w0, w1 = model.head.weight.detach(), pruned.head.weight.detach()
    assert torch.equal(w1[:, :256], w0[:, kept]) and torch.equal(w1[:, 256:], w0[:, 512 + kept])
    assert d["macs_ratio"] <= 0.35 and d["params_ratio"] <= 0.3
    assert macs_and_params(pruned, clips(1)[0])["macs"] == d["macs"]


def test_pruned_model_runs_exports_and_reloads_without_the_pruning_library(model, tmp_path):
    stage = prune(model, StructuredPruneConfig(ratio=0.5), tmp_path / "prune")
    x = torch.cat(clips(3, seed=7))
    reloaded = load_module(stage, lambda overrides=None: EFRegressor("meanstd"))  # from model.state_dict.pt alone
    assert torch.equal(run(reloaded, x), run(stage.module, x))
    onnx = apply(OnnxRuntimeConfig(), stage, make_ctx(tmp_path / "onnx"))
    got = open_runner(onnx, None, 2)(x)
    np.testing.assert_allclose(got.numpy(), run(stage.module, x).numpy(), atol=1e-3)
    assert onnx.artifacts["onnx"].stat().st_size < 0.3 * 45e6


def test_taylor_importance_uses_the_task_gradients(model, tmp_path):
    calls = []

    def gradient_batches(n):
        calls.append(n)
        return [(torch.cat(clips(2, seed=i)), torch.tensor([40.0, 60.0]),
                 lambda out, y: ((out - y) ** 2).mean()) for i in range(n)]

    c = make_ctx(tmp_path)
    c = dataclasses.replace(c, gradient_batches=gradient_batches)
    stage = Stage(model, artifacts={"state_dict": save_weights(model, tmp_path)})
    cfg = StructuredPruneConfig(ratio=0.25, importance="taylor", taylor_batches=2, bn_items=0)
    out = apply(cfg, stage, c)
    assert calls == [2] and out.module.head.in_features == 2 * 384
    assert all(p.grad is None for p in out.module.parameters())


def _fake_finetune(steps_taken):
    def finetune(module, epochs, lr, on_epoch=None, max_items=0, keep_best=True, **kwargs):
        opt = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=lr)
        history = [{"epoch": 0, "val_score": 1.0}] if keep_best else []
        for epoch in range(epochs):
            module.train()
            if on_epoch:
                on_epoch(epoch)
            for x in clips(2, seed=epoch):
                loss = (module(x) - 50.0).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                steps_taken.append(loss.item())
            history.append({"epoch": epoch + 1, "val_score": 0.5 / (epoch + 1)})
        module.eval()
        return history
    return finetune


def test_finetuning_keeps_pruned_weights_at_zero(model, tmp_path):
    sparse = prune(model, UnstructuredPruneConfig(sparsity=0.6), tmp_path / "p")
    steps = []
    tuned = apply(FineTuneConfig(epochs=2, lr=1e-3, bn_items=16), sparse,
                  make_ctx(tmp_path / "ft", finetune=_fake_finetune(steps)))
    assert len(steps) == 4
    before, after = sparse.module.backbone.conv1.weight, tuned.module.backbone.conv1.weight
    assert torch.equal(after == 0, before == 0) and not torch.equal(after, before)  # trained, zeros held
    assert tuned.details[-1]["kept_epoch"] == 2
    assert tuned.details[-1]["bn_recalibrated_on"] == 4  # all 4 calibration clips, in one forward


def test_gradual_pruning_raises_sparsity_epoch_by_epoch(model, tmp_path):
    seen = []
    base = _fake_finetune([])

    def finetune(module, epochs, lr, on_epoch=None, **kw):
        def watch(epoch):
            on_epoch(epoch)
            seen.append(sparsity(module)["overall"])
        return base(module, epochs, lr, on_epoch=watch, **kw)

    stage = prune(model, UnstructuredPruneConfig(sparsity=0.8, gradual_epochs=3), tmp_path,
                  finetune=finetune)
    assert seen[0] < seen[1] < seen[2] and abs(seen[2] - 0.8 * sparsity_share(model)) < 0.01
    assert abs(stage.details[-1]["reached_sparsity"] - 0.8) < 1e-3


def sparsity_share(model):
    """Share of the conv/linear weights that are pruned at all (the head is kept dense)."""
    total = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    return (total - model.head.weight.numel()) / total


@pytest.mark.slow
def test_qat_started_from_ptq_ranges_converts_to_the_ptq_ranges(model, tmp_path):
    """Before any training, QAT (init=ptq) quantizes activations exactly as min-max static PTQ does."""
    ptq = prune(model, StaticPTQConfig(observer="minmax"), tmp_path / "ptq")

    def no_training(module, epochs, lr, **kw):
        module.eval()
        return [{"epoch": 0, "val_score": 1.0}]

    qat = prune(model, QATConfig(), tmp_path / "qat", finetune=no_training)

    def activation_scales(gm):
        return [float(n.args[1]) for n in gm.graph.nodes
                if n.op == "call_function" and "quantize_per_tensor" in str(n.target)
                and not str(n.target).startswith("quantized_decomposed.dequantize")]

    a, b = activation_scales(ptq.module), activation_scales(qat.module)
    assert len(a) == len(b) > 20
    np.testing.assert_allclose(b, a, rtol=1e-5)
    assert qat.details[-1]["quantized_ops"] == ptq.details[-1]["quantized_ops"]
    x = torch.cat(clips(2, seed=3))
    diff = (run(qat.module, x) - run(ptq.module, x)).abs().max().item()
    assert diff < 1.0  # EF points: only BN-folding rounding differs


def test_a_prune_stack_equals_its_steps_by_hand(model, tmp_path):
    store = Store(tmp_path / "store")
    ctx = make_ctx(tmp_path, store=store)
    base, key = reference_stage(model, store, ctx)
    steps = (StructuredPruneConfig(ratio=0.5), StaticPTQConfig())
    built, _ = build(Recipe("s50-int8", steps), base, key, ctx, store,
                     lambda s: load_module(s, ctx.model_factory))
    s1 = prune(model, steps[0], tmp_path / "h1")
    s2 = apply(steps[1], s1, make_ctx(tmp_path / "h2"))
    x = torch.cat(clips(2, seed=4))
    assert torch.equal(run(load_module(built, None), x), run(s2.module, x))
    assert built.methods == ["structured-prune", "static-ptq"]
