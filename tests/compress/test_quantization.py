"""The compression engine on the real ResNet-18 EF model (small frames to stay fast)."""

import numpy as np
import pytest
import torch
from ef_inputs import SIZE, clips, ef_model

from echolite.compress import (
    CompressionError,
    Context,
    DynamicPTQConfig,
    ExecuTorchConfig,
    NNCFConfig,
    OnnxRuntimeConfig,
    OrtStaticConfig,
    QATConfig,
    Stage,
    StaticPTQConfig,
    apply,
)
from echolite.compress.base import save_weights
from echolite.compress.runners import open_runner
from echolite.measure.size import file_bytes, state_dict_bytes

N_CONVS, N_ADDS = 20, 8  # ResNet-18: 20 convolutions (3 downsample), 8 residual additions


@pytest.fixture(scope="module")
def model():
    return ef_model(spread_bn=False)


def ctx(tmp_path, calib=None, finetune=None):
    calib = clips(4) if calib is None else calib
    return Context(example_input=clips(1, seed=9)[0], calibration=lambda: iter(calib),
                   work_dir=tmp_path, finetune=finetune, threads=2, input_name="clips")


def compress(model, config, c):
    """One step applied to a float model (the reference stage, saved like the engine saves it)."""
    c.work_dir.mkdir(parents=True, exist_ok=True)
    stage = Stage(model, artifacts={"state_dict": save_weights(model, c.work_dir)})
    return apply(config, stage, c)


def test_static_ptq_quantizes_the_whole_network(model, tmp_path):
    v = compress(model, StaticPTQConfig(observer="minmax"), ctx(tmp_path))
    q = v.details[-1]["quantized_ops"]
    assert q["conv_int8"] == q["conv_total"] == N_CONVS
    assert q["add_int8"] == N_ADDS and q["linear_int8"] == 1  # residual adds and head too
    assert v.precision == "int8" and v.runtime == "torch.compile-inductor"
    assert set(v.artifacts) == {"pt2"}
    assert state_dict_bytes(v.module) <= 0.27 * state_dict_bytes(model)
    assert file_bytes(v.artifacts["pt2"]) <= 0.35 * state_dict_bytes(model)
    x = torch.cat(clips(3, seed=5))
    with torch.no_grad():
        diff = (v.module(x) - model(x)).abs().max().item()
    assert 0 < diff < 3.0  # really quantized, yet close to fp32 (EF points)


@pytest.mark.parametrize("observer", ["histogram", "percentile"])
def test_other_observers(model, tmp_path, observer):
    v = compress(model, StaticPTQConfig(observer=observer, per_channel=False), ctx(tmp_path))
    d = v.details[-1]
    assert d["quantized_ops"]["conv_int8"] == N_CONVS
    assert d["observer"] == observer and "per-tensor" in d["weights"]


def test_keep_fp32_leaves_that_layer_in_float(model, tmp_path):
    v = compress(model, StaticPTQConfig(keep_fp32=("backbone.conv1",)), ctx(tmp_path))
    assert v.details[-1]["quantized_ops"]["conv_int8"] == N_CONVS - 1


def test_dynamic_covers_only_linear(model, tmp_path):
    v = compress(model, DynamicPTQConfig(), ctx(tmp_path))
    q = v.details[-1]["quantized_ops"]
    assert q == {"linear_int8": 1, "conv_int8": 0, "conv_total": N_CONVS}
    assert v.details[-1]["covered_modules"] == ["head"] and v.precision == "int8 (Linear only)"
    x = clips(1)[0]
    run = open_runner(v, None, 2)  # from its .pt2 file
    assert abs(run(x).item() - model(x).item()) < 1.0


@pytest.mark.parametrize("calib, message", [([], "calibration set is empty")])
def test_broken_calibration_set_is_a_clear_error(model, tmp_path, calib, message):
    with pytest.raises(CompressionError, match=message):
        compress(model, StaticPTQConfig(), ctx(tmp_path, calib=calib))
    with pytest.raises(CompressionError, match=message):
        compress(model, OrtStaticConfig(), ctx(tmp_path / "ort", calib=calib))


def test_wrong_calibration_shape_fails_loudly(model, tmp_path):
    bad = [torch.rand(1, 8, 3, SIZE + 1)]
    with pytest.raises(CompressionError, match=r"calibration batch 1 of shape \(1, 8, 3, 65\) does not run"):
        compress(model, StaticPTQConfig(), ctx(tmp_path, calib=bad))


@pytest.mark.slow
def test_qat_converts_to_the_same_artifact_as_ptq(model, tmp_path):
    steps = []

    def finetune(module, epochs, lr, on_epoch=None, max_items=0, keep_best=True, mixed_precision=True):
        module.train()
        if on_epoch:
            on_epoch(0)
        opt = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=lr)
        for x in clips(2, seed=3):
            loss = (module(x) - 50.0).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps.append(loss.item())
        return [{"epoch": 1, "val_score": 0.0}]

    ptq = compress(model, StaticPTQConfig(), ctx(tmp_path / "ptq"))
    qat = compress(model, QATConfig(epochs=1, lr=1e-6), ctx(tmp_path / "qat", finetune=finetune))
    assert len(steps) == 2
    assert isinstance(qat.module, torch.fx.GraphModule)
    assert isinstance(ptq.module, torch.fx.GraphModule)
    for v in (qat, ptq):
        assert (v.precision, v.runtime, set(v.artifacts)) == ("int8", "torch.compile-inductor", {"pt2"})
    assert qat.details[-1]["quantized_ops"] == ptq.details[-1]["quantized_ops"]


def test_onnxruntime_fp32_and_static_int8(model, tmp_path):
    fp32 = compress(model, OnnxRuntimeConfig(), ctx(tmp_path / "fp32"))
    int8 = compress(model, OrtStaticConfig(calibrator="minmax"), ctx(tmp_path / "int8"))
    x = torch.cat(clips(2, seed=7))
    with torch.no_grad():
        ref = model(x).numpy()
    np.testing.assert_allclose(open_runner(fp32, None, 2)(x).numpy(), ref, atol=1e-3)
    assert int8.details[-1]["runtime_int8_ops"]["QLinearConv"] == N_CONVS  # what ORT really runs
    assert int8.details[-1]["int8_convs"] == N_CONVS and int8.details[-1]["float_convs"] == 0
    assert file_bytes(int8.artifacts["onnx"]) <= 0.27 * file_bytes(fp32.artifacts["onnx"])
    assert np.abs(open_runner(int8, None, 2)(x).numpy() - ref).max() < 3.0


def test_openvino_runs_the_same_qdq_file_in_int8(model, tmp_path):
    ort = compress(model, OrtStaticConfig(), ctx(tmp_path / "ort"))
    ov = compress(model, OrtStaticConfig(runtime="openvino"), ctx(tmp_path / "ov"))
    d = ov.details[-1]
    assert ov.runtime == "openvino-cpu" and d["int8_convs"] == N_CONVS and d["float_convs"] == 0
    x = torch.cat(clips(2, seed=7))
    a, b = open_runner(ort, None, 2)(x), open_runner(ov, None, 2)(x)
    assert (a - b).abs().max().item() < 0.5  # one QDQ model, two runtimes (EF points)


def test_nncf_quantizes_every_conv_in_openvinos_own_ir(model, tmp_path):
    """PyTorch -> openvino.convert_model -> nncf.quantize: OpenVINO runs all 20 convs in int8 (its own
    runtime precisions), the IR's size counts its .bin, and it predicts like the float model."""
    stage = compress(model, NNCFConfig(), ctx(tmp_path))
    d = stage.details[-1]
    assert stage.runtime == "openvino-cpu" and stage.precision == "int8"
    assert d["int8_convs"] == N_CONVS and d["float_convs"] == 0 and d["calibration_items"] == 4
    xml = stage.artifacts["openvino"]
    assert xml.suffix == ".xml" and file_bytes(xml) == xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
    assert file_bytes(xml) <= 0.3 * state_dict_bytes(model)
    x = torch.cat(clips(2, seed=7))  # batch 2: the IR's batch dimension is dynamic
    with torch.no_grad():
        ref = model(x)
    assert (open_runner(stage, None, 2)(x) - ref).abs().max().item() < 3.0


def test_nncf_accuracy_control_returns_layers_to_float_until_the_budget(model, tmp_path):
    """quantize_with_accuracy_control against the task's metric (MAE, lower is better, negated for
    NNCF): with an unreachable budget it returns layers to float, at most max_iterations, the row says
    how many convs OpenVINO runs in float, and the record holds MAEs over all items (not NNCF's
    single-item probes) and that the budget was not reached."""
    val = torch.cat(clips(6, seed=11))
    offsets = np.array([1.0, -5.0, 4.0, -4.0, 6.0, -6.0])  # item 0's error (1) is not the mean (4.33)
    with torch.no_grad():
        float_pred = model(val).numpy().astype(np.float64)
    targets = float_pred + offsets

    def validation(n):
        return val, targets, lambda y, out: float(np.mean(np.abs(np.asarray(y) - out.reshape(-1).double().numpy())))

    c = ctx(tmp_path)
    c.validation, c.budget, c.higher_is_better = validation, (1e-6, True), False
    config = NNCFConfig(accuracy_control=True, max_iterations=2)
    assert config.uses_budget and not NNCFConfig(accuracy_control=True, max_drop=0.1).uses_budget
    stage = compress(model, config, c)
    d = stage.details[-1]
    ac = d["accuracy_control"]
    assert ac["drop_type"] == "relative" and ac["max_drop"] == 1e-6 and ac["items"] == 6
    assert ac["float_score"] == pytest.approx(np.abs(offsets).mean(), abs=2e-3)  # the OpenVINO float model
    final = open_runner(stage, None, 2)(val).reshape(-1).double().numpy()  # the saved IR, scored by hand
    assert ac["final_score"] == pytest.approx(np.abs(targets - final).mean(), abs=1e-4)
    assert ac["drop"] == pytest.approx(ac["final_score"] / ac["float_score"] - 1, abs=1e-9)
    assert ac["reached_budget"] is (ac["drop"] <= 1e-6) and ac["full_validations"] >= 1
    assert 1 <= d["float_convs"] <= 2 and d["int8_convs"] == N_CONVS - d["float_convs"]
    n = ac["removed_quantizers"]  # FakeQuantize nodes: NNCF's plain quantization minus what it returned
    assert n >= 1 and ac["int8_runtime_ops_lost"].get("Convolution", 0) == d["float_convs"]
    assert stage.precision == (f"int8 ({d['float_convs']} of {N_CONVS} convs fp32) ({n} quantizer(s) removed by "
                               "accuracy control)")


def test_executorch_lowers_every_int8_conv_to_xnnpack(model, tmp_path):
    """XNNPACKQuantizer -> .pte with the XNNPACK delegate: every conv int8 (counted in the PT2E
    graph), none left outside the delegate; the .pte runs here (x86) like the float model, and a
    batch runs item by item (the program's shape is static)."""
    stage = compress(model, ExecuTorchConfig(), ctx(tmp_path))
    d = stage.details[-1]
    assert stage.runtime == "executorch-xnnpack" and stage.precision == "int8"
    assert d["quantized_ops"]["conv_int8"] == d["quantized_ops"]["conv_total"] == N_CONVS
    assert d["xnnpack_partitions"] >= 1 and not any("conv" in k for k in d["ops_outside_xnnpack"])
    assert "x86" in d["timed_on"] and file_bytes(stage.artifacts["pte"]) <= 0.3 * state_dict_bytes(model)
    x = torch.cat(clips(2, seed=7))
    with torch.no_grad():
        ref = model(x)
    run = open_runner(stage, None, 2)
    y = run(x)
    assert y.shape == ref.shape and (y - ref).abs().max().item() < 3.0
    assert torch.allclose(y[1:], run(x[1:]))


@pytest.mark.slow
def test_pt2e_program_exported_to_onnx_is_labelled_mixed_precision(model, tmp_path):
    """The PT2E int8 graph in ORT keeps the convs feeding residual adds in float: say how many."""
    c = ctx(tmp_path / "ptq")
    ptq = compress(model, StaticPTQConfig(), c)
    ort = apply(OnnxRuntimeConfig(), ptq, ctx(tmp_path / "ort"))
    n_int8 = ort.details[-1]["runtime_int8_ops"].get("QLinearConv", 0)
    assert 0 < n_int8 < N_CONVS
    assert ort.precision == f"mixed int8/fp32 ({n_int8} of {N_CONVS} convs int8)"
    x = torch.cat(clips(2, seed=7))
    with torch.no_grad():
        parity = (open_runner(ort, None, 2)(x) - ptq.module(x)).abs().max().item()
    assert parity < 0.5  # the same int8 graph in two runtimes (EF points)


def test_engine_is_task_agnostic(tmp_path):
    """A plain image classifier (CIFAR-like) goes through the same verb."""
    import torchvision

    net = torchvision.models.resnet18(num_classes=10).eval()
    calib = [torch.rand(2, 3, 32, 32) for _ in range(2)]
    c = Context(example_input=torch.rand(1, 3, 32, 32), calibration=lambda: iter(calib), work_dir=tmp_path)
    v = compress(net, StaticPTQConfig(observer="minmax"), c)
    assert v.details[-1]["quantized_ops"]["conv_int8"] == N_CONVS
    assert v.module(torch.rand(3, 3, 32, 32)).shape == (3, 10)


LOAD_AND_RUN = """
import sys, torch
from torch._dynamo.utils import counters
from echolite.compress.backends.pt2e import compile_for_cpu, load_program
module = load_program(sys.argv[1])
run = compile_for_cpu(module)
print(tuple(run(torch.rand(1, 8, 3, 64, 64) * 255).shape),
      counters["inductor"]["qconv_weight_prepack_matcher_count"],
      counters["inductor"]["qlinear_weight_prepack_matcher_count"])
"""


@pytest.mark.slow
def test_saved_int8_program_runs_int8_kernels_in_a_fresh_process(model, tmp_path):
    """The .pt2 artifact, loaded where no quantizer was ever imported, lowers to int8 kernels."""
    import subprocess
    import sys

    v = compress(model, StaticPTQConfig(), ctx(tmp_path))
    out = subprocess.run([sys.executable, "-c", LOAD_AND_RUN, str(v.artifacts["pt2"])],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    *_, shape, qconv, qlinear = out.stdout.split()
    # every conv becomes a oneDNN int8 conv; (the 1024->1 head is not matched by the qlinear
    # pass and runs on dequantized weights: negligible work)
    assert shape == "(1,)" and int(qconv) == N_CONVS
