"""Phantom v2 (the default): an apical-4-chamber heart imaged by a simulated phased array.

A video is drawn from (phantom seed, split, index) alone: its EF from the EchoNet-like prior, a
heart that has that EF by the method of disks (:mod:`.heart`: shape, size, wall thickness,
regional wall motion, long-axis shortening, right heart, atria, valves), its timing (heart rate,
systole, early filling, atrial kick, frame rate, length) and how it is imaged (:mod:`.scanner`:
sector, depth, gain, dynamic range, point-spread function, noise, haze, dropout, speckle
renewal). Nothing is shared between videos, splits or phantom seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

import echolite.data.phantom.heart as hm
import echolite.data.phantom.scanner as scanner

PHANTOM_VERSION = 2
HEART_RATE_BPM = (48.0, 110.0)
FPS_RANGE = (45.0, 55.0)  # EchoNet-Dynamic's videos are mostly ~50 fps
SYSTOLE_S = (0.26, 0.36)  # ejection lasts about 0.3 s, whatever the heart rate
N_FRAMES_MEDIAN, N_FRAMES_RANGE = 100, (64, 180)  # log-normal lengths, at least 1.5 beats
SPLIT_CODES = {"TRAIN": 0, "VAL": 1, "TEST": 2}
APPEARANCES = ("standard", "shifted")


@dataclass(frozen=True)
class VideoSpec:
    """Everything needed to render one phantom v2 video and write its FileList/tracing rows."""

    index: int
    seed: int  # the phantom seed: with split and index, all of this video's randomness
    file_name: str
    split: str
    ef: float
    edv: float
    esv: float
    fps: float
    n_frames: int
    ed_frame: int
    es_frame: int
    period: float  # frames per beat
    timing: dict  # early_fill (share of the filling), fill_frames, kick_frames
    heart: hm.Heart
    scan: scanner.Scan
    notes: dict  # what was drawn (wall-motion pattern, dilation, ...)


def _rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLIT_CODES[split], index, PHANTOM_VERSION, stream])


def file_name(index: int, seed: int) -> str:
    return f"0X{np.random.default_rng([seed, index, PHANTOM_VERSION, 7]).integers(2**62):016X}"


def make_spec(index: int, seed: int, split: str, size: int = 112, appearance: str = "standard") -> VideoSpec:
    """Draw video ``index`` of split ``split`` (deterministic in seed, split and index).

    ``appearance="shifted"`` images the very same heart, timing and view with scanner settings
    outside the ranges of the standard phantom (see ``scanner.IMAGING``): a paired check of how a
    model copes with another scanner.
    """
    if appearance not in APPEARANCES:
        raise ValueError(f"appearance must be one of {APPEARANCES}, but got {appearance!r}")
    rng = _rng(seed, split, index, 0)
    ef_target = hm.sample_ef(rng)
    heart, notes = hm.draw_heart(rng, ef_target)
    hr = rng.uniform(*HEART_RATE_BPM)
    fps = float(round(rng.uniform(*FPS_RANGE), 2))
    period = 60.0 * fps / hr
    systole = max(3, min(round(rng.uniform(*SYSTOLE_S) * fps), round(0.45 * period)))
    n = int(np.clip(round(rng.lognormal(math.log(N_FRAMES_MEDIAN), 0.3)), *N_FRAMES_RANGE))
    n = max(n, math.ceil(1.5 * period) + 2)
    ed_frame = int(rng.integers(0, max(1, min(int(period), n - systole - 1))))
    reduced = ef_target < hm.REDUCED_EF
    timing = {"early_fill": rng.uniform(0.45, 0.65) if reduced else rng.uniform(0.6, 0.85),
              "fill_frames": rng.uniform(0.13, 0.2) * fps, "kick_frames": rng.uniform(0.09, 0.14) * fps}
    scan = scanner.draw_scan(_rng(seed, split, index, 2), size, ef_target, appearance == "shifted")
    edv, esv = hm.volume_ml(heart, 0.0), hm.volume_ml(heart, 1.0)
    return VideoSpec(index=index, seed=seed, file_name=file_name(index, seed), split=split,
                     ef=100.0 * (1.0 - esv / edv), edv=edv, esv=esv, fps=fps, n_frames=n,
                     ed_frame=ed_frame, es_frame=ed_frame + systole, period=period, timing=timing,
                     heart=heart, scan=scan, notes=notes)


def contraction(spec: VideoSpec, frames) -> np.ndarray:
    """Contraction state of the LV (0 = ED, 1 = ES) at the given frame indices."""
    return hm.cycle_state(frames, spec.ed_frame, spec.period, spec.es_frame - spec.ed_frame, **spec.timing)


def render(spec: VideoSpec, size: int = 112) -> np.ndarray:
    """The video of ``spec``: uint8 (n_frames, size, size), one grey channel."""
    if size != spec.scan.size:
        raise ValueError(f"spec drawn for {spec.scan.size} px frames, asked for {size}")
    rng = _rng(spec.seed, spec.split, spec.index, 1)
    c = contraction(spec, np.arange(spec.n_frames))
    return scanner.render(spec.heart, spec.scan, c, rng, shift_cm(spec, np.arange(spec.n_frames)))


def shift_cm(spec: VideoSpec, frames) -> np.ndarray:
    """Rigid displacement of the scene at ``frames`` (T, 2: along a, along l) cm: the heart's
    swing with contraction and a respiratory drift (its phase drawn from the video's own stream)."""
    scan = spec.scan
    frames = np.atleast_1d(np.asarray(frames))
    phase = _rng(spec.seed, spec.split, spec.index, 3).uniform(0, 2 * np.pi)  # 1: speckle, 2: the scan
    breath = np.sin(2 * np.pi * (frames / spec.fps) / scan.breathing_s + phase)
    c = contraction(spec, frames)
    return c[:, None] * np.asarray(scan.swing_cm) + breath[:, None] * np.asarray(scan.breathing_cm)


def tracing_rows(spec: VideoSpec, frame: int) -> np.ndarray:
    """Long axis + 20 chords of the LV at ``frame`` in image pixels: (21, 4) X1 Y1 X2 Y2."""
    c = float(contraction(spec, frame))
    f = scanner._frame(spec.scan, 2, 2)
    cpp = spec.scan.cm_per_px
    rows = hm.tracing(spec.heart, c) + shift_cm(spec, [frame])[0]  # (21, 2 points, (a, l)) cm, moved
    pts = f.apex + (rows[..., :1] * f.u + rows[..., 1:] * f.v) / cpp  # (21, 2, 2) px
    return pts.reshape(len(rows), 4)
