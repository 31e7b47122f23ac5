"""Phantom v2 image formation: tissue scatterers moved by the heart, imaged along the beams of a
phased-array sector, as a convolution simulation (COLE-style) on a CPU.

For every frame:

  1. each sample of the beam grid (depth x beam angle) asks the heart's inverse motion map where
     its tissue came from; the tissue's echogenicity and its complex scatterers are read there from
     a raster in material (end-diastolic) coordinates, so speckle moves *with* the tissue. A share
     of the scattering renews from frame to frame (an AR(1) process: out-of-plane motion), the
     valve leaflets and near-field reverberation haze are added in the beam frame;
  2. the field is convolved with the point-spread function (Gaussian along and across the beam:
     the lateral width is an angle, so speckle widens with depth), its envelope taken, thermal
     noise added, the depth gain (TGC) applied;
  3. log compression to the display's dynamic range, then scan conversion to the square frame.

Echogenicity depends on the structure (blood dark; myocardium moderate, weaker where the beam runs
along the wall: lateral dropout; pericardium and valves bright) and on smooth random fields
(heterogeneity, dropout patches, trabeculated endocardium), all drawn per video.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

import echolite.data.phantom.heart as hm

BEAMS, SAMPLES = 96, 128  # beam grid (angles x depth samples)
RASTER_CM = 0.1  # material raster resolution
COARSE = 4  # the motion map is evaluated on a grid this much coarser, then interpolated

# structure labels of the material raster
(OUTSIDE, LV, MYO, RV, RV_WALL, LA, RA, ATRIAL_WALL, PERICARDIUM, CHEST, LUNG, DEEP, AORTA,
 PAPILLARY) = range(14)


@dataclass(frozen=True)
class Scan:
    """How one video is imaged (angles in degrees, lengths in cm unless named px)."""

    size: int
    apex_px: tuple[float, float]
    half_angle: float
    tilt: float
    radius_px: float
    depth: float
    heart_depth: float  # depth of the LV apex
    heart_angle: float  # beam angle of the LV apex
    heart_axis: float  # tilt of the LV long axis from the image vertical
    echo: dict  # echogenicity by structure (amplitude)
    anisotropy: float  # myocardium parallel to the beam keeps this share of its amplitude
    heterogeneity: float
    dropout: float
    trabeculation: float
    chest_wall: float  # thickness
    psf: tuple[float, float]  # Gaussian sigma (samples along, beams across)
    dynamic_range: float
    myocardium_grey: float
    display_gamma: float
    tgc_db_per_cm: float
    near_field: tuple[float, float]  # the gain rises from 0 at this depth over this distance
    noise: float  # thermal noise amplitude, relative to the myocardium
    haze: float  # near-field reverberation amplitude, relative to the myocardium
    haze_depth: float
    swing_cm: tuple[float, float]  # rigid displacement of the heart at end-systole (along a, along l)
    breathing_cm: tuple[float, float]  # amplitude of the respiratory drift (along a, along l)
    breathing_s: float  # its period
    speckle_renewal: float  # share of the scattering that renews (AR(1) innovation)
    speckle_memory: float  # AR(1) coefficient per frame of the renewing share
    aorta: bool
    papillary: bool
    markers: bool

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def cm_per_px(self) -> float:
        return self.depth / self.radius_px


# echogenicity by structure, dB relative to the myocardium (drawn per video)
ECHO_DB = {
    LV: (-42.0, -32.0), RV: (-42.0, -32.0), LA: (-42.0, -32.0), RA: (-42.0, -32.0), AORTA: (-42.0, -32.0),
    MYO: (0.0, 0.0), RV_WALL: (-3.0, 1.0), ATRIAL_WALL: (-5.0, 0.0), PAPILLARY: (-5.0, -1.0),
    PERICARDIUM: (8.0, 16.0), CHEST: (-16.0, -6.0), LUNG: (-30.0, -8.0), DEEP: (-6.0, 2.0),
}
VALVE_DB = (2.0, 8.0)
SMOKE_DB = 12.0  # spontaneous echo contrast: blood of a very low-EF ventricle brightens up to this

# how the scanner images (per video): the range phantoms are drawn from, and the ranges of the
# "shifted" appearance (other scanners and settings: outside the first, for robustness checks).
# Tuned so that `echolite realism` of a v2 phantom falls inside real EchoNet's statistics.
IMAGING = {
    "depth": ((14.0, 18.0), ((12.0, 14.0), (18.0, 20.0))),  # cm: the sector's radius
    "half_angle": ((42.0, 47.0), ((36.0, 41.0),)),  # degrees; EchoNet's sectors span ~90
    "apex_x": ((0.50, 0.60), ((0.44, 0.50), (0.60, 0.66))),  # sector apex, fraction of the width
    "apex_y": ((0.0, 0.06), ((0.06, 0.12),)),
    "radius": ((0.96, 1.04), ((0.86, 0.95),)),  # sector radius in frame heights
    "dynamic_range": ((38.0, 52.0), ((30.0, 37.0), (53.0, 62.0))),  # dB shown from black to white
    "myocardium_grey": ((95.0, 135.0), ((65.0, 90.0), (140.0, 170.0))),  # grey of the myocardium
    "display_gamma": ((1.0, 1.5), ((0.7, 0.95), (1.55, 1.9))),
    "tgc_db_per_cm": ((0.2, 1.0), ((-0.6, 0.1), (1.1, 1.6))),
    "noise_db": ((-45.0, -32.0), ((-31.0, -24.0),)),  # thermal noise re the myocardium
    "haze_db": ((-20.0, -8.0), ((-7.0, -2.0),)),  # near-field reverberation re the myocardium
    "psf_axial": ((0.6, 1.0), ((1.05, 1.5),)),  # Gaussian sigma, beam-grid samples
    "psf_lateral": ((0.7, 1.1), ((1.15, 1.7),)),  # Gaussian sigma, beams
    "speckle_renewal": ((0.2, 0.4), ((0.42, 0.55),)),
}


def _draw(rng: np.random.Generator, name: str, shifted: bool) -> float:
    """One imaging parameter; both variants consume the same draws (paired videos)."""
    normal, others = IMAGING[name]
    pick = others[int(rng.integers(len(others)))]
    x = rng.uniform()
    lo, hi = pick if shifted else normal
    return float(lo + x * (hi - lo))


def draw_scan(rng: np.random.Generator, size: int, ef: float, shifted: bool = False) -> Scan:
    """The scanner settings and tissue appearance of one video (``shifted``: out-of-range imaging
    of the very same heart and view, drawn from the same random numbers)."""
    g = {name: _draw(rng, name, shifted) for name in IMAGING}
    smoke = float(np.clip((45.0 - ef) / 30.0, 0.0, 1.0)) * rng.uniform(0.0, 1.0)  # stasis in low EF
    echo = {str(k): 10 ** (rng.uniform(*r) / 20) for k, r in ECHO_DB.items()}
    echo[str(LV)] *= 10 ** (SMOKE_DB * smoke / 20)
    echo["valve"] = 10 ** (rng.uniform(*VALVE_DB) / 20)
    return Scan(
        size=size,
        apex_px=(size * g["apex_x"], size * g["apex_y"]),
        half_angle=g["half_angle"], tilt=rng.normal(0.0, 1.5),
        radius_px=size * g["radius"], depth=g["depth"],
        heart_depth=rng.uniform(2.3, 3.6), heart_angle=rng.normal(0.0, 4.0),
        heart_axis=rng.normal(-7.0, 6.0),
        echo=echo,
        anisotropy=rng.uniform(0.25, 0.6), heterogeneity=rng.uniform(0.35, 0.7),
        dropout=rng.uniform(0.2, 0.8), trabeculation=rng.uniform(0.2, 0.8),
        chest_wall=rng.uniform(1.0, 2.2),
        psf=(g["psf_axial"], g["psf_lateral"]),
        dynamic_range=g["dynamic_range"], myocardium_grey=g["myocardium_grey"],
        display_gamma=g["display_gamma"], tgc_db_per_cm=g["tgc_db_per_cm"],
        near_field=(rng.uniform(0.5, 1.2), rng.uniform(1.2, 2.2)),
        noise=10 ** (g["noise_db"] / 20), haze=10 ** (g["haze_db"] / 20),
        haze_depth=rng.uniform(1.0, 2.5),
        swing_cm=(rng.uniform(-0.5, 0.1), rng.normal(0.0, 0.2)),
        breathing_cm=(rng.uniform(0.0, 0.5), rng.uniform(0.0, 0.25)), breathing_s=rng.uniform(3.0, 5.0),
        speckle_renewal=g["speckle_renewal"], speckle_memory=rng.uniform(0.8, 0.92),
        aorta=bool(rng.random() < 0.6), papillary=bool(rng.random() < 0.6),
        markers=bool(rng.random() < 0.8),
    )


# --- geometry --------------------------------------------------------------------------------------
@dataclass
class _Frame:
    """Beam grid and heart placement of one video (image pixels, cm in heart coordinates)."""

    angles: np.ndarray  # (BEAMS,) radians from the image vertical
    radii: np.ndarray  # (SAMPLES,) px
    x: np.ndarray  # (SAMPLES, BEAMS) image px of every beam sample
    y: np.ndarray
    apex: np.ndarray  # LV apex, image px
    u: np.ndarray  # heart a axis (image unit vector)
    v: np.ndarray  # heart l axis


def _frame(scan: Scan, samples: int = SAMPLES, beams: int = BEAMS) -> _Frame:
    half = math.radians(scan.half_angle)
    angles = math.radians(scan.tilt) + np.linspace(-half, half, beams)
    radii = np.linspace(0.0, scan.radius_px, samples)
    x = scan.apex_px[0] + radii[:, None] * np.sin(angles)[None, :]
    y = scan.apex_px[1] + radii[:, None] * np.cos(angles)[None, :]
    r_apex = scan.heart_depth / scan.cm_per_px
    t = math.radians(scan.heart_angle)
    apex = np.array([scan.apex_px[0] + r_apex * math.sin(t), scan.apex_px[1] + r_apex * math.cos(t)])
    u, v = hm.rotation(scan.heart_axis)
    return _Frame(angles, radii, x, y, apex, u, v)


def _heart_coords(f: _Frame, x, y, cm_per_px: float) -> tuple[np.ndarray, np.ndarray]:
    dx, dy = x - f.apex[0], y - f.apex[1]
    return (dx * f.u[0] + dy * f.u[1]) * cm_per_px, (dx * f.v[0] + dy * f.v[1]) * cm_per_px


# --- the material raster -------------------------------------------------------------------------------
def _smooth_noise(rng, shape, sigma_px: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with correlation length ``sigma_px``."""
    z = cv2.GaussianBlur(rng.standard_normal(shape, dtype=np.float32), (0, 0), max(sigma_px, 0.3))
    return (z - z.mean()) / (z.std() + 1e-9)


def labels(heart: hm.Heart, scan: Scan, a_axis: np.ndarray, l_axis: np.ndarray, depth: np.ndarray,
           papillary: tuple[float, float] | None, aorta: tuple[float, float, float] | None) -> np.ndarray:
    """Structure label of every point of the material raster (end-diastolic configuration).

    Args:
        a_axis, l_axis: the raster's coordinates (cm): rows along a, columns along l.
        depth: (rows, columns) distance of each point from the probe (cm).
    """
    a0, l0 = a_axis[:, None], l_axis[None, :]
    sep, lat = hm.boundaries(heart, a_axis, 0.0)  # (K, rows): the layers are functions of a only
    sep, lat = sep[:, :, None], lat[:, :, None]
    d = np.abs(l0)
    septal = l0 < 0
    ventricle = (a0 <= heart.length) | np.zeros_like(septal)
    cavity_end = np.where(septal, sep[0], lat[0])
    wall_end = np.where(septal, sep[1], lat[1])
    out = np.select(
        [(d < cavity_end) & (a0 >= 0), d < wall_end, septal & (d < sep[2]), septal & (d < sep[3])],
        [np.where(ventricle, LV, LA), np.where(ventricle | (a0 < 0), MYO, ATRIAL_WALL),
         np.where(ventricle, RV, RA), np.where(ventricle, RV_WALL, ATRIAL_WALL)],
        OUTSIDE).astype(np.uint8)
    if papillary is not None:  # a papillary muscle on the lateral wall, inside the cavity
        pa, pl, pr = papillary[0], papillary[1], 0.45
        out[(out == LV) & (((a0 - pa) / (1.6 * pr)) ** 2 + ((l0 - pl) / pr) ** 2 < 1.0)] = PAPILLARY
    outside = out == OUTSIDE
    # pericardium: a band just outside the heart
    dist = cv2.distanceTransform(outside.astype(np.uint8), cv2.DIST_L2, 5) * RASTER_CM
    gap = 0.15
    peri = outside & (dist > gap) & (dist < gap + 0.3)
    below = (a0 > heart.length + heart.la_length + 0.6) | np.zeros_like(septal)
    rest = np.where(depth < scan.chest_wall, CHEST, np.where(below, DEEP, LUNG)).astype(np.uint8)
    out = np.where(peri, PERICARDIUM, np.where(outside, rest, out)).astype(np.uint8)
    if aorta is not None:  # descending aorta behind the left atrium
        aa, al, ar = aorta
        rr = np.hypot(a0 - aa, l0 - al)
        ring = (out != LA) & (out != RA)
        out[ring & (rr < ar + 0.25)] = PERICARDIUM
        out[ring & (rr < ar)] = AORTA
    return out


def _facing(mask: np.ndarray, sigma: float, f: _Frame, beam_x, beam_y) -> np.ndarray:
    """|cos| of the angle between the beam and the normal of ``mask``'s smoothed surface."""
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)
    ga, gl = cv2.Sobel(soft, cv2.CV_32F, 0, 1), cv2.Sobel(soft, cv2.CV_32F, 1, 0)  # along a, along l
    nx, ny = gl * f.v[0] + ga * f.u[0], gl * f.v[1] + ga * f.u[1]  # the normal in image axes
    norm = np.hypot(nx, ny)
    cos = np.abs(nx * beam_x + ny * beam_y) / (norm + 1e-9)
    return np.where(norm > 1e-4, cos, 1.0).astype(np.float32)


def material_raster(heart: hm.Heart, scan: Scan, f: _Frame, rng: np.random.Generator):
    """Echogenicity and scatterers on a raster over the heart coordinates the sector can see.

    Returns:
        (raster (H, W, 3) float32: amplitude E, E * Re(S), E * Im(S); (a origin, l origin) cm).
    """
    cpp = scan.cm_per_px
    a, l = _heart_coords(f, f.x, f.y, cpp)
    margin = 1.5
    a_lo, l_lo = float(a.min()) - margin, float(l.min()) - margin
    n_a = int(math.ceil((float(a.max()) + margin - a_lo) / RASTER_CM)) + 1
    n_l = int(math.ceil((float(l.max()) + margin - l_lo) / RASTER_CM)) + 1
    a_axis = a_lo + RASTER_CM * np.arange(n_a, dtype=np.float64)
    l_axis = l_lo + RASTER_CM * np.arange(n_l, dtype=np.float64)
    a0, l0 = a_axis[:, None], l_axis[None, :]
    # image position of each material point (at end-diastole material = current)
    px = f.apex[0] + (a0 * f.u[0] + l0 * f.v[0]) / cpp
    py = f.apex[1] + (a0 * f.u[1] + l0 * f.v[1]) / cpp
    bx, by = px - scan.apex_px[0], py - scan.apex_px[1]
    depth = np.hypot(bx, by) * cpp
    papillary = (heart.length * rng.uniform(0.5, 0.7),
                 heart.half_width[1] * 0.75) if scan.papillary else None
    aorta = (heart.length + heart.la_length + rng.uniform(0.9, 1.6), rng.uniform(0.3, 1.5),
             rng.uniform(0.7, 1.0)) if scan.aorta else None
    lab = labels(heart, scan, a_axis, l_axis, depth, papillary, aorta)

    table = np.zeros(PAPILLARY + 1, np.float32)
    for k, val in scan.echo.items():
        if k != "valve":
            table[int(k)] = val
    amp = table[lab]
    # specular/fibre anisotropy: tissue surfaces facing the beam are bright, those along it weak;
    # the myocardium's surface is its cavity's, the pericardium's the heart's
    beam_x, beam_y = bx / (np.hypot(bx, by) + 1e-6), by / (np.hypot(bx, by) + 1e-6)
    cavities = np.isin(lab, (LV, RV, LA, RA, AORTA))
    walls = np.isin(lab, (MYO, RV_WALL, ATRIAL_WALL, PAPILLARY))
    facing = np.ones(lab.shape, np.float32)
    facing[walls] = _facing(cavities, 3.0, f, beam_x, beam_y)[walls]
    peri = lab == PERICARDIUM
    facing[peri] = _facing(~np.isin(lab, (CHEST, LUNG, DEEP, PERICARDIUM)), 6.0, f, beam_x, beam_y)[peri]
    amp *= np.where(walls | peri, scan.anisotropy + (1.0 - scan.anisotropy) * facing**2, 1.0)
    tissue = (walls | peri).astype(np.float32)
    # heterogeneity, dropout patches, trabeculated endocardium
    shape = lab.shape
    amp *= np.exp(scan.heterogeneity * _smooth_noise(rng, shape, 3.0)).astype(np.float32)
    patches = np.clip(_smooth_noise(rng, shape, 8.0), 0.0, None)
    amp *= (1.0 - tissue * np.clip(scan.dropout * patches, 0.0, 0.9)).astype(np.float32)
    near_wall = (lab == LV) & (cv2.distanceTransform((lab == LV).astype(np.uint8), cv2.DIST_L2, 5) < 3.0)
    bumps = np.clip(_smooth_noise(rng, shape, 1.2), 0.0, None) * scan.trabeculation
    amp = np.where(near_wall, amp + table[MYO] * 0.5 * bumps, amp).astype(np.float32)
    # scatterers: unit-power complex Gaussian, lightly smoothed so that interpolation at any
    # sub-cell position keeps its power
    z = rng.standard_normal((2, *shape), dtype=np.float32)
    z = np.stack([cv2.GaussianBlur(c, (0, 0), 0.7) for c in z])
    z /= np.sqrt((z**2).sum(0).mean())
    raster = np.stack([amp, amp * z[0], amp * z[1]], axis=-1).astype(np.float32)
    return raster, (a_lo, l_lo)


# --- the valves ------------------------------------------------------------------------------------
CLOSED_DEG, OPEN_DEG = 15.0, -80.0  # leaflet angle from the annulus line: bowed to the atrium .. to the apex
VALVE_SIGMA_CM = 0.09  # half-thickness of a leaflet (Gaussian sigma)


def leaflets(heart: hm.Heart, c: np.ndarray, opening: np.ndarray) -> np.ndarray:
    """Mitral and tricuspid leaflets at states ``c`` as segments in heart coordinates (a, l) cm:
    (T, 4, 2 ends (hinge, tip), 2)."""
    c = np.asarray(c, dtype=np.float64)
    lc = hm.length(heart, c)
    sep, lat = hm.boundaries(heart, np.full(c.shape, heart.length - 1e-6), c)
    ann_sep, ann_lat, rv_sep, rv_free = sep[0], lat[0], sep[1], sep[2]
    span = ann_sep + ann_lat
    t_span = np.maximum(rv_free - rv_sep, 0.5)
    ang = np.radians(CLOSED_DEG + np.asarray(opening) * (OPEN_DEG - CLOSED_DEG))
    out = []
    # mitral: the anterior leaflet on the septal side, the posterior on the lateral side; the
    # tricuspid: hinges on the septum's right side and on the RV free wall, a little apical
    for a_hinge, l_hinge, size, side in ((lc, -ann_sep, 0.6 * span, 1.0), (lc, ann_lat, 0.42 * span, -1.0),
                                         (lc - 0.5, -rv_sep, 0.45 * t_span, -1.0),
                                         (lc - 0.5, -rv_free, 0.65 * t_span, 1.0)):
        hinge = np.stack([a_hinge, l_hinge], -1)
        tip = hinge + size[:, None] * np.stack([np.sin(ang), side * np.cos(ang)], -1)
        out.append(np.stack([hinge, tip], 1))
    return np.stack(out, 1).astype(np.float32)


def _leaflet_amplitude(pa: np.ndarray, pl: np.ndarray, segs: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian line profile of the nearest leaflet at points (N,) for every frame: (T, N)."""
    h, tip = segs[:, :, 0], segs[:, :, 1]  # (T, 4, 2)
    d = tip - h
    pa, pl = pa[None, None, :], pl[None, None, :]
    da, dl = d[..., 0, None], d[..., 1, None]
    t = np.clip(((pa - h[..., 0, None]) * da + (pl - h[..., 1, None]) * dl)
                / np.maximum(da * da + dl * dl, 1e-9), 0.0, 1.0)
    dist2 = (pa - h[..., 0, None] - t * da) ** 2 + (pl - h[..., 1, None] - t * dl) ** 2  # (T, 4, N)
    return np.exp(-0.5 * dist2.min(axis=1) / (sigma * sigma)).astype(np.float32)


def valve_opening(c: np.ndarray) -> np.ndarray:
    """Opening of the atrioventricular valves (0 closed .. 1 open) from the filling rate."""
    rate = -np.diff(c, append=c[-1:] if len(c) else c)  # > 0 while the ventricle fills
    rate = np.clip(rate / (np.max(rate) + 1e-9), 0.0, 1.0)
    return np.sqrt(rate)


# --- rendering -------------------------------------------------------------------------------------
LUT_SIZE = 1024  # display look-up table entries over the dynamic range
NOISE_BANK = 16  # white-noise fields drawn per video
HAZE_MEMORY = 0.97  # reverberation haze changes slowly (AR(1) per frame) ...
HAZE_INNOVATION = math.sqrt(1.0 - HAZE_MEMORY**2)  # ... keeping its power


def render(heart: hm.Heart, scan: Scan, c: np.ndarray, rng: np.random.Generator,
           shift_cm: np.ndarray | None = None) -> np.ndarray:
    """Frames uint8 (len(c), size, size) of ``heart`` at contraction states ``c``, the scene moved
    rigidly by ``shift_cm`` (T, 2: along a, along l) relative to the probe (cardiac swing, breathing)."""
    c = np.asarray(c, dtype=np.float64)
    shift = np.zeros((len(c), 2)) if shift_cm is None else np.asarray(shift_cm, dtype=np.float64)
    n_t, size, cpp = len(c), scan.size, scan.cm_per_px
    f = _frame(scan)
    raster, (a_lo, l_lo) = material_raster(heart, scan, f, rng)
    # (E Re S, E Im S, E, E): OpenCV remaps 4 channels several times faster than 2 + 2
    raster4 = np.ascontiguousarray(np.concatenate([raster[..., 1:], raster[..., :1].repeat(2, -1)], -1))

    # inverse motion on a coarse beam grid, all frames at once
    coarse = _frame(scan, SAMPLES // COARSE, BEAMS // COARSE)
    ca, cl = _heart_coords(coarse, coarse.x, coarse.y, cpp)
    motion = hm.Motion(heart, c, (a_lo, a_lo + raster.shape[0] * RASTER_CM), step=0.1)
    a0, l0 = motion.to_material(ca[None] - shift[:, :1, None], cl[None] - shift[:, 1:, None])
    map_a = ((a0 - a_lo) / RASTER_CM).astype(np.float32)
    map_l = ((l0 - l_lo) / RASTER_CM).astype(np.float32)

    # beam-frame fields: renewing scatterers, valves, haze, noise ((SAMPLES, BEAMS, 2): re, im)
    a_full, l_full = _heart_coords(f, f.x, f.y, cpp)
    depth_cm = f.radii * cpp  # (SAMPLES,)
    bank = _noise_bank(rng, NOISE_BANK)
    renew, rho = scan.speckle_renewal, scan.speckle_memory
    keep, fresh, innovation = math.sqrt(1.0 - renew), math.sqrt(renew), math.sqrt(1.0 - rho * rho)
    dynamic, haze_field = _pick(bank, rng).copy(), _pick(bank, rng).copy()
    haze_amp = ((scan.haze * np.exp(-depth_cm / scan.haze_depth))[:, None]
                * np.exp(0.5 * _smooth_noise(rng, (SAMPLES, BEAMS), 6.0)))
    haze_amp = haze_amp[..., None].repeat(2, -1).astype(np.float32)
    segments = leaflets(heart, c, valve_opening(c)) + shift[:, None, None, :].astype(np.float32)
    margin = 4 * VALVE_SIGMA_CM
    lo, hi = segments.reshape(-1, 2).min(0) - margin, segments.reshape(-1, 2).max(0) + margin
    rows, cols = np.nonzero((a_full > lo[0]) & (a_full < hi[0]) & (l_full > lo[1]) & (l_full < hi[1]))
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)) if len(rows) else None
    if box is not None:  # where the leaflets can be, in the beam grid
        shape = a_full[box].shape
        valves = scan.echo["valve"] * _leaflet_amplitude(
            a_full[box].ravel().astype(np.float32), l_full[box].ravel().astype(np.float32),
            segments, VALVE_SIGMA_CM).reshape(n_t, *shape, 1)

    # PSF (unit energy: speckle power is kept), TGC, apodisation, display mapping
    sig_r, sig_b = scan.psf
    gain_psf = 1.0 / math.sqrt(_kernel_energy(sig_r) * _kernel_energy(sig_b))
    near = np.clip((depth_cm - scan.near_field[0]) / scan.near_field[1], 0.0, 1.0)
    near = np.maximum(near * near * (3 - 2 * near), 0.01)  # smoothstep, never quite 0
    tgc = 10 ** (scan.tgc_db_per_cm * (depth_cm - 8.0) / 20.0) * near
    edge = np.abs(f.angles - math.radians(scan.tilt)) / math.radians(scan.half_angle)
    apod = 1.0 - 0.5 * np.clip((edge - 0.85) / 0.15, 0.0, 1.0) ** 2
    gain = ((tgc[:, None] * apod[None, :]) * gain_psf).astype(np.float32)[..., None].repeat(2, -1)
    # grey = 255 * ((dB - floor) / DR) ^ gamma over the dynamic range, looked up from ln(amplitude)
    floor_db = -scan.dynamic_range * (scan.myocardium_grey / 255.0) ** (1.0 / scan.display_gamma)
    lut = (255.0 * np.linspace(0.0, 1.0, LUT_SIZE) ** scan.display_gamma).astype(np.float32)
    per_db = (LUT_SIZE - 1) / scan.dynamic_range
    db_per_ln = 20.0 / math.log(10.0)
    to_frame = cv2.convertMaps(*_scan_conversion(scan, f), cv2.CV_16SC2)

    frames = np.empty((n_t, size, size), np.uint8)
    field, part = np.empty((SAMPLES, BEAMS, 2), np.float32), np.empty((SAMPLES, BEAMS, 2), np.float32)
    power = np.empty((SAMPLES, BEAMS), np.float32)
    for t in range(n_t):
        tissue = cv2.remap(raster4, cv2.resize(map_l[t], (BEAMS, SAMPLES)),
                           cv2.resize(map_a[t], (BEAMS, SAMPLES)), cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)  # (S, B, 4)
        if t:
            dynamic *= rho
            dynamic += innovation * _pick(bank, rng)
            haze_field *= HAZE_MEMORY
            haze_field += HAZE_INNOVATION * _pick(bank, rng)
        np.multiply(tissue[..., 2:], dynamic, out=part)
        part *= fresh
        np.multiply(tissue[..., :2], keep, out=field)
        field += part
        np.multiply(haze_amp, haze_field, out=part)
        field += part
        if box is not None:
            field[box] += valves[t] * _pick(bank, rng)[box]
        blurred = cv2.GaussianBlur(field, (0, 0), sigmaX=sig_b, sigmaY=sig_r)
        blurred *= gain
        blurred += scan.noise * _pick(bank, rng)
        np.square(blurred[..., 0], out=power)
        power += np.square(blurred[..., 1])
        level = cv2.log(power + 1e-12)
        level *= 0.5 * db_per_ln * per_db
        level -= floor_db * per_db
        grey = lut[np.clip(level, 0, LUT_SIZE - 1).astype(np.int32)]
        frames[t] = cv2.remap(grey, *to_frame, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0).astype(np.uint8)
    if scan.markers:
        _draw_markers(frames, scan)
    return frames


def _kernel_energy(sigma: float) -> float:
    k = cv2.getGaussianKernel(2 * int(math.ceil(4 * sigma)) + 1, sigma)
    return float((k**2).sum())


def _noise_bank(rng, n: int) -> np.ndarray:
    """``n`` unit-power complex white-noise fields (n, SAMPLES, BEAMS, 2) float32 (re, im last)."""
    return rng.standard_normal((n, SAMPLES, BEAMS, 2), dtype=np.float32) * np.float32(math.sqrt(0.5))


def _pick(bank: np.ndarray, rng) -> np.ndarray:
    """One of the video's white-noise fields, at random (mixed by the AR processes, they repeat
    no visible pattern)."""
    return bank[rng.integers(len(bank))]


def _scan_conversion(scan: Scan, f: _Frame) -> tuple[np.ndarray, np.ndarray]:
    """Beam-grid coordinates (beam index, sample index) of every output pixel; outside: -1."""
    y, x = np.mgrid[0:scan.size, 0:scan.size].astype(np.float32) + 0.5
    dx, dy = x - scan.apex_px[0], y - scan.apex_px[1]
    r = np.hypot(dx, dy)
    theta = np.arctan2(dx, dy)
    bi = (theta - f.angles[0]) / (f.angles[-1] - f.angles[0]) * (BEAMS - 1)
    si = r / scan.radius_px * (SAMPLES - 1)
    return bi.astype(np.float32), si.astype(np.float32)


def _draw_markers(frames: np.ndarray, scan: Scan) -> None:
    """The depth scale: dots every centimetre just outside the right edge of the sector."""
    ang = math.radians(scan.tilt + scan.half_angle + 3.0)
    marks = np.zeros(frames.shape[1:], np.float32)
    for k in range(1, int(scan.depth) + 1):
        r = k / scan.cm_per_px
        x, y = scan.apex_px[0] + r * math.sin(ang), scan.apex_px[1] + r * math.cos(ang)
        if 0 <= x < scan.size and 0 <= y < scan.size:
            cv2.circle(marks, (round(x * 4), round(y * 4)), 3, 200.0 if k % 5 else 255.0, -1, cv2.LINE_AA, 2)
    frames[:] = np.maximum(frames, marks.astype(np.uint8)[None])
