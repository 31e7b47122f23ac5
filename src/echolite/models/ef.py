"""EF regressor: a backbone per frame (ResNet-18 by default, any of :mod:`echolite.models.backbones`)
-> global average pool -> temporal pooling -> linear head; or a video backbone (R(2+1)D-18) on the
whole clip -> linear head.

Input: float (B, T, C, H, W) raw pixel values 0..255, C = 1 (grey, as echo is and as the data
pipeline delivers it) or 3; the model repeats a grey channel to the three the ResNet takes and
normalises the values itself, so a deployed artifact needs no preprocessing code.
Output: (B,) EF in percent.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from echolite import EcholiteError
from echolite.models.backbones import backbone, load_torchvision_weights


class MeanPool(nn.Module):
    """Average of the frame features over time: (B, T, F) -> (B, F). The inherited design."""

    out_mult = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


class MeanStdPool(nn.Module):
    """Mean and standard deviation over time: (B, T, F) -> (B, 2F).

    The std sees how much each feature swings over the cardiac cycle; EF is a ratio of the largest
    and smallest volume, which a mean over frames cannot separate from the average size.
    """

    out_mult = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1)
        std = (x - mean.unsqueeze(1)).pow(2).mean(dim=1).add(1e-6).sqrt()
        return torch.cat([mean, std], dim=1)


POOLINGS = {"mean": MeanPool, "meanstd": MeanStdPool}
CHANNELS = ("grey", "motion")  # what the backbone's three input channels carry (see EFRegressor)


class EFRegressor(nn.Module):
    """EF regressor with built-in input normalisation and output de-standardisation.

    The head predicts a standardised EF z; the output is ``ef_mean + ef_std * z``. The head bias
    starts at zero, so the effective output bias is ``ef_mean``, the TRAIN-split mean EF: the
    untrained model predicts about the mean and the loss works on a unit scale.

    The backbone takes three channels per frame. ``channels="grey"`` repeats the grey frame;
    ``"motion"`` gives it the frame, the frame minus the clip's mean frame (what moves over the
    cycle: the walls) and the frame minus the previous one (how it moves now), so the first layer
    already sees the motion EF is made of. Both are computed inside the model from the grey clip:
    a deployed artifact still takes plain frames.

    Args:
        pooling: key of :data:`POOLINGS`.
        pixel_mean, pixel_std: per-channel statistics of TRAIN frames (0..255 scale).
        ef_mean, ef_std: TRAIN-split EF statistics (%).
        channels: one of :data:`CHANNELS`.
        frame_size: frames are average-pooled to this size inside the model before anything else
            (a cheaper student on the same input); 0 = as given. The input size must be a multiple.
        arch: a key of :data:`echolite.models.backbones.BACKBONES`. A frame backbone runs on
            every frame and ``pooling`` pools its features over time; a video backbone
            (``r2plus1d_18``) takes the clip and pools time itself (``pooling`` is unused).
    """

    def __init__(self, pooling: str = "meanstd", pixel_mean=(0.0, 0.0, 0.0),
                 pixel_std=(1.0, 1.0, 1.0), ef_mean: float = 0.0, ef_std: float = 1.0,
                 channels: str = "grey", arch: str = "resnet18", frame_size: int = 0):
        super().__init__()
        if pooling not in POOLINGS:
            raise EcholiteError(f"pooling must be one of {sorted(POOLINGS)}, but got {pooling!r}")
        if channels not in CHANNELS:
            raise EcholiteError(f"channels must be one of {CHANNELS}, but got {channels!r}")
        self.channels = channels
        if channels == "motion":  # the two difference channels are centred on 0
            pixel_mean = (float(pixel_mean[0]), 0.0, 0.0)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("ef_mean", torch.tensor(float(ef_mean)))
        self.register_buffer("ef_std", torch.tensor(float(ef_std)))
        self.arch, self.frame_size = arch, int(frame_size)
        self.backbone, entry = backbone(arch)
        self.video = entry.video
        self.pool = MeanPool() if self.video else POOLINGS[pooling]()  # a video backbone pools time itself
        self.head = nn.Linear(entry.features * self.pool.out_mult, 1)
        nn.init.zeros_(self.head.bias)  # output starts at ef_mean (see class docstring)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        if self.frame_size and x.shape[-1] != self.frame_size:
            k = x.shape[-1] // self.frame_size
            if k * self.frame_size != x.shape[-1] or x.shape[-2] != x.shape[-1]:
                raise EcholiteError(f"frame_size {self.frame_size}: the input frames are {tuple(x.shape[-2:])}, "
                                    "not a square multiple of it")
            x = F.avg_pool2d(x.flatten(0, 1), k).view(b, t, x.shape[2], self.frame_size, self.frame_size)
        if self.channels == "motion":
            grey = x if x.shape[2] == 1 else x.mean(dim=2, keepdim=True)  # (B, T, 1, H, W)
            previous = torch.cat([grey[:, :1], grey[:, :-1]], dim=1)
            x = torch.cat([grey, grey - grey.mean(dim=1, keepdim=True), grey - previous], dim=2)
        frames = x.flatten(0, 1)  # (B*T, C, H, W)
        if frames.shape[1] == 1:
            frames = frames.expand(-1, 3, -1, -1)  # grey -> the 3 channels of the backbone
        frames = (frames - self.pixel_mean) / self.pixel_std  # (B*T, 3, H, W)
        if self.video:  # (B, 3, T, H, W) -> (B, 1, F)
            clip = frames.view(b, t, *frames.shape[1:]).transpose(1, 2)
            feats = self.backbone(clip).unsqueeze(1)
        else:
            feats = self.backbone(frames).view(b, t, -1)  # (B, T, F)
        z = self.head(self.pool(feats)).squeeze(1)  # (B,)
        return self.ef_mean + self.ef_std * z


STATS_BUFFERS = ("pixel_mean", "pixel_std", "ef_mean", "ef_std")  # the data's, never a checkpoint's


def load_pretrained_backbone(model: EFRegressor, path: str | Path) -> str:
    """Initialise ``model`` from a local file; returns what was loaded.

    Two kinds of file are accepted (nothing is ever downloaded):
      * an echolite checkpoint (``best.pt`` of a baseline, e.g. one trained on the phantom): every
        weight of the backbone, pooling and head (same architecture), keeping this model's own
        input and output statistics (those of the data it now trains on);
      * a torchvision ImageNet state dict of the model's backbone (``model.arch``; its
        classifier ignored).
    """
    path = Path(path)
    if not path.is_file():
        raise EcholiteError(f"--pretrained {path}: file not found (weights are never downloaded)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and "config" in state:  # an echolite checkpoint
        weights = {k: v for k, v in state["model"].items() if k not in STATS_BUFFERS}
        own = {k: v for k, v in model.state_dict().items() if k not in STATS_BUFFERS}
        wrong = [k for k in own if k not in weights or weights[k].shape != own[k].shape]
        if wrong or set(weights) - set(own):
            raise EcholiteError(f"--pretrained {path}: an echolite checkpoint of another architecture "
                                f"({len(wrong)} weights differ, e.g. {wrong[:2]}); use one of this model "
                                f"({model.arch}, pooling {type(model.pool).__name__})")
        made = state["config"].get("model") or {}  # checkpoints before the channels setting read grey
        if made and made.get("channels", "grey") != model.channels:
            raise EcholiteError(f"--pretrained {path}: its model reads {made.get('channels', 'grey')} channels, "
                                f"this one {model.channels} (same shapes, other meaning): set "
                                f"model.channels={made.get('channels', 'grey')} or use a checkpoint of "
                                f"{model.channels}")
        model.load_state_dict(weights, strict=False)
        return f"echolite checkpoint {path.name} (all weights; statistics of the new data kept)"
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EcholiteError(f"--pretrained {path}: neither an echolite checkpoint nor a torchvision {model.arch} "
                            "state dict")
    return load_torchvision_weights(model.backbone, model.arch, state, f"--pretrained {path}")
