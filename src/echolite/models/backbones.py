"""The backbone registry: every architecture a task can be built on (``model.arch``), by name.

A *frame* backbone maps images (N, 3, H, W) to features (N, F); a *video* backbone maps clips
(N, 3, T, H, W) to features (N, F). The torchvision networks keep torchvision's module names (their
classifier replaced by an identity), so a torchvision ImageNet state dict loads into them from a
local file (:func:`load_torchvision_weights`); nothing is ever downloaded.

``small_input=True`` adapts a backbone to 32×32 images (CIFAR): the stem keeps full resolution
(stride 1, no max-pool), as the CIFAR variants of these networks do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision
from torch import nn

from echolite import EcholiteError


@dataclass(frozen=True)
class Backbone:
    """An entry of the registry.

    Attributes:
        name: the ``model.arch`` value.
        features: width of the feature vector the backbone returns.
        video: takes clips (N, 3, T, H, W) instead of frames.
        make: ``make(small_input) -> nn.Module``.
        torchvision: the torchvision builder whose state dicts load into it (None: our own).
        note: one line for ``echolite settings`` and the README.
    """

    name: str
    features: int
    video: bool
    make: Callable[[bool], nn.Module]
    torchvision: str | None
    note: str


def _resnet18(small_input: bool) -> nn.Module:
    net = torchvision.models.resnet18(weights=None)
    if small_input:
        net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net


def _mobilenet(builder: Callable) -> Callable[[bool], nn.Module]:
    def make(small_input: bool) -> nn.Module:
        net = builder(weights=None)
        if small_input:
            net.features[0][0].stride = (1, 1)
        net.classifier = nn.Identity()  # features -> global pool -> flatten: (N, last channels)
        return net

    return make


def _r2plus1d_18(small_input: bool) -> nn.Module:
    net = torchvision.models.video.r2plus1d_18(weights=None)
    net.fc = nn.Identity()
    return net


class PlainCNN(nn.Module):
    """A small plain-convolution student (conv-BN-ReLU, stride-2 stages, no depthwise, no SE):
    every op quantizes and fuses on every INT8 runtime. Widths 16-32-64-128, two convolutions per
    stage: ≈ 0.29 M parameters, ≈ 41 M MACs per 112×112 frame (ResNet-18: 11.2 M, 0.45 G)."""

    def __init__(self, small_input: bool = False, widths=(16, 32, 64, 128)):
        super().__init__()
        layers, c_in = [], 3
        for i, c in enumerate(widths):
            stride = 1 if (small_input and i == 0) else 2
            layers += [nn.Conv2d(c_in, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.pool(self.features(x)))


BACKBONES: dict[str, Backbone] = {b.name: b for b in (
    Backbone("resnet18", 512, False, _resnet18, "resnet18", "ResNet-18 per frame (the reference)"),
    Backbone("mobilenet_v3_small", 576, False, _mobilenet(torchvision.models.mobilenet_v3_small),
             "mobilenet_v3_small", "MobileNetV3-Small per frame (depthwise, hardswish, squeeze-excitation)"),
    Backbone("mobilenet_v3_large", 960, False, _mobilenet(torchvision.models.mobilenet_v3_large),
             "mobilenet_v3_large", "MobileNetV3-Large per frame"),
    Backbone("efficientnet_b0", 1280, False, _mobilenet(torchvision.models.efficientnet_b0),
             "efficientnet_b0", "EfficientNet-B0 per frame (depthwise, SiLU, squeeze-excitation)"),
    Backbone("plain-cnn", 128, False, PlainCNN, None,
             "a small plain-conv student (Echo-E3Net-sized; our own, no pretrained weights)"),
    Backbone("r2plus1d_18", 512, True, _r2plus1d_18, "r2plus1d_18",
             "R(2+1)D-18 on the clip (EchoNet-Dynamic's reference video network; heavy on a CPU)"),
)}
ARCHS = tuple(BACKBONES)


def backbone(arch: str, small_input: bool = False, video_ok: bool = True) -> tuple[nn.Module, Backbone]:
    """A fresh backbone of ``arch`` (random weights) and its registry entry."""
    if arch not in BACKBONES or (BACKBONES[arch].video and not video_ok):
        known = [a for a, b in BACKBONES.items() if video_ok or not b.video]
        raise EcholiteError(f"model.arch must be one of {', '.join(known)}, but got {arch!r}")
    entry = BACKBONES[arch]
    return entry.make(small_input), entry


def load_torchvision_weights(module: nn.Module, arch: str, state: dict, source: str) -> str:
    """Load a torchvision ImageNet state dict of ``arch`` into the backbone ``module``; returns
    what was loaded. Every backbone tensor must be there with its shape (BatchNorm's
    ``num_batches_tracked`` counters excepted: older files lack them); only the classifier
    (``fc.``/``classifier.``) is ignored. Anything else is a one-line error naming ``source``."""
    entry = BACKBONES[arch]
    if entry.torchvision is None:
        raise EcholiteError(f"{source}: {arch} is echolite's own network: it has no torchvision weights")
    own = module.state_dict()
    head = ("fc.", "classifier.")
    wanted = [k for k in own if not k.startswith(head) and not k.endswith("num_batches_tracked")]
    wrong = [k for k in wanted if k not in state or tuple(state[k].shape) != tuple(own[k].shape)]
    unexpected = [k for k in state if k not in own and not k.startswith(head)]
    if wrong or unexpected:
        raise EcholiteError(f"{source}: neither an echolite checkpoint nor a torchvision {arch} state dict "
                            f"({len(wrong)} of {len(wanted)} backbone tensors missing or of another shape, e.g. "
                            f"{wrong[:2]}; unexpected {unexpected[:2]})")
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return f"torchvision {arch} state dict ({len(wanted)} tensors)"
