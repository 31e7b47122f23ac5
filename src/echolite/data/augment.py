"""Appearance augmentation of training clips: what a scanner, its settings and the operator change,
so that a model trained on one renderer (the phantom) does not learn that renderer's look.

One random draw per clip (every frame of a clip is transformed alike, as a scanner would), from
ranges scaled by ``strength`` (0 = off, 1 = the ranges below):

  * geometry: rotation, zoom and translation (one affine warp);
  * grey levels: gain, offset and gamma of the display map (black stays black: outside the sector
    and anechoic blood stay 0);
  * blur (another point-spread function) and additive noise (per frame: thermal noise);
  * sector mask: part of the field of view cut away (a narrower or shallower sector).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

ROTATION_DEG = 10.0  # +-
ZOOM = 0.12  # log-uniform +-
TRANSLATION_PX = 6.0  # +- (at 112 px; scaled with the frame size)
GAMMA = 0.35  # log-uniform +-
GAIN = 0.3  # log-uniform +- (multiplies grey)
OFFSET = 15.0  # +- grey levels added to non-black pixels
BLUR_SIGMA_PX = 1.0  # up to, half of the clips
NOISE_GREY = 6.0  # up to (sd), half of the clips
MASK_PROB = 0.3  # share of clips whose sector is cut


def augment(frames: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Transform a uint8 clip (T, H, W) alike in every frame; returns a new uint8 array."""
    if strength <= 0:
        return frames
    s = float(strength)
    t, h, w = frames.shape
    scale = w / 112.0
    out = _warp(frames, rng, s, scale)
    out = cv2.LUT(out, _grey_map(rng, s))
    if rng.random() < 0.5:
        sigma = rng.uniform(0.0, BLUR_SIGMA_PX * s) * scale
        if sigma > 0.2:
            out = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in out])
    if rng.random() < 0.5:
        sd = rng.uniform(0.0, NOISE_GREY * s)
        noisy = out.astype(np.float32) + rng.normal(0.0, sd, out.shape).astype(np.float32)
        out = np.where(out > 0, np.clip(noisy, 1, 255), 0).astype(np.uint8)
    if rng.random() < MASK_PROB * min(s, 1.0 / MASK_PROB):
        out = out * _sector_cut(rng, h, w)[None]
    return out


def _warp(frames: np.ndarray, rng, s: float, scale: float) -> np.ndarray:
    h, w = frames.shape[1:]
    angle = rng.uniform(-ROTATION_DEG, ROTATION_DEG) * s
    zoom = math.exp(rng.uniform(-ZOOM, ZOOM) * s)
    dx, dy = rng.uniform(-TRANSLATION_PX, TRANSLATION_PX, 2) * s * scale
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, zoom)
    m[:, 2] += (dx, dy)
    return np.stack([cv2.warpAffine(f, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0) for f in frames])


def _grey_map(rng, s: float) -> np.ndarray:
    """A 256-entry look-up table: gamma, gain and offset; 0 stays 0."""
    gamma = math.exp(rng.uniform(-GAMMA, GAMMA) * s)
    gain = math.exp(rng.uniform(-GAIN, GAIN) * s)
    offset = rng.uniform(-OFFSET, OFFSET) * s
    g = np.arange(256, dtype=np.float64)
    lut = 255.0 * (g / 255.0) ** gamma * gain + offset
    lut = np.clip(np.round(lut), 0, 255)
    lut[0] = 0
    return lut.astype(np.uint8)


def _sector_cut(rng, h: int, w: int) -> np.ndarray:
    """A mask (H, W) uint8 0/1 keeping a wedge from the top centre, narrower and/or shallower than
    the frame."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    cx = w * rng.uniform(0.45, 0.6)
    angle = np.degrees(np.arctan2(x - cx, y))
    half = rng.uniform(30.0, 45.0)
    radius = h * rng.uniform(0.8, 1.05)
    keep = (np.abs(angle) <= half) & (np.hypot(x - cx, y) <= radius)
    return keep.astype(np.uint8)
