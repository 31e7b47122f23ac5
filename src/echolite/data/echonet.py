"""EchoNet-Dynamic layout: FileList.csv, VolumeTracings.csv and Videos/, read into clips.

A dataset root holds:
  * ``FileList.csv``: FileName, EF, ESV, EDV, FrameHeight, FrameWidth, FPS, NumberOfFrames, Split
    (FileName with or without ``.avi``; Split TRAIN/VAL/TEST in any case);
  * ``VolumeTracings.csv`` (optional for training): FileName (with ``.avi``), X1, Y1, X2, Y2, Frame;
  * ``Videos/<FileName>.avi``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from echolite import EcholiteError
from echolite.data.augment import augment
from echolite.data.video import SAMPLINGS, clip_indices, read_frames, resize_frames

FILELIST = "FileList.csv"
TRACINGS = "VolumeTracings.csv"
VIDEOS = "Videos"
FILELIST_COLUMNS = (
    "FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split",
)
TRACING_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")
SPLITS = ("TRAIN", "VAL", "TEST")


def stem(file_name: str) -> str:
    """FileName without a trailing ``.avi`` (FileList has none in the real set)."""
    name = str(file_name).strip()
    return name[:-4] if name.lower().endswith(".avi") else name


def read_filelist(root: str | Path) -> pd.DataFrame:
    """FileList.csv with FileName as a stem and Split upper-cased. No validation (see validate)."""
    path = Path(root) / FILELIST
    if not path.is_file():
        raise EcholiteError(f"{path}: not found; a dataset root must hold {FILELIST}")
    df = pd.read_csv(path)
    if "FileName" in df:
        df["FileName"] = df["FileName"].map(stem)
    if "Split" in df:
        df["Split"] = df["Split"].astype(str).str.strip().str.upper()
    return df


def video_path(root: str | Path, file_name: str) -> Path:
    return Path(root) / VIDEOS / f"{stem(file_name)}.avi"




class EchoClips(torch.utils.data.Dataset):
    """Clips of one split as uint8 grey tensors (n_frames, 1, size, size), with their EF (%).

    Echocardiograms are grey: one channel is read (the model repeats it to the three its
    backbone takes), from the decoded-frame cache if one is given, else by decoding the AVI.

    Items are addressed either by an int (evaluation: deterministic frames) or by a tuple
    ``(index, seed)`` from :class:`echolite.data.sampler.EpochSampler` (training: random frames
    and an optional random shift, deterministic in the seed whatever the number of workers).

    Args:
        root: dataset root.
        table: FileList rows to use (already validated and filtered to one split).
        n_frames: frames per clip.
        size: model input height = width; other sizes are resized (area interpolation).
        shift_px: training augmentation: random translation of up to this many pixels.
        augment: training augmentation: strength of :func:`echolite.data.augment.augment`
            (appearance: grey map, blur, noise, sector cut, rotation/zoom); 0 = off.
        sampling: ``window`` (:func:`window_indices`, ``window_s`` seconds) or ``spread``
            (:func:`eval_indices` / :func:`train_indices` over the whole video).
        cache: a :class:`echolite.data.framecache.FrameCache` holding these videos, or None.
    """

    def __init__(self, root, table: pd.DataFrame, n_frames: int = 8, size: int = 112,
                 shift_px: int = 0, sampling: str = "window", window_s: float = 1.2, cache=None,
                 augment: float = 0.0):
        if sampling not in SAMPLINGS:
            raise EcholiteError(f"sampling must be one of {SAMPLINGS}, but got {sampling!r}")
        self.root = Path(root)
        self.table = table.reset_index(drop=True)
        self.n_frames, self.size, self.shift_px, self.augment = n_frames, size, shift_px, augment
        self.sampling, self.window_s, self.cache = sampling, window_s, cache
        self.fps = self.table["FPS"].to_numpy(np.float64)
        self.names = self.table["FileName"].tolist()
        self.ef = self.table["EF"].to_numpy(np.float32)
        self.lengths = self.table["NumberOfFrames"].to_numpy(np.int64)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, item):
        rng = None
        if isinstance(item, tuple):
            item, seed = item
            rng = np.random.default_rng(seed)
        idx = clip_indices(int(self.lengths[item]), self.n_frames, float(self.fps[item]), self.sampling,
                           self.window_s, rng)
        if self.cache is not None:
            frames = self.cache.clip(self.names[item], idx)  # (T, H, W), no decoding
        else:
            frames = read_frames(video_path(self.root, self.names[item]), idx, grey=True)  # (T, H, W)
        frames = resize_frames(frames, self.size)
        if rng is not None and self.shift_px > 0:
            frames = _random_shift(frames, self.shift_px, rng)
        if rng is not None and self.augment > 0:
            frames = augment(frames, rng, self.augment)
        clip = torch.from_numpy(np.ascontiguousarray(frames[:, None]))  # (T, 1, H, W)
        return clip, torch.tensor(self.ef[item])


def _random_shift(frames: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-pad by ``pad`` and crop back at a random offset (EchoNet's augmentation)."""
    t, h, w = frames.shape
    padded = np.zeros((t, h + 2 * pad, w + 2 * pad), frames.dtype)
    padded[:, pad : pad + h, pad : pad + w] = frames
    i, j = rng.integers(0, 2 * pad + 1, 2)
    return padded[:, i : i + h, j : j + w]


def pixel_stats(dataset: EchoClips, max_videos: int = 64, seed: int = 0) -> tuple[list, list]:
    """Mean and std (0..255 scale) of the grey frames of up to ``max_videos`` videos, repeated
    for the three channels the model's backbone takes."""
    rng = np.random.default_rng(seed)
    picks = rng.permutation(len(dataset))[:max_videos]
    total, total_sq, count = 0.0, 0.0, 0
    for i in picks:
        clip = dataset[int(i)][0].numpy().astype(np.float64)  # (T, 1, H, W)
        total += clip.sum()
        total_sq += (clip**2).sum()
        count += clip.size
    mean = float(total / count)
    std = float(np.sqrt(max(total_sq / count - mean**2, 1e-6)))
    return [mean] * 3, [std] * 3  # plain floats: checkpoints load with weights_only=True
