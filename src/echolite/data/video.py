"""Video file IO with OpenCV (as EchoNet-Dynamic does): probe, read selected frames, write MJPG AVI;
and which frames make a clip (the samplers training, evaluation and ``echolite predict`` share).

Torch-free on purpose (numpy and OpenCV only): an export bundle carries this file unchanged, so a
deployed model reads videos exactly as training did (see :mod:`echolite.deploy.runner`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from echolite import EcholiteError

MJPG_QUALITY = 95  # JPEG quality of written frames; speckle survives, files stay ~5 kB/frame


@dataclass(frozen=True)
class VideoInfo:
    n_frames: int  # as declared by the container header
    height: int
    width: int
    fps: float


def probe_video(path: str | Path) -> VideoInfo:
    """Read the header of a video without decoding it.

    Raises:
        EcholiteError: the file cannot be opened as a video.
    """
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise EcholiteError(f"{path}: cannot be opened as a video (missing or corrupt)")
        return VideoInfo(
            n_frames=int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
            height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            fps=float(cap.get(cv2.CAP_PROP_FPS)),
        )
    finally:
        cap.release()


def to_grey(frame: np.ndarray) -> np.ndarray:
    """One decoded frame (H, W, 3) BGR or (H, W) as (H, W) uint8 grey: the one conversion both the
    decoder path and the decoded-frame cache use (ITU-R BT.601 luma; exact for grey video)."""
    return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def read_frames(path: str | Path, indices: np.ndarray | None = None, grey: bool = False) -> np.ndarray:
    """Decode frames of a video as RGB, or as grey with ``grey``.

    Args:
        path: video file.
        indices: frame indices to return (any order, repeats allowed); ``None`` reads all frames.
            Frames that are not needed are skipped by seeking (MJPG: every frame is a key frame)
            or grabbed without colour conversion when the gap is small.

    Returns:
        uint8 array (len(indices), height, width, 3) RGB, or (len(indices), height, width) grey.

    Raises:
        EcholiteError: the file cannot be opened or a requested frame cannot be decoded.
    """
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise EcholiteError(f"{path}: cannot be opened as a video (missing or corrupt)")
    try:
        if indices is None:
            frames = []
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                frames.append(frame)
            if not frames:
                raise EcholiteError(f"{path}: video has no decodable frames")
            return _finish(frames, grey)
        indices = np.asarray(indices, dtype=np.int64)
        wanted = np.unique(indices)
        decoded: dict[int, np.ndarray] = {}
        position = 0  # index of the frame the next read() returns
        for idx in wanted:
            gap = int(idx) - position
            if gap > 4:
                cap.set(cv2.CAP_PROP_POS_FRAMES, int(idx))
            else:
                for _ in range(gap):
                    cap.grab()
            ok, frame = cap.read()
            if not ok:
                raise EcholiteError(
                    f"{path}: frame {int(idx)} cannot be decoded (video shorter than declared?)"
                )
            decoded[int(idx)] = frame
            position = int(idx) + 1
        return _finish([decoded[int(i)] for i in indices], grey)
    finally:
        cap.release()


def _finish(frames: list[np.ndarray], grey: bool) -> np.ndarray:
    if grey:
        return np.stack([to_grey(f) for f in frames])
    return np.stack(frames)[..., ::-1].copy()  # BGR -> RGB


def eval_indices(n_video_frames: int, n_frames: int) -> np.ndarray:
    """``n_frames`` indices evenly spread over the whole video (repeats when it is shorter)."""
    return np.round(np.linspace(0, n_video_frames - 1, n_frames)).astype(np.int64)


def train_indices(n_video_frames: int, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Stratified random indices: one uniformly drawn frame in each of ``n_frames`` equal segments.

    Covers the whole video like :func:`eval_indices`, with a random temporal offset per frame.
    """
    edges = np.linspace(0, n_video_frames, n_frames + 1)
    picks = edges[:-1] + rng.random(n_frames) * (edges[1:] - edges[:-1])
    return np.clip(np.floor(picks), 0, n_video_frames - 1).astype(np.int64)


def window_indices(n_video_frames: int, n_frames: int, fps: float, window_s: float,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """``n_frames`` indices at a fixed stride spanning ``window_s`` seconds (about one beat).

    Evaluation (``rng`` None): the window is centred in the video. Training: a random window start
    and a random offset of up to half a stride per frame. Shorter videos shrink the stride.

    Unlike :func:`eval_indices`, the frames cannot alias with the heart rate: spreading 8 frames
    over a whole multi-beat video can land every frame at the same cardiac phase.
    """
    last = n_video_frames - 1
    stride = fps * window_s / n_frames
    if n_frames > 1:
        stride = min(stride, last / (n_frames - 1))
    span = stride * (n_frames - 1)
    steps = np.arange(n_frames, dtype=np.float64)
    if rng is None:
        positions = (last - span) / 2.0 + stride * steps
    else:
        start = rng.uniform(0.0, max(0.0, last - span))
        positions = start + stride * (steps + rng.uniform(-0.5, 0.5, n_frames))
    return np.clip(np.round(positions), 0, last).astype(np.int64)


SAMPLINGS = ("window", "spread")


def clip_indices(n_video_frames: int, n_frames: int, fps: float, sampling: str, window_s: float,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """The frames of one clip: ``window`` (:func:`window_indices`) or ``spread`` (:func:`eval_indices`,
    or :func:`train_indices` with ``rng``). The one choice training, evaluation and prediction make."""
    if sampling == "window":
        return window_indices(n_video_frames, n_frames, fps, window_s, rng)
    if sampling == "spread":
        return eval_indices(n_video_frames, n_frames) if rng is None else train_indices(n_video_frames, n_frames, rng)
    raise EcholiteError(f"sampling must be one of {SAMPLINGS}, but got {sampling!r}")


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W) uint8 frames as (T, size, size), area interpolation (unchanged when already that size)."""
    if frames.shape[1:] == (size, size):
        return frames
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def write_video(path: str | Path, frames: np.ndarray, fps: float) -> None:
    """Write frames (T, H, W) grey or (T, H, W, 3) RGB uint8 as an MJPG AVI, atomically.

    Grey frames are written as single-channel JPEGs (1.6x faster to encode than three equal
    channels); readers decode them to three identical channels. The file appears under its
    final name only once it is complete.
    """
    path = Path(path)
    grey = frames.ndim == 3
    h, w = frames.shape[1:3]
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.avi")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), float(fps), (w, h), not grey)
    if not writer.isOpened():
        raise EcholiteError(f"{path}: OpenCV cannot open an MJPG writer (is OpenCV built with it?)")
    writer.set(cv2.VIDEOWRITER_PROP_QUALITY, MJPG_QUALITY)
    try:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame if grey else frame[..., ::-1]))
    finally:
        writer.release()
    os.replace(tmp, path)
