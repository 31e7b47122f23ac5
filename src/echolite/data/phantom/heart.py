"""Phantom v2 anatomy and motion: an apical-4-chamber heart in the frame of its left ventricle.

Coordinates (cm): ``a`` along the LV long axis from the endocardial apex towards the mitral
annulus, ``l`` across it, positive towards the lateral wall (image right, as in EchoNet's A4C
view) and negative towards the septum and the right heart.

The heart is a stack of layers along ``l`` whose boundaries are functions of the axial position:

  * ventricular level (``0 <= a <= L``): LV cavity | septum | RV cavity | RV free wall on the
    septal side, LV cavity | lateral wall on the other;
  * atrial level (``a > L``): LA cavity | interatrial septum | RA cavity | RA wall, and
    LA cavity | LA wall; the two levels are blended over the atrioventricular plane.

Motion maps the end-diastolic (material) configuration to the configuration at contraction state
``c`` (0 = end-diastole, 1 = end-systole), one row at a time: the base descends towards a fixed apex
(``L(c) = L0 (1 - c k)``), every layer boundary moves to its position at ``c`` (each wall segment
moves inwards by its own fraction: regional wall motion; the myocardium thickens, keeping its area)
and the displacement decays outside the heart. The map is piecewise linear in ``l`` and in ``a``, so
its inverse (which the renderer needs: where did the tissue now at this point come from?) is exact.

Volumes are those of the monoplane method of disks on 20 chords, as in EchoNet's tracings, so the
EF of VolumeTracings.csv reproduces FileList.csv exactly; the EF drawn for a video is reached by
solving for the amplitude of the regional wall motion.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from echolite.data.tracings import N_DISKS

# --- population (EchoNet-Dynamic: EF mean 55.7, sd 12.4, 22 % below 50) -------------------------
EF_LOW_FRACTION = 0.20  # share of the "reduced EF" component of the mixture
EF_LOW_MEAN, EF_LOW_SD = 36.0, 11.0  # reduced-EF component (%)
EF_NORMAL_MEAN, EF_NORMAL_SD = 60.3, 6.5  # normal-EF component (%)
EF_RANGE = (10.0, 85.0)
REDUCED_EF = 45.0  # below this a heart is drawn dilated, with global or regional hypokinesis

# --- anatomy at end-diastole (cm) -------------------------------------------------------------
LV_LENGTH_CM = (7.2, 9.4)  # endocardial apex -> mitral annulus
LV_HALF_WIDTH_CM = (1.9, 2.5)  # widest cavity half-width (diameter 3.8-5 cm)
DILATION = (1.0, 1.35)  # size factor of reduced-EF hearts (at the lowest EF)
WALL_CM = (0.8, 1.15)  # septal and lateral myocardium
APEX_SHARPNESS = (0.55, 1.0)  # exponent of the apical profile: small = blunt (spherical)
EQUATOR = (0.55, 0.8)  # axial fraction of the widest point
ANNULUS_TAPER = (0.2, 0.4)  # the annulus is this much narrower than the widest point
RV_START = (0.25, 0.5)  # axial fraction where the RV cavity begins (its apex)
RV_WIDTH_CM = (1.1, 1.9)
RV_WALL_CM = (0.3, 0.5)
LA_LENGTH_CM = (3.4, 5.0)
LA_HALF_WIDTH_CM = (1.5, 2.2)
ATRIAL_WALL_CM = (0.2, 0.35)
AV_BLEND_CM = 0.5  # the ventricular and atrial layers blend over this axial distance
DECAY_CM = 1.6  # outside the heart the displacement decays over this distance
SEGMENT_CENTRES = (1 / 6, 1 / 2, 5 / 6)  # apical, mid, basal segments (axial fractions)
MAX_INWARD = 0.6  # no wall segment moves inwards by more than this fraction of its half-width


@dataclass(frozen=True)
class Heart:
    """One heart at end-diastole and its motion (lengths in cm)."""

    length: float
    half_width: tuple[float, float]  # widest cavity half-width, (septal, lateral)
    apex_sharpness: float
    equator: float
    annulus_taper: float
    wall: tuple[float, float]  # myocardial thickness, (septal, lateral)
    wall_apex: float
    inward: tuple[tuple[float, float, float], tuple[float, float, float]]  # ES fraction by segment
    long_shortening: float  # L(ES) = L0 (1 - long_shortening)
    rv_start: float
    rv_width: float
    rv_wall: float
    rv_inward: float
    la_length: float
    la_half_width: tuple[float, float]
    ra_length: float
    ra_half_width: float
    atrial_wall: float
    ias_wall: float  # interatrial septum
    atrial_expansion: float  # atria widen by this fraction at ventricular end-systole

    def to_dict(self) -> dict:
        return asdict(self)


# --- the cardiac cycle ---------------------------------------------------------------------------
def cycle_state(t, ed_frame: int, period: float, systole: int, early_fill: float = 0.75,
                fill_frames: float | None = None, kick_frames: float | None = None) -> np.ndarray:
    """Contraction state c(t) in [0, 1]: 0 at end-diastole, 1 at end-systole.

    Systole (ejection) lasts exactly ``systole`` frames from ED, so c is exactly 1 at
    ``ed_frame + systole``; diastole has a rapid early filling (``early_fill`` of the stroke volume
    over ``fill_frames``), a slow diastasis and the atrial kick (the rest, over ``kick_frames``,
    ending exactly at the next ED).
    """
    tau = np.mod(np.asarray(t, dtype=np.float64) - ed_frame, period)
    dia = period - systole
    fill = min(fill_frames if fill_frames else 0.3 * dia, 0.55 * dia)
    kick = min(kick_frames if kick_frames else 0.25 * dia, 0.4 * dia)
    c_sys = 0.5 * (1.0 - np.cos(np.pi * np.minimum(tau, systole) / systole))
    u = tau - systole  # time into diastole
    after_fill = 1.0 - early_fill
    kick_level = after_fill * 0.85  # diastasis adds a little filling before the kick
    e = 1.0 - early_fill * 0.5 * (1.0 - np.cos(np.pi * np.clip(u / fill, 0.0, 1.0)))
    d = after_fill - (after_fill - kick_level) * np.clip((u - fill) / max(dia - fill - kick, 1e-9), 0.0, 1.0)
    a = kick_level * 0.5 * (1.0 + np.cos(np.pi * np.clip((u - (dia - kick)) / kick, 0.0, 1.0)))
    c_dia = np.where(u < fill, e, np.where(u < dia - kick, d, a))
    return np.where(tau <= systole, c_sys, c_dia)


# --- profiles ------------------------------------------------------------------------------------
def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def lv_profile(h: Heart, s) -> np.ndarray:
    """Cavity half-width at axial fraction s, as a fraction of the widest: bullet shaped, 0 at the
    apex, 1 at the equator, narrowing to ``1 - annulus_taper`` at the annulus."""
    s = np.asarray(s, dtype=np.float64)
    below = np.sin(0.5 * np.pi * np.clip(s / h.equator, 0.0, 1.0)) ** h.apex_sharpness
    above = 1.0 - h.annulus_taper * ((s - h.equator) / (1.0 - h.equator)) ** 2
    return np.where(s <= h.equator, below, np.maximum(above, 0.0))


def inward(h: Heart, side: int, s) -> np.ndarray:
    """Fraction by which the wall of ``side`` (0 septal, 1 lateral) moves inwards at ES."""
    return np.interp(np.asarray(s, dtype=np.float64), SEGMENT_CENTRES, h.inward[side])


def endo(h: Heart, side: int, s, c) -> np.ndarray:
    """Endocardial half-width (cm) at axial fraction s and state c."""
    return h.half_width[side] * lv_profile(h, s) * (1.0 - np.asarray(c) * inward(h, side, s))


def thickened(w0, t0, w_c):
    """Wall thickness after the cavity half-width moved w0 -> w_c, keeping (w + t)^2 - w^2."""
    return np.sqrt(w_c * w_c + t0 * (2.0 * w0 + t0)) - w_c


def length(h: Heart, c) -> np.ndarray:
    return h.length * (1.0 - np.asarray(c) * h.long_shortening)


def rv_profile(h: Heart, s) -> np.ndarray:
    x = np.clip((np.asarray(s, dtype=np.float64) - h.rv_start) / max(0.85 - h.rv_start, 1e-6), 0.0, 1.0)
    return np.sin(0.5 * np.pi * x) ** 0.7


def _chamber(t, start, widest, peak: float = 0.4) -> np.ndarray:
    """Atrial half-width along t in [0, 1] (0 at the valve plane, 1 at the roof)."""
    t = np.asarray(t, dtype=np.float64)
    rise = start + (widest - start) * np.sin(0.5 * np.pi * np.clip(t / peak, 0.0, 1.0))
    fall = widest * np.sqrt(np.clip(1.0 - ((t - peak) / (1.0 - peak)) ** 2, 0.0, 1.0))
    return np.where(t <= peak, rise, np.where(t <= 1.0, fall, 0.0))


def boundaries(h: Heart, a0, c) -> tuple[np.ndarray, np.ndarray]:
    """Layer boundaries (cm from the axis) at material axial positions ``a0`` and state ``c``.

    Returns:
        (septal side (4, *shape): cavity | septum | right cavity | right wall, lateral side
        (2, *shape): cavity | wall), all >= 0 and non-decreasing along the first axis.
    """
    a0, c = np.broadcast_arrays(np.asarray(a0, dtype=np.float64), np.asarray(c, dtype=np.float64))
    s = np.clip(a0 / h.length, 0.0, 1.0)
    # ventricular level
    sep0, lat0 = endo(h, 0, s, 0.0), endo(h, 1, s, 0.0)
    sep, lat = endo(h, 0, s, c), endo(h, 1, s, c)
    t_sep, t_lat = thickened(sep0, h.wall[0], sep), thickened(lat0, h.wall[1], lat)
    rv = h.rv_width * rv_profile(h, s) * (1.0 - c * h.rv_inward)
    v_sep = np.stack([sep, sep + t_sep, sep + t_sep + rv, sep + t_sep + rv + h.rv_wall])
    v_lat = np.stack([lat, lat + t_lat])
    # atrial level
    ann_sep, ann_lat = endo(h, 0, 1.0, c), endo(h, 1, 1.0, c)
    grow = 1.0 + c * h.atrial_expansion
    t_la = (a0 - h.length) / h.la_length
    t_ra = (a0 - h.length) / h.ra_length
    la_sep = _chamber(t_la, ann_sep, h.la_half_width[0] * grow)
    la_lat = _chamber(t_la, ann_lat, h.la_half_width[1] * grow)
    rv_base = h.rv_width * rv_profile(h, 1.0) * (1.0 - c * h.rv_inward)
    ra = _chamber(t_ra, rv_base, h.ra_half_width * grow)
    closing = np.clip(1.0 - (a0 - h.length - h.la_length) / h.atrial_wall, 0.0, 1.0)  # walls end
    ias = h.ias_wall * closing
    a_sep = np.stack([la_sep, la_sep + ias, la_sep + ias + ra, la_sep + ias + ra + h.atrial_wall * closing])
    a_lat = np.stack([la_lat, la_lat + h.atrial_wall * closing])
    w = _smoothstep((a0 - h.length + AV_BLEND_CM / 2) / AV_BLEND_CM)
    septal = (1.0 - w) * v_sep + w * a_sep
    lateral = (1.0 - w) * v_lat + w * a_lat
    # the apical cap: no cavity above the apex, the walls close over it
    cap = a0 < 0.0
    if np.any(cap):
        close = np.sqrt(np.clip(1.0 - (a0 / h.wall_apex) ** 2, 0.0, 1.0))
        septal = np.where(cap, np.stack([0 * a0, h.wall_apex * close, h.wall_apex * close,
                                         h.wall_apex * close]), septal)
        lateral = np.where(cap, np.stack([0 * a0, h.wall_apex * close]), lateral)
    return septal, lateral


# --- the inverse motion map ------------------------------------------------------------------------
def axial_to_material(h: Heart, a, c) -> np.ndarray:
    """Material axial position of the tissue now at ``a`` (state c): apex fixed, cavity scaled,
    beyond the annulus the descent of the base decays over DECAY_CM."""
    a = np.asarray(a, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    lc = length(h, c)
    shift = lc - h.length  # <= 0: the base moves towards the apex
    inside = a * h.length / lc
    beyond = a - shift  # Newton on a = a0 + shift exp(-(a0 - L0)/lambda), from a0 = a - shift
    for _ in range(4):
        e = np.exp(-np.maximum(beyond - h.length, 0.0) / DECAY_CM)
        f = beyond + shift * e - a
        beyond = beyond - f / (1.0 - shift * e / DECAY_CM)
    return np.where(a <= 0.0, a, np.where(a <= lc, inside, np.maximum(beyond, h.length)))


def _lateral_to_material(d, now, then) -> np.ndarray:
    """|l| -> |l0| through piecewise-linear layers (boundaries ``now`` -> ``then``, (K, N)), with
    the outermost displacement decaying beyond the last boundary."""
    out = np.empty_like(d)
    done = np.zeros(d.shape, bool)
    lo_now, lo_then = np.zeros_like(d), np.zeros_like(d)
    for k in range(now.shape[0]):
        hi_now, hi_then = now[k], then[k]
        here = ~done & (d <= hi_now)
        span = hi_now - lo_now
        frac = np.where(span > 1e-9, (d - lo_now) / np.maximum(span, 1e-9), 0.0)
        out = np.where(here, lo_then + frac * (hi_then - lo_then), out)
        done |= here
        lo_now, lo_then = hi_now, hi_then
    shift = now[-1] - then[-1]  # displacement of the outer surface
    x = d - shift
    for _ in range(4):  # d = x + shift exp(-(x - then)/lambda), x >= then
        e = np.exp(-np.maximum(x - then[-1], 0.0) / DECAY_CM)
        x = x - (x + shift * e - d) / (1.0 - shift * e / DECAY_CM)
    return np.where(done, out, np.maximum(x, then[-1]))


def to_material(h: Heart, a, l, c) -> tuple[np.ndarray, np.ndarray]:
    """Material coordinates (a0, l0) of the tissue at (a, l) at state c (arrays of one shape)."""
    a0 = axial_to_material(h, a, c)
    sep_now, lat_now = boundaries(h, a0, c)
    sep_then, lat_then = boundaries(h, a0, 0.0)
    d = np.abs(l)
    d0 = np.where(l < 0, _lateral_to_material(d, sep_now, sep_then),
                  _lateral_to_material(d, lat_now, lat_then))
    return a0, np.copysign(d0, l)


class Motion:
    """The inverse motion map of one heart over a sequence of states, fast: the layer boundaries
    are tabulated along the axis (every ``step`` cm) for every state, then interpolated.

    ``to_material(a, l)`` takes arrays (T, ...) for the T states of ``c``.
    """

    def __init__(self, h: Heart, c, a_range: tuple[float, float], step: float = 0.05):
        self.h = h
        self.c = np.asarray(c, dtype=np.float64)
        self.a_lo, self.step = a_range[0], step
        grid = a_range[0] + step * np.arange(int(np.ceil((a_range[1] - a_range[0]) / step)) + 2)
        self.n = len(grid)
        sep, lat = boundaries(h, grid[None, :], self.c[:, None])  # (K, T, G)
        sep0, lat0 = boundaries(h, grid, 0.0)  # (K, G)
        self.now = np.concatenate([sep, lat]).astype(np.float32)  # (6, T, G)
        self.then = np.concatenate([sep0, lat0]).astype(np.float32)  # (6, G)

    def to_material(self, a: np.ndarray, l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = np.arange(len(self.c)).reshape((-1,) + (1,) * (a.ndim - 1))
        a0 = axial_to_material(self.h, a, self.c.reshape(t.shape)).astype(np.float32)
        x = np.clip((a0 - self.a_lo) / self.step, 0.0, self.n - 1.001)
        i = x.astype(np.int64)
        w = (x - i).astype(np.float32)

        def at(table, k):  # boundary k interpolated at every sample
            rows = table[k]
            if rows.ndim == 2:  # one row per state
                lo, hi = rows[t, i], rows[t, i + 1]
            else:
                lo, hi = rows[i], rows[i + 1]
            return lo + w * (hi - lo)

        now = [at(self.now, k) for k in range(6)]
        then = [at(self.then, k) for k in range(6)]
        d = np.abs(l).astype(np.float32)
        septal = l < 0
        d0 = np.where(septal, _lateral_to_material(d, np.stack(now[:4]), np.stack(then[:4])),
                      _lateral_to_material(d, np.stack(now[4:]), np.stack(then[4:])))
        return a0, np.copysign(d0, l).astype(np.float32)


# --- volumes and tracings ------------------------------------------------------------------------------
def disk_fractions() -> np.ndarray:
    return (np.arange(N_DISKS) + 0.5) / N_DISKS


def volume_ml(h: Heart, c: float) -> float:
    """Monoplane method of disks on the 20 chords of the cavity at state c (cm^3 = mL)."""
    s = disk_fractions()
    chords = endo(h, 0, s, c) + endo(h, 1, s, c)
    return float(np.pi / 4.0 * np.sum(chords**2) * float(length(h, c)) / N_DISKS)


def tracing(h: Heart, c: float) -> np.ndarray:
    """Long axis and the 20 chords at state c, in heart coordinates (a, l) cm: (21, 2, 2)."""
    s = disk_fractions()
    lc = float(length(h, c))
    rows = [[[0.0, 0.0], [lc, 0.0]]]
    for si, sep, lat in zip(s, endo(h, 0, s, c), endo(h, 1, s, c)):
        rows.append([[si * lc, -sep], [si * lc, lat]])
    return np.asarray(rows)


# --- drawing one heart -------------------------------------------------------------------------------
def sample_ef(rng: np.random.Generator) -> float:
    """One EF (%) from the EchoNet-like mixture."""
    if rng.random() < EF_LOW_FRACTION:
        ef = rng.normal(EF_LOW_MEAN, EF_LOW_SD)
    else:
        ef = rng.normal(EF_NORMAL_MEAN, EF_NORMAL_SD)
    return float(np.clip(ef, *EF_RANGE))


def _pattern(rng: np.random.Generator, ef: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Relative inward motion of the six segments (septal and lateral; apical, mid, basal)."""
    base = np.ones((2, 3)) * rng.uniform(0.85, 1.15, (2, 1))  # septum vs lateral
    base *= 1.0 + rng.normal(0.0, 0.12, (2, 3))  # segment to segment
    kind = "normal"
    if ef < REDUCED_EF:
        kind = rng.choice(["global", "anterior", "lateral", "inferoseptal"], p=[0.45, 0.3, 0.15, 0.1])
        if kind == "anterior":  # LAD: apex and the apical/mid septum
            base[0, :2] *= rng.uniform(0.0, 0.35, 2)
            base[1, 0] *= rng.uniform(0.0, 0.4)
        elif kind == "lateral":  # LCx: the lateral wall
            base[1] *= rng.uniform(0.0, 0.4, 3)
        elif kind == "inferoseptal":
            base[0, 1:] *= rng.uniform(0.0, 0.4, 2)
    return np.clip(base[0], 0.0, None), np.clip(base[1], 0.0, None), str(kind)


def draw_heart(rng: np.random.Generator, ef: float) -> tuple[Heart, dict]:
    """A heart whose method-of-disks EF is ``ef`` (%), and notes on what was drawn."""
    reduced = float(np.clip((REDUCED_EF + 5.0 - ef) / 35.0, 0.0, 1.0))  # 0 normal .. 1 very low EF
    dil = 1.0 + reduced * (rng.uniform(*DILATION) - 1.0)
    sphericity = 1.0 + 0.15 * reduced * rng.uniform(0.5, 1.0)  # dilated hearts are rounder
    length_cm = rng.uniform(*LV_LENGTH_CM) * dil ** 0.5
    half = rng.uniform(*LV_HALF_WIDTH_CM) * dil * sphericity
    lat_share = rng.uniform(0.95, 1.15)  # the lateral wall bulges more than the septum
    wall = rng.uniform(*WALL_CM, 2) * (1.0 - 0.25 * reduced)
    sep_pattern, lat_pattern, kind = _pattern(rng, ef)
    k_long = float(np.clip(rng.normal(0.06 + 0.12 * ef / 60.0, 0.025), 0.02, 0.25))
    params = dict(
        length=length_cm, half_width=(half / lat_share ** 0.5, half * lat_share ** 0.5),
        apex_sharpness=rng.uniform(*APEX_SHARPNESS) * (1.0 - 0.3 * reduced),
        equator=rng.uniform(*EQUATOR), annulus_taper=rng.uniform(*ANNULUS_TAPER) * (1.0 - 0.3 * reduced),
        wall=(float(wall[0]), float(wall[1])), wall_apex=float(0.8 * wall.mean()),
        rv_start=rng.uniform(*RV_START), rv_width=rng.uniform(*RV_WIDTH_CM), rv_wall=rng.uniform(*RV_WALL_CM),
        rv_inward=rng.uniform(0.15, 0.4), la_length=rng.uniform(*LA_LENGTH_CM) * dil ** 0.5,
        la_half_width=tuple(float(x) for x in rng.uniform(*LA_HALF_WIDTH_CM, 2) * dil ** 0.5),
        ra_length=0.0, ra_half_width=rng.uniform(1.3, 2.0),
        atrial_wall=rng.uniform(*ATRIAL_WALL_CM), ias_wall=rng.uniform(0.25, 0.45),
        atrial_expansion=rng.uniform(0.05, 0.15),
    )
    params["ra_length"] = params["la_length"] * rng.uniform(0.8, 1.0)
    heart, amplitude = _solve(params, sep_pattern, lat_pattern, k_long, ef)
    return heart, {"wall_motion": kind, "amplitude": amplitude, "dilation": dil}


def _with_motion(params: dict, sep, lat, k_long: float, g: float) -> Heart:
    inward_ = (tuple(float(x) for x in np.minimum(g * sep, MAX_INWARD)),
               tuple(float(x) for x in np.minimum(g * lat, MAX_INWARD)))
    return Heart(**params, inward=inward_, long_shortening=float(k_long))


def _ef(heart: Heart) -> float:
    return 100.0 * (1.0 - volume_ml(heart, 1.0) / volume_ml(heart, 0.0))


def _solve(params: dict, sep, lat, k_long: float, ef: float) -> tuple[Heart, float]:
    """The wall-motion amplitude that gives ``ef`` (bisection; EF rises with it). Where the
    long-axis shortening alone overshoots or cannot reach it, the shortening is changed."""
    g_max = MAX_INWARD / max(float(np.max(sep)), float(np.max(lat)), 1e-6)
    if _ef(_with_motion(params, sep, lat, k_long, 0.0)) > ef:  # long-axis motion alone overshoots
        k_long = 0.5 * ef / 100.0  # (with no radial motion EF = k_long)
    for _ in range(3):
        if _ef(_with_motion(params, sep, lat, k_long, g_max)) >= ef:
            break
        k_long = min(0.35, k_long + 0.08)  # a very high EF needs more long-axis motion
    lo, hi = 0.0, g_max
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _ef(_with_motion(params, sep, lat, k_long, mid)) < ef:
            lo = mid
        else:
            hi = mid
    heart = _with_motion(params, sep, lat, k_long, 0.5 * (lo + hi))
    return heart, 0.5 * (lo + hi)


def rotation(axis_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors (image x right, y down) of the heart's a axis and l axis."""
    t = math.radians(axis_deg)
    return np.array([math.sin(t), math.cos(t)]), np.array([math.cos(t), -math.sin(t)])
