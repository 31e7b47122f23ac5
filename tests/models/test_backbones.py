"""The backbone registry: every architecture of both tasks builds, runs, exports and quantizes on a
tiny input, and what quantizes is counted op by op (depthwise convolutions, squeeze-excitation and
hardswish blocks included); what does not quantize is a failure, never a model labelled int8."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from echolite.compress import CompressionError, Context, OrtStaticConfig, Stage, StaticPTQConfig, apply
from echolite.compress.base import save_weights
from echolite.compress.runners import open_runner, rebuild_from_state_dict
from echolite.models.backbones import BACKBONES
from echolite.models.classify import CLASSIFIERS, build_classifier
from echolite.models.ef import EFRegressor

EF_ARCHS = list(BACKBONES)
NEW_CLASSIFIERS = [a for a in CLASSIFIERS if a not in ("tutorial-cnn", "resnet18-cifar")]


def ef(arch: str, frame_size: int = 0) -> EFRegressor:
    torch.manual_seed(0)
    m = EFRegressor("meanstd", (40.0,) * 3, (50.0,) * 3, 56.0, 12.0, "motion", arch, frame_size)
    with torch.no_grad():  # realistic BatchNorm statistics
        m.train()(torch.rand(2, 4, 1, 32, 32) * 255)
    return m.eval()


def clips(n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(1, 4, 1, 32, 32, generator=g) * 255 for _ in range(n)]


def convs(model: nn.Module) -> int:
    """Convolutions counted from the module tree (independent of any quantizer's report)."""
    return sum(isinstance(m, nn.Conv2d | nn.Conv3d) for m in model.modules())


def quantize(model, config, tmp_path, calib):
    tmp_path.mkdir(parents=True, exist_ok=True)
    c = Context(example_input=calib[0], calibration=lambda: iter(calib), work_dir=tmp_path, threads=2,
                input_name="x")
    return apply(config, Stage(model, artifacts={"state_dict": save_weights(model, tmp_path)}), c)


# each op family once: depthwise + hardswish + SE (and OpenVINO on it), SiLU + SE, plain convs, Conv3d.
# resnet18's QDQ/OpenVINO counts are tested in tests/compress/test_quantization.py; mobilenet_v3_large
# has mobilenet_v3_small's blocks (both build and run below).
QUANTIZED_HERE = ("mobilenet_v3_small", "efficientnet_b0", "plain-cnn", "r2plus1d_18")


@pytest.mark.parametrize("arch", EF_ARCHS)
def test_every_ef_arch_runs_exports_and_quantizes_every_conv(arch, tmp_path):
    """Every arch builds and runs; ONNX Runtime QDQ quantizes every conv of each op family, OpenVINO
    runs the depthwise/hardswish/SE network's QDQ file in int8."""
    model = ef(arch)
    x = torch.cat(clips(2, seed=3))
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2,) and torch.isfinite(y).all()
    n = convs(model)
    depthwise = sum(isinstance(m, nn.Conv2d) and m.groups > 1 for m in model.modules())
    assert (depthwise > 0) == (arch in ("mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0"))
    if arch not in QUANTIZED_HERE:
        return
    for runtime in ("onnxruntime", "openvino") if arch == "mobilenet_v3_small" else ("onnxruntime",):
        v = quantize(model, OrtStaticConfig(runtime=runtime), tmp_path / runtime, clips(3))
        d = v.details[-1]
        assert (d["int8_convs"], d["float_convs"]) == (n, 0), (runtime, d["int8_convs"], d["float_convs"])
        assert v.precision == "int8"
        with torch.no_grad():
            out = open_runner(v, None, 2)(x)
        assert (out - y).abs().max() < 8.0  # EF points: quantized, not broken


@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "plain-cnn", "r2plus1d_18"])
def test_pt2e_quantizes_every_2d_conv_and_refuses_a_3d_network(arch, tmp_path):
    """(ResNet-18's PT2E counts are tested in tests/compress/test_quantization.py.)"""
    model = ef(arch)
    if BACKBONES[arch].video:  # X86InductorQuantizer annotates no Conv3d: a failed row, not "int8"
        with pytest.raises(CompressionError, match=f"only 0 of {convs(model)} convs quantized"):
            quantize(model, StaticPTQConfig(observer="minmax"), tmp_path, clips(2))
        return
    q = quantize(model, StaticPTQConfig(observer="minmax"), tmp_path, clips(2)).details[-1]["quantized_ops"]
    assert q["conv_int8"] == q["conv_total"] == convs(model) and q["linear_int8"] == 1


@pytest.mark.parametrize("arch", NEW_CLASSIFIERS)
def test_every_new_classifier_fits_32x32_and_quantizes(arch, tmp_path):
    """Every classifier runs at 32×32; the presets' student is quantized too (the torchvision ones
    share their blocks with the EF backbones quantized above)."""
    torch.manual_seed(0)
    model = build_classifier(arch, 10, (120.0,) * 3, (60.0,) * 3)
    with torch.no_grad():
        model.train()(torch.rand(4, 3, 32, 32) * 255)
    model.eval()
    calib = [torch.rand(1, 3, 32, 32) * 255 for _ in range(3)]
    with torch.no_grad():
        assert model(torch.cat(calib)).shape == (3, 10)
    if arch == "small-cnn":  # the presets' student; the torchvision blocks are quantized above
        d = quantize(model, OrtStaticConfig(), tmp_path, calib).details[-1]
        assert (d["int8_convs"], d["float_convs"]) == (convs(model), 0)


def test_frame_size_pools_frames_inside_the_model():
    small, full = ef("plain-cnn", frame_size=16), ef("plain-cnn")
    full.load_state_dict(small.state_dict())
    x = clips(1)[0]
    pooled = F.avg_pool2d(x.flatten(0, 1), 2).view(1, 4, 1, 16, 16)  # by hand
    with torch.no_grad():
        assert torch.allclose(small(x), full(pooled), atol=1e-5)
    with pytest.raises(Exception, match="not a square multiple"):
        small(torch.rand(1, 4, 1, 30, 30))


def test_a_pruned_mobilenet_reloads_from_its_state_dict():
    """Depthwise convolutions narrowed by channel pruning are re-created at their saved width."""
    import torch_pruning as tp

    model = ef("mobilenet_v3_small")
    example = torch.cat(clips(2))
    pruner = tp.pruner.MetaPruner(model, example_inputs=example, importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=0.5, ignored_layers=[model.head], round_to=8)
    pruner.step()
    state = model.state_dict()
    fresh = rebuild_from_state_dict(ef("mobilenet_v3_small"), state).eval()
    with torch.no_grad():
        assert torch.equal(fresh(example), model.eval()(example))
    assert convs(fresh) == convs(model)
