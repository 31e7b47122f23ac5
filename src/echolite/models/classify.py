"""Image classifiers for 32×32 inputs: the tutorial-size CNN (and its half-width student), a
CIFAR-style ResNet-18, and the backbones of :mod:`echolite.models.backbones` with a 32×32 stem.

Input: float (B, 3, 32, 32) raw pixel values 0..255; the models normalise with buffers holding
the TRAIN per-channel statistics, so a deployed artifact needs no preprocessing code.
Output: (B, classes) logits.
"""

from __future__ import annotations

import functools

import torch
import torchvision
from torch import nn

from echolite import EcholiteError
from echolite.models.backbones import BACKBONES, backbone


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class TutorialCNN(nn.Module):
    """conv-BN-ReLU ×5 with max-pooling, then a 2-layer classifier: ~0.6 M parameters (2.6 MB fp32),
    the size of the widely read PyTorch CIFAR-10 quantization tutorial's network."""

    def __init__(self, classes: int = 10, mean=(0.0,) * 3, std=(1.0,) * 3, width: float = 1.0):
        super().__init__()
        a, b, c, h = (max(8, round(width * n)) for n in (32, 64, 128, 256))
        self.normalize = Normalize(mean, std)
        self.features = nn.Sequential(
            *_block(3, a), *_block(a, a), nn.MaxPool2d(2),  # 16×16
            *_block(a, b), *_block(b, b), nn.MaxPool2d(2),  # 8×8
            *_block(b, c), nn.MaxPool2d(2),  # 4×4
        )
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(c * 4 * 4, h)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(h, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.flatten(self.features(self.normalize(x)))  # (B, 16 c)
        return self.fc(self.relu(self.fc1(h)))  # (B, classes)


class ResNet18CIFAR(nn.Module):
    """torchvision's ResNet-18 with the CIFAR stem: a 3×3 stride-1 first conv and no max-pool."""

    def __init__(self, classes: int = 10, mean=(0.0,) * 3, std=(1.0,) * 3):
        super().__init__()
        self.normalize = Normalize(mean, std)
        net = torchvision.models.resnet18(weights=None, num_classes=classes)
        net.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


class BackboneClassifier(nn.Module):
    """A backbone of :mod:`echolite.models.backbones` with its 32×32 stem and a linear head."""

    def __init__(self, arch: str, classes: int = 10, mean=(0.0,) * 3, std=(1.0,) * 3):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.backbone, entry = backbone(arch, small_input=True, video_ok=False)
        self.head = nn.Linear(entry.features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.normalize(x)))


ARCHS = {"tutorial-cnn": TutorialCNN, "resnet18-cifar": ResNet18CIFAR,
         "small-cnn": functools.partial(TutorialCNN, width=0.5)}
ARCHS.update({a: functools.partial(BackboneClassifier, a) for a, b in BACKBONES.items()
              if not b.video and a != "resnet18"})
CLASSIFIERS = tuple(ARCHS)
OUTPUT_LAYERS = {a: ("fc",) if a in ("tutorial-cnn", "small-cnn") else ("net.fc",) if a == "resnet18-cifar"
                 else ("head",) for a in ARCHS}


def build_classifier(arch: str, classes: int, mean=(0.0,) * 3, std=(1.0,) * 3) -> nn.Module:
    if arch not in ARCHS:
        raise EcholiteError(f"model.arch must be one of {', '.join(ARCHS)}, but got {arch!r}")
    return ARCHS[arch](classes=classes, mean=mean, std=std)
