"""Phantom v1 (kept selectable: ``data.phantom_version=1``): painted ellipses and speckle.

The first echolite phantom, rendered exactly as before so that its datasets and the runs made from
them reproduce. It looks little like real echo (see ``echolite realism``); v2 is the default.

Geometry (image coordinates, x right, y down, pixels):
  * a fan-shaped field of view whose apex is the probe at the top centre;
  * the left ventricle (LV) is a half prolate ellipsoid: its apex A is fixed, its long axis points
    along ``u`` towards the mitral plane; at cycle state c (0 = end-diastole, 1 = end-systole) it
    has long-axis length L(c) and half-width W(c), and a myocardium of thickness T(c) around it;
  * the right ventricle and both atria are distractors with their own, unrelated motion.

The LV volume is V = 2/3 * pi * W^2 * L (a solid of revolution about the long axis), so
EF = 1 - V(ES)/V(ED) is exact. The 20 disk chords written to VolumeTracings.csv are cut from the
same half ellipse, so the method of disks reproduces EF exactly (the shape factor cancels).

Image formation: piecewise-constant echogenicity drawn with anti-aliased sub-pixel ellipses,
multiplied by spatially correlated Rayleigh speckle (partly fixed to the scene, partly renewed
each frame), depth attenuation, gain and near-field clutter, then log-like compression to uint8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from echolite.data.tracings import N_DISKS

# --- population statistics (EchoNet-Dynamic-like) -------------------------------------------
EF_LOW_FRACTION = 0.14  # share of the "reduced EF" component of the EF mixture
EF_LOW_MEAN, EF_LOW_SD = 35.0, 9.0  # reduced-EF component (%)
EF_NORMAL_MEAN, EF_NORMAL_SD = 59.5, 7.5  # normal-EF component (%)
EF_RANGE = (10.0, 85.0)  # clip; overall mean ~56, sd ~12, ~20 % below 50
HEART_RATE_BPM = (50.0, 110.0)
FPS_RANGE = (45.0, 55.0)  # EchoNet videos are mostly ~50 fps
SYSTOLE_FRACTION = (0.30, 0.38)  # systole is about a third of the cycle
N_FRAMES_MEDIAN, N_FRAMES_RANGE = 128, (48, 256)  # log-normal lengths, clipped

# --- anatomy (cm) ----------------------------------------------------------------------------
LV_LENGTH_CM = (7.0, 9.0)  # end-diastolic long axis
LV_HALF_WIDTH_CM = (2.0, 2.7)  # end-diastolic half width at the mitral plane
WALL_CM = (0.8, 1.1)  # end-diastolic myocardial thickness
LONG_AXIS_SHORTENING = (0.12, 0.28)  # L_ES/L_ED = 1 - k * EF/100
CM_PER_PIXEL = (0.125, 0.155)  # imaging depth 14-17 cm over 112 px

# --- echogenicity (0..1 before speckle) ------------------------------------------------------
BLOOD, TISSUE, MYOCARDIUM, ATRIAL_WALL = 0.05, 0.33, 0.80, 0.62
SPECKLE_BANK = 24  # correlated speckle fields shared by all videos of a process
_speckle_cache: dict[int, np.ndarray] = {}


@dataclass(frozen=True)
class VideoSpec:
    """Everything needed to render one phantom video and write its FileList/tracing rows."""

    index: int
    file_name: str
    split: str
    ef: float
    edv: float
    esv: float
    fps: float
    n_frames: int
    ed_frame: int
    es_frame: int
    params: dict


def _lognormal_length(rng: np.random.Generator) -> int:
    n = rng.lognormal(math.log(N_FRAMES_MEDIAN), 0.35)
    return int(np.clip(round(n), *N_FRAMES_RANGE))


def sample_ef(rng: np.random.Generator) -> float:
    """One EF (%) from the EchoNet-like mixture."""
    if rng.random() < EF_LOW_FRACTION:
        ef = rng.normal(EF_LOW_MEAN, EF_LOW_SD)
    else:
        ef = rng.normal(EF_NORMAL_MEAN, EF_NORMAL_SD)
    return float(np.clip(ef, *EF_RANGE))


def make_spec(index: int, seed: int, split: str, size: int = 112) -> VideoSpec:
    """Draw the parameters of video ``index`` (deterministic in seed and index)."""
    rng = np.random.default_rng([seed, index])
    name = f"0X{np.random.default_rng([seed, index, 1]).integers(2**62):016X}"
    ef = sample_ef(rng)
    hr = rng.uniform(*HEART_RATE_BPM)
    fps = float(round(rng.uniform(*FPS_RANGE), 2))
    period = 60.0 * fps / hr  # frames per beat
    systole = max(3, round(period * rng.uniform(*SYSTOLE_FRACTION)))
    n_frames = max(_lognormal_length(rng), math.ceil(1.5 * period) + 2)
    ed_frame = int(rng.integers(0, max(1, min(int(period), n_frames - systole - 1))))

    cm_px = rng.uniform(*CM_PER_PIXEL)
    scale = size / 112.0
    length_cm = rng.uniform(*LV_LENGTH_CM)
    half_width_cm = rng.uniform(*LV_HALF_WIDTH_CM)
    k_long = rng.uniform(*LONG_AXIS_SHORTENING)
    length_ratio = 1.0 - k_long * ef / 100.0
    width_ratio = math.sqrt((1.0 - ef / 100.0) / length_ratio)
    edv = 2.0 / 3.0 * math.pi * half_width_cm**2 * length_cm
    esv = edv * width_ratio**2 * length_ratio
    params = dict(
        cm_px=cm_px / scale,
        length_px=length_cm / cm_px * scale,
        half_width_px=half_width_cm / cm_px * scale,
        wall_px=rng.uniform(*WALL_CM) / cm_px * scale,
        length_ratio=length_ratio,
        width_ratio=width_ratio,
        wall_thickening=rng.uniform(0.2, 0.5) * ef / 100.0,
        apex=(size * (0.5 + rng.uniform(0.02, 0.10)), size * rng.uniform(0.08, 0.14)),
        axis_deg=rng.uniform(-14.0, 8.0),  # tilt of the LV long axis from vertical
        period=period,
        systole=systole,
        rv_scale=rng.uniform(0.65, 0.9),
        rv_contraction=rng.uniform(0.1, 0.35),
        atrial_scale=rng.uniform(0.8, 1.1),
        atrial_filling=rng.uniform(0.1, 0.3),
        sector_half_deg=rng.uniform(36.0, 44.0),
        gain=rng.uniform(0.8, 1.25),
        attenuation=rng.uniform(0.2, 0.5),
        clutter=rng.uniform(0.0, 0.25),
        tissue=TISSUE * rng.uniform(0.8, 1.2),
        speckle_renewal=rng.uniform(0.3, 0.6),
    )
    return VideoSpec(
        index=index,
        file_name=name,
        split=split,
        ef=100.0 * (1.0 - esv / edv),
        edv=edv,
        esv=esv,
        fps=fps,
        n_frames=n_frames,
        ed_frame=ed_frame,
        es_frame=ed_frame + systole,
        params=params,
    )


def cycle_state(t: np.ndarray, ed_frame: int, period: float, systole: int) -> np.ndarray:
    """Contraction state c(t) in [0, 1]: 0 at end-diastole, 1 at end-systole.

    Systole lasts exactly ``systole`` frames from ED, so c is exactly 1 at ``ed_frame + systole``.
    """
    tau = np.mod(np.asarray(t, dtype=np.float64) - ed_frame, period)
    in_systole = tau <= systole
    c_sys = 0.5 * (1.0 - np.cos(np.pi * np.minimum(tau, systole) / systole))
    c_dia = 0.5 * (1.0 + np.cos(np.pi * (tau - systole) / (period - systole)))
    return np.where(in_systole, c_sys, c_dia)


def _lv_geometry(p: dict, c: float) -> tuple[np.ndarray, np.ndarray, float, float, float]:
    """Apex, unit axis (apex -> base), length, half width and wall thickness (px) at state c."""
    theta = math.radians(p["axis_deg"])
    u = np.array([math.sin(theta), math.cos(theta)])
    length = p["length_px"] * (1.0 - c * (1.0 - p["length_ratio"]))
    half_width = p["half_width_px"] * (1.0 - c * (1.0 - p["width_ratio"]))
    wall = p["wall_px"] * (1.0 + c * p["wall_thickening"])
    return np.asarray(p["apex"], dtype=np.float64), u, length, half_width, wall


def tracing_rows(spec: VideoSpec, frame: int) -> np.ndarray:
    """Long axis + 20 chords (apex -> mitral plane) of the LV at ``frame``: (21, 4) X1 Y1 X2 Y2."""
    p = spec.params
    c = float(cycle_state(frame, spec.ed_frame, p["period"], p["systole"]))
    apex, u, length, half_width, _ = _lv_geometry(p, c)
    v = np.array([u[1], -u[0]])
    rows = [np.concatenate([apex, apex + length * u])]
    for i in range(N_DISKS):
        d = (i + 0.5) * length / N_DISKS  # distance of the chord from the apex
        hw = half_width * math.sqrt(max(0.0, 1.0 - ((length - d) / length) ** 2))
        mid = apex + d * u
        rows.append(np.concatenate([mid - hw * v, mid + hw * v]))
    return np.stack(rows)


def _speckle_bank(size: int) -> np.ndarray:
    """Correlated, unit-mean Rayleigh speckle fields (SPECKLE_BANK, 2*size, 2*size) float32."""
    if size not in _speckle_cache:
        rng = np.random.default_rng(1234)
        fields = []
        for _ in range(SPECKLE_BANK):
            z = rng.standard_normal((2, 2 * size, 2 * size)).astype(np.float32)
            re = cv2.GaussianBlur(z[0], (0, 0), 0.8)
            im = cv2.GaussianBlur(z[1], (0, 0), 0.8)
            mag = np.sqrt(re * re + im * im)
            fields.append(mag / mag.mean())
        _speckle_cache[size] = np.stack(fields)
    return _speckle_cache[size]


def _half_ellipse(img, centre, toward, a, b, value):
    """Fill the half of the ellipse (semi-axes a along ``toward``, b across) on ``toward``'s side."""
    s = 16  # sub-pixel precision of cv2 drawing (shift=4)
    angle = math.degrees(math.atan2(toward[1], toward[0]))
    cv2.ellipse(
        img, (round(centre[0] * s), round(centre[1] * s)), (max(1, round(a * s)), max(1, round(b * s))),
        angle, -90, 90, value, -1, cv2.LINE_AA, 4,
    )


def _ellipse(img, centre, axis, a, b, value):
    s = 16
    angle = math.degrees(math.atan2(axis[1], axis[0]))
    cv2.ellipse(
        img, (round(centre[0] * s), round(centre[1] * s)), (max(1, round(a * s)), max(1, round(b * s))),
        angle, 0, 360, value, -1, cv2.LINE_AA, 4,
    )


def render(spec: VideoSpec, size: int = 112) -> np.ndarray:
    """Render the video of ``spec``: uint8 (n_frames, size, size), one grey channel."""
    p = spec.params
    rng = np.random.default_rng([spec.index, 77, int(spec.ef * 1000)])
    t = np.arange(spec.n_frames)
    c_lv = cycle_state(t, spec.ed_frame, p["period"], p["systole"])
    to_level = 255.0

    blood, wall_level, atrial_wall, rv_wall = (round(level * to_level) for level in
                                               (BLOOD, MYOCARDIUM, ATRIAL_WALL, 0.8 * MYOCARDIUM))
    echo = np.empty((spec.n_frames, size, size), np.uint8)
    for i, c in enumerate(c_lv):
        img = echo[i]
        img.fill(round(p["tissue"] * to_level))
        apex, u, length, half_width, wall = _lv_geometry(p, float(c))
        v = np.array([u[1], -u[0]])
        base = apex + length * u
        # atria below the valve planes fill while the ventricles contract
        a_scale = p["atrial_scale"] * (1.0 + p["atrial_filling"] * c)
        la_a, la_b = 0.38 * p["length_px"] * a_scale, 0.85 * p["half_width_px"] * a_scale
        la_c = base + (la_a + 0.6 * wall) * u
        _ellipse(img, la_c, u, la_a + 0.5 * wall, la_b + 0.5 * wall, atrial_wall)
        _ellipse(img, la_c, u, la_a, la_b, blood)
        # right ventricle to the image left of the septum, its own contraction
        rv_c = 1.0 - p["rv_contraction"] * c
        rv_len, rv_hw = p["rv_scale"] * p["length_px"], p["rv_scale"] * p["half_width_px"] * rv_c
        rv_base = apex + p["length_px"] * 0.95 * u - (half_width + wall + rv_hw) * v
        ra_a, ra_b = 0.8 * la_a, 0.8 * la_b
        ra_c = rv_base + (ra_a + 0.6 * wall) * u
        _ellipse(img, ra_c, u, ra_a + 0.5 * wall, ra_b + 0.5 * wall, atrial_wall)
        _ellipse(img, ra_c, u, ra_a, ra_b, blood)
        _half_ellipse(img, rv_base, -u, rv_len + 0.6 * wall, rv_hw + 0.6 * wall, rv_wall)
        _half_ellipse(img, rv_base, -u, rv_len, rv_hw, blood)
        # left ventricle: myocardium, then the cavity
        _half_ellipse(img, base, -u, length + wall, half_width + wall, wall_level)
        _half_ellipse(img, base, -u, length, half_width, blood)

    # image formation, vectorised over frames
    bank = _speckle_bank(size)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    probe = (size / 2.0, 0.02 * size)
    dx, dy = x - probe[0], y - probe[1]
    r = np.sqrt(dx * dx + dy * dy) / size  # depth, 0..~1
    inside = (np.abs(np.degrees(np.arctan2(dx, dy))) <= p["sector_half_deg"]) & (r <= 0.97)
    depth_gain = p["gain"] * np.exp(-p["attenuation"] * r)
    clutter = p["clutter"] * np.exp(-r / 0.12)
    k0 = rng.integers(SPECKLE_BANK)
    ox, oy = rng.integers(0, size, 2)
    static = bank[k0, oy : oy + size, ox : ox + size]
    picks = rng.integers(0, SPECKLE_BANK, spec.n_frames)
    offs = rng.integers(0, size, (spec.n_frames, 2))
    renew = p["speckle_renewal"]
    out = np.empty((spec.n_frames, size, size), np.uint8)
    weight = (depth_gain * inside).astype(np.float32)
    clutter = (clutter * inside).astype(np.float32)
    for i in range(spec.n_frames):
        dyn = bank[picks[i], offs[i, 0] : offs[i, 0] + size, offs[i, 1] : offs[i, 1] + size]
        speckle = (1.0 - renew) * static + renew * dyn
        amp = echo[i].astype(np.float32) * (1.0 / to_level) * speckle * weight + clutter
        # log-like compression: keeps dark blood distinguishable from noise
        out[i] = np.clip(255.0 * np.log1p(8.0 * amp) / math.log1p(8.0), 0, 255).astype(np.uint8)
    return out
