"""EF regressor: ResNet-18 per frame -> global average pool -> temporal pooling -> linear head.

Input: float (B, T, C, H, W) raw pixel values 0..255, C = 1 (grey, as echo is and as the data
pipeline delivers it) or 3; the model repeats a grey channel to the three the ResNet takes and
normalises the values itself, so a deployed artifact needs no preprocessing code.
Output: (B,) EF in percent.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from echolite import EcholiteError

FEATURES = 512  # ResNet-18 penultimate width


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
    """ResNet-18 EF regressor with built-in input normalisation and output de-standardisation.

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
    """

    def __init__(self, pooling: str = "meanstd", pixel_mean=(0.0, 0.0, 0.0),
                 pixel_std=(1.0, 1.0, 1.0), ef_mean: float = 0.0, ef_std: float = 1.0,
                 channels: str = "grey"):
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
        backbone = torchvision.models.resnet18(weights=None)
        backbone.fc = nn.Identity()
        self.backbone = backbone
        self.pool = POOLINGS[pooling]()
        self.head = nn.Linear(FEATURES * self.pool.out_mult, 1)
        nn.init.zeros_(self.head.bias)  # output starts at ef_mean (see class docstring)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        if self.channels == "motion":
            grey = x if x.shape[2] == 1 else x.mean(dim=2, keepdim=True)  # (B, T, 1, H, W)
            previous = torch.cat([grey[:, :1], grey[:, :-1]], dim=1)
            x = torch.cat([grey, grey - grey.mean(dim=1, keepdim=True), grey - previous], dim=2)
        frames = x.flatten(0, 1)  # (B*T, C, H, W)
        if frames.shape[1] == 1:
            frames = frames.expand(-1, 3, -1, -1)  # grey -> the 3 channels of the backbone
        frames = (frames - self.pixel_mean) / self.pixel_std  # (B*T, 3, H, W)
        feats = self.backbone(frames).view(b, t, -1)  # (B, T, 512)
        z = self.head(self.pool(feats)).squeeze(1)  # (B,)
        return self.ef_mean + self.ef_std * z


STATS_BUFFERS = ("pixel_mean", "pixel_std", "ef_mean", "ef_std")  # the data's, never a checkpoint's


def load_pretrained_backbone(model: EFRegressor, path: str | Path) -> str:
    """Initialise ``model`` from a local file; returns what was loaded.

    Two kinds of file are accepted (nothing is ever downloaded):
      * an echolite checkpoint (``best.pt`` of a baseline, e.g. one trained on the phantom): every
        weight of the backbone, pooling and head (same architecture), keeping this model's own
        input and output statistics (those of the data it now trains on);
      * a torchvision ResNet-18 ImageNet state dict: the backbone (``fc`` ignored).
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
                                f"({type(model).__name__}, pooling {type(model.pool).__name__})")
        made = state["config"].get("model") or {}  # checkpoints before the channels setting read grey
        if made and made.get("channels", "grey") != model.channels:
            raise EcholiteError(f"--pretrained {path}: its model reads {made.get('channels', 'grey')} channels, "
                                f"this one {model.channels} (same shapes, other meaning): set "
                                f"model.channels={made.get('channels', 'grey')} or use a checkpoint of "
                                f"{model.channels}")
        model.load_state_dict(weights, strict=False)
        return f"echolite checkpoint {path.name} (all weights; statistics of the new data kept)"
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = model.backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise EcholiteError(
            f"--pretrained {path}: neither an echolite checkpoint nor a torchvision resnet18 state dict "
            f"(missing {missing[:3]}..., unexpected {unexpected[:3]}...)"
        )
    return f"torchvision ResNet-18 state dict {path.name} (backbone)"
