"""How much a dataset looks like real apical-4-chamber echo: appearance statistics of its videos,
side by side with a reference (another dataset, or the real-echo targets shipped in the package).

The statistics and their definitions are those of ``realism/real_stats.json`` (aggregates of 216
real EchoNet-Dynamic clips, no frames), so a dataset's numbers compare with them directly:

  * per video (the first ``MAX_FRAMES`` frames; then the median and IQR over videos):
    the field of view (FOV) is the set of pixels brighter than ``FOV_GREY`` in more than
    ``FOV_SHARE`` of the frames; ``mean_grey_in_fov``, ``dark_lt30_share`` and
    ``bright_gt150_share`` are over the FOV pixels of every frame; ``fov_share_of_frame`` is the
    FOV's share of the frame; ``mean_abs_frame_diff`` is the mean ``|I(t+1) - I(t)|`` inside it;
  * pooled over every frame of every video: the deciles of the grey histogram inside the FOV, the
    mean grey of every 8th row (row 0 at the transducer; the whole row), and the correlation of a
    pixel's mean-removed grey with itself k frames later (k = 0..5; each pixel's temporal mean
    removed, one correlation pooled over the FOV and the overlapping frames, then averaged over the
    videos).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.image import imread

from echolite import EcholiteError
from echolite.data.echonet import read_filelist, video_path
from echolite.data.video import read_frames

log = logging.getLogger(__name__)

MAX_FRAMES = 150  # frames per video entering the statistics (as for the real targets)
FOV_GREY, FOV_SHARE = 8, 0.05  # FOV: brighter than 8 in more than 5 % of the frames
DARK, BRIGHT = 30, 150  # "dark" and "bright" grey levels
DEPTH_ROW_STEP = 8  # the depth profile samples every 8th row
MAX_LAG = 5  # temporal autocorrelation lags 0..5
PER_VIDEO = ("mean_grey_in_fov", "dark_lt30_share", "bright_gt150_share", "fov_share_of_frame",
             "mean_abs_frame_diff")
LABELS = {
    "mean_grey_in_fov": "mean grey in the field of view",
    "dark_lt30_share": "share of dark pixels (< 30)",
    "bright_gt150_share": "share of bright pixels (> 150)",
    "fov_share_of_frame": "field of view, share of the frame",
    "mean_abs_frame_diff": "mean |frame-to-frame difference|",
}
MEDIAN_TOLERANCE = 0.20  # where a target has no IQR: within +-20 % of its median


def real_targets() -> dict:
    """The real-echo targets shipped in the package (aggregates of 216 EchoNet-Dynamic clips)."""
    return json.loads(resources.files("echolite.data").joinpath("realism_real_stats.json").read_text())


@dataclass
class _Accumulator:
    """Running sums over videos for the pooled statistics."""

    size: tuple[int, int] | None = None
    hist: np.ndarray | None = None
    frame_sum: np.ndarray | None = None
    frame_sq: np.ndarray | None = None
    frames: int = 0

    def add(self, frames: np.ndarray, fov: np.ndarray) -> None:
        if self.size is None:
            self.size = frames.shape[1:]
            self.hist = np.zeros(256, np.int64)
            self.frame_sum = np.zeros(self.size, np.float64)
            self.frame_sq = np.zeros(self.size, np.float64)
        elif frames.shape[1:] != self.size:
            raise EcholiteError(f"frames of {frames.shape[1:]} pixels among videos of {self.size}: the "
                                "statistics compare videos of one size (resize them first)")
        self.hist += np.bincount(frames[:, fov].ravel(), minlength=256)
        f = frames.astype(np.float64)
        self.frame_sum += f.sum(axis=0)
        self.frame_sq += (f * f).sum(axis=0)
        self.frames += len(frames)

    def images(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation over every frame of every video: (H, W) each."""
        mean = self.frame_sum / self.frames
        return mean, np.sqrt(np.maximum(self.frame_sq / self.frames - mean * mean, 0.0))


def video_stats(frames: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
    """Per-video statistics of uint8 grey frames (T, H, W).

    Returns:
        (the per-video values of :data:`PER_VIDEO`, the FOV mask (H, W) bool, the temporal
        autocorrelation at lags 0..MAX_LAG averaged over the FOV; NaN where undefined).
    """
    frames = np.asarray(frames)[:MAX_FRAMES]
    if frames.ndim != 3 or frames.dtype != np.uint8:
        raise EcholiteError(f"realism statistics need uint8 grey frames (T, H, W), got {frames.dtype} "
                            f"{frames.shape}")
    fov = (frames > FOV_GREY).mean(axis=0) > FOV_SHARE
    inside = frames[:, fov].astype(np.float32)  # (T, P)
    values = {"fov_share_of_frame": float(fov.mean())}
    if inside.size == 0:
        values.update({k: float("nan") for k in PER_VIDEO if k != "fov_share_of_frame"})
        return values, fov, np.full(MAX_LAG + 1, np.nan)
    values["mean_grey_in_fov"] = float(inside.mean())
    values["dark_lt30_share"] = float((inside < DARK).mean())
    values["bright_gt150_share"] = float((inside > BRIGHT).mean())
    values["mean_abs_frame_diff"] = float(np.abs(np.diff(inside, axis=0)).mean()) if len(inside) > 1 \
        else float("nan")
    return values, fov, _autocorrelation(inside)


def _autocorrelation(inside: np.ndarray) -> np.ndarray:
    """Correlation of the pixels' mean-removed series with themselves k frames later: each pixel's
    temporal mean removed, then one correlation pooled over the FOV pixels and the overlapping
    frames (pixels weigh by their variance): (MAX_LAG + 1,)."""
    x = inside - inside.mean(axis=0, keepdims=True)  # (T, P)
    out = np.full(MAX_LAG + 1, np.nan)
    t = len(x)
    for k in range(min(MAX_LAG, t - 2) + 1):
        a, b = x[: t - k], x[k:]
        den = np.sqrt(float((a * a).sum()) * float((b * b).sum()))
        if den > 0:
            out[k] = float((a * b).sum()) / den
    return out


def dataset_stats(videos, max_videos: int | None = None) -> dict:
    """The statistics of a collection of videos, in the schema of ``real_stats.json`` (plus the full
    histogram, the depth profile of every row and the mean and standard-deviation frames).

    Args:
        videos: an iterable of uint8 grey frame arrays (T, H, W), one per video.
        max_videos: stop after this many videos.
    """
    per_video: dict[str, list[float]] = {k: [] for k in PER_VIDEO}
    acf, acc, n = [], _Accumulator(), 0
    for frames in videos:
        frames = np.asarray(frames)[:MAX_FRAMES]
        values, fov, corr = video_stats(frames)
        for k in PER_VIDEO:
            per_video[k].append(values[k])
        acc.add(frames, fov)
        acf.append(corr)
        n += 1
        if max_videos and n >= max_videos:
            break
    if n == 0:
        raise EcholiteError("no videos to compute realism statistics on")
    cum = np.cumsum(acc.hist) / max(1, acc.hist.sum())
    deciles = [int(np.searchsorted(cum, q / 10.0)) for q in range(1, 10)]
    mean, std = acc.images()
    rows = mean.mean(axis=1)
    return {
        "videos": n,
        "frames": acc.frames,
        "median_per_video": {k: _round(np.nanmedian(v)) for k, v in per_video.items()},
        "iqr_per_video": {k: [_round(np.nanpercentile(v, 25)), _round(np.nanpercentile(v, 75))]
                          for k, v in per_video.items()},
        "grey_histogram_in_fov_deciles": deciles,
        "grey_histogram_in_fov": (acc.hist / max(1, acc.hist.sum())).round(6).tolist(),
        "mean_grey_by_depth_row_every_8": [round(float(v), 1) for v in rows[::DEPTH_ROW_STEP]],
        "mean_grey_by_depth_row": [round(float(v), 2) for v in rows],
        "temporal_autocorrelation_lag0to5": [round(float(v), 3) for v in np.nanmean(np.stack(acf), 0)],
        "mean_frame": mean.round(2).tolist(),
        "std_frame": std.round(2).tolist(),
    }


def _round(value) -> float:
    return round(float(value), 4)


def folder_videos(root: str | Path, split: str | None = None, limit: int | None = None, seed: int = 0):
    """Grey frames of the videos of an EchoNet-layout dataset (FileList order, or a seeded sample of
    ``limit`` of them), decoded as the loader decodes them."""
    table = read_filelist(root)
    if split:
        table = table[table["Split"] == split.upper()]
        if table.empty:
            raise EcholiteError(f"{root}: no {split.upper()} rows in FileList.csv")
    if limit and limit < len(table):
        table = table.sample(n=limit, random_state=seed)
    for name in table["FileName"]:
        yield read_frames(video_path(root, name), grey=True)[:MAX_FRAMES]


def compare(stats: dict, reference: dict) -> list[dict]:
    """One row per statistic: this dataset's value, the reference's and whether it is inside the
    reference's IQR (or within +-20 % of its median where it has none)."""
    rows = []
    for k in PER_VIDEO:
        value, ref = stats["median_per_video"][k], reference["median_per_video"][k]
        lo, hi = reference.get("iqr_per_video", {}).get(k, [None, None])
        if lo is None:
            lo, hi = ref * (1 - MEDIAN_TOLERANCE), ref * (1 + MEDIAN_TOLERANCE)
        rows.append({"statistic": k, "label": LABELS[k], "value": value, "reference": ref,
                     "range": [lo, hi], "inside": bool(lo <= value <= hi)})
    for name, key in (("grey histogram deciles", "grey_histogram_in_fov_deciles"),
                      ("mean grey by depth (every 8th row)", "mean_grey_by_depth_row_every_8"),
                      ("pixel correlation, lag 0..5", "temporal_autocorrelation_lag0to5")):
        value, ref = np.asarray(stats[key], float), np.asarray(reference[key], float)
        if key.startswith("temporal"):  # lag 0 is 1 by definition
            inside = bool(np.all(np.abs(value[1:] - ref[1:]) <= MEDIAN_TOLERANCE * np.abs(ref[1:])))
        else:  # grey levels: +-20 % of the reference, or +-3 grey levels near black
            inside = bool(np.all(np.abs(value - ref) <= np.maximum(MEDIAN_TOLERANCE * np.abs(ref), 3.0)))
        rows.append({"statistic": key, "label": name, "value": value.tolist(), "reference": ref.tolist(),
                     "range": None, "inside": inside})
    hist = stats.get("grey_histogram_in_fov")
    if hist is not None:
        rows.append({"statistic": "histogram_monotone_past_peak",
                     "label": "histogram falls past its dark peak",
                     "value": monotone_past_peak(hist), "reference": True, "range": None,
                     "inside": monotone_past_peak(hist)})
    return rows


def monotone_past_peak(hist, window: int = 9, tolerance: float = 0.05) -> bool:
    """Whether a grey histogram falls (smoothed over ``window`` levels, allowing rises of
    ``tolerance`` of the peak) from its maximum on: one dark mode, no second (tissue) mode."""
    h = np.convolve(np.asarray(hist, float), np.ones(window) / window, mode="same")
    peak = int(np.argmax(h))
    if peak > 64:
        return False
    tail = h[peak:]
    running_min = np.minimum.accumulate(tail)
    return bool(np.all(tail - running_min <= tolerance * h[peak]))


def format_table(rows: list[dict], name: str, reference_name: str) -> str:
    """The comparison as a markdown table."""

    def fmt(v):
        if isinstance(v, list):
            return ", ".join(f"{x:.3g}" if isinstance(x, float) and abs(x) < 10 else f"{x:.0f}"
                             if isinstance(x, float) else str(x) for x in v)
        if isinstance(v, bool):
            return "yes" if v else "no"
        return f"{v:.3f}" if abs(v) < 1 else f"{v:.1f}"

    lines = [f"| statistic | {name} | {reference_name} | inside |", "|---|---|---|---|"]
    for r in rows:
        ref = fmt(r["reference"])
        if r["range"] is not None:
            ref += f" ({fmt(r['range'][0])}–{fmt(r['range'][1])})"
        label = r["label"].replace("|", "\\|")  # a pipe inside a cell would split it
        lines.append(f"| {label} | {fmt(r['value'])} | {ref} | {'✓' if r['inside'] else '✗'} |")
    return "\n".join(lines)


def figure(stats: dict, path: str | Path, name: str, reference: dict | None = None,
           reference_name: str = "real EchoNet") -> Path:
    """The appearance panels of ``stats`` (mean frame, standard deviation, grey histogram in the
    FOV, mean grey by depth, pixel correlation k frames later) with the reference's curves drawn
    over them; above, the reference's own panels (the shipped real-echo figure when ``reference``
    is the package's targets, which hold no frames)."""
    reference = reference if reference is not None else real_targets()
    fig = Figure(figsize=(16, 6.4))
    axes = fig.subplots(2, 5)
    if "mean_frame" in reference:
        _panels(axes[0], reference, reference_name, None)
    else:
        for ax in axes[0]:
            ax.remove()
        top = fig.add_subplot(2, 1, 1)
        with resources.files("echolite.data").joinpath("realism_real_appearance.png").open("rb") as f:
            top.imshow(imread(f))
        top.set_title(f"{reference_name} (aggregates of {reference['videos']} clips)", fontsize=10)
        top.axis("off")
    _panels(axes[1], stats, name, reference)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path


def _panels(axes, stats: dict, name: str, reference: dict | None) -> None:
    axes[0].imshow(np.asarray(stats["mean_frame"]), cmap="gray", vmin=0)
    axes[0].set_title(f"mean frame ({stats['videos']} videos, {stats['frames']} frames)", fontsize=8)
    axes[0].set_ylabel(name[:40], fontsize=8)
    axes[1].imshow(np.asarray(stats["std_frame"]), cmap="gray", vmin=0)
    axes[1].set_title("std over videos and frames", fontsize=8)
    for ax in axes[:2]:
        ax.set_xticks([])
        ax.set_yticks([])
    hist = np.asarray(stats.get("grey_histogram_in_fov") or [])
    if hist.size:
        axes[2].plot(hist, label=name)
    axes[2].set_title("grey histogram inside the field of view", fontsize=8)
    axes[2].set_xlabel("grey")
    profile = stats.get("mean_grey_by_depth_row") or stats["mean_grey_by_depth_row_every_8"]
    rows = np.arange(len(profile)) * (1 if "mean_grey_by_depth_row" in stats else DEPTH_ROW_STEP)
    axes[3].plot(rows, profile, label=name)
    axes[3].set_title("mean grey by depth (row)", fontsize=8)
    axes[3].set_xlabel("row (0 = apex / transducer)")
    acf = stats["temporal_autocorrelation_lag0to5"]
    axes[4].plot(range(len(acf)), acf, "o-", label=name)
    axes[4].set_ylim(0, 1)
    axes[4].set_title("pixel correlation with k frames later", fontsize=8)
    axes[4].set_xlabel("k (frames)")
    if reference is not None:
        for d in reference["grey_histogram_in_fov_deciles"]:
            axes[2].axvline(d, color="C1", lw=0.8, ls="--")
        axes[2].plot([], [], color="C1", ls="--", label="reference deciles")
        ref_rows = np.arange(len(reference["mean_grey_by_depth_row_every_8"])) * DEPTH_ROW_STEP
        axes[3].plot(ref_rows, reference["mean_grey_by_depth_row_every_8"], "s--", color="C1",
                     label="reference")
        ref_acf = reference["temporal_autocorrelation_lag0to5"]
        axes[4].plot(range(len(ref_acf)), ref_acf, "s--", color="C1", label="reference")
        for ax in axes[2:]:
            ax.legend(fontsize=7)
