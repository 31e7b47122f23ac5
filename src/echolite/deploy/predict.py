"""``echolite predict``: EF of videos from a run's saved variant (``RUN_DIR/VARIANT``) or an export
bundle, through the one torch-free path of :mod:`echolite.deploy.runner`; and what averaging
clips over the whole video buys, measured on a split of the run's own data (``--split TEST``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from echolite import EcholiteError
from echolite.compress.base import Stage
from echolite.compress.runners import Runner, open_runner
from echolite.config import RunConfig, from_dict, with_model
from echolite.data.echonet import read_filelist, video_path
from echolite.deploy.runner import PREPROCESS_FILE, check_preprocess, decode_video, open_bundle, predict_video
from echolite.metrics.bootstrap import paired_delta, resample_indices
from echolite.metrics.regression import mae
from echolite.results import load_results
from echolite.tasks import task_class

log = logging.getLogger(__name__)
DEFAULT_CLIPS = 8  # test-time clips per video (EchoNet-Dynamic averages every beat's clip)


@dataclass
class Variant:
    """A measured row of a run, opened from its files."""

    run_dir: Path
    name: str
    results: dict
    row: dict
    stage: Stage
    cfg: RunConfig

    def runner(self, threads: int | None = None) -> Runner:
        cls = task_class(self.cfg.task)
        return open_runner(self.stage, lambda overrides=None: cls.build_model(with_model(self.cfg, overrides)),
                           threads or self.cfg.measure.threads)


def open_variant(run_dir: str | Path, name: str) -> Variant:
    """The row ``name`` of ``run_dir/results.json`` (measured, status ok) and its stored stage."""
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    row = next((r for r in results["rows"] if r["name"] == name and r["status"] == "ok"), None)
    if row is None:
        known = [r["name"] for r in results["rows"] if r["status"] == "ok"]
        raise EcholiteError(f"{run_dir}: no measured variant {name!r} (have: {', '.join(known)})")
    stage = Stage.load(run_dir / results["run"]["store"] / row["store"])
    return Variant(run_dir, name, results, row, stage, from_dict(results["run"]["config"]))


def preprocess_spec(cfg: RunConfig, clips: int = DEFAULT_CLIPS) -> dict:
    """How a video becomes the model's input, as the run's data settings say (``preprocess.json``)."""
    if cfg.task != "ef":
        raise EcholiteError(f"predict and export serve the ef task (videos); this run is {cfg.task!r}")
    d = cfg.data
    return check_preprocess({
        "n_frames": d.n_frames, "size": d.size, "sampling": d.sampling, "window_s": d.window_s, "clips": clips,
        "grey": "OpenCV BGR2GRAY (ITU-R BT.601 luma) of every decoded frame; grey video is unchanged",
        "resize": f"OpenCV INTER_AREA to {d.size}x{d.size} when the frames are another size",
        "clip_frames": f"'{d.sampling}' sampling: " + (
            f"{d.n_frames} frames at a fixed stride spanning {d.window_s:g} s" if d.sampling == "window"
            else f"{d.n_frames} frames spread over the whole video"),
        "input": {"shape": [1, d.n_frames, 1, d.size, d.size], "dtype": "float32",
                  "values": "raw pixel values 0..255 (the model normalises them itself)"},
        "output": "EF in percent, shape (1,)"}, "the run's data settings")


def resolve(model: str | Path, threads: int = 2, clips: int | None = None):
    """``--model``: an export bundle or ``RUN_DIR/VARIANT``; returns (run(x) on numpy, preprocess,
    the variant or None)."""
    model = Path(model)
    if (model / PREPROCESS_FILE).is_file():
        run, prep = open_bundle(model, threads)
        return run, {**prep, "clips": clips or prep["clips"]}, None
    if not (model.parent / "results.json").is_file():
        raise EcholiteError(f"--model {model}: neither an export bundle (no {PREPROCESS_FILE}) nor RUN_DIR/VARIANT "
                            f"(no results.json in {model.parent})")
    variant = open_variant(model.parent, model.name)
    prep = preprocess_spec(variant.cfg, clips or DEFAULT_CLIPS)
    runner = variant.runner(threads)

    def run(x: np.ndarray) -> np.ndarray:
        return runner(torch.from_numpy(x)).detach().numpy()

    return run, prep, variant


def evaluate_split(variant: Variant, run, prep: dict, split: str = "TEST") -> tuple[dict, list[dict]]:
    """Whole-video averaging (``prep['clips']`` clips) against one clip on every video of ``split``
    of the run's own data: MAE of each and their paired Δ (95 % CI, the run's resamples).

    The one-clip predictions are also compared with the run's row (same clip, same model file):
    ``max_abs_diff_vs_row`` says the predictor reads videos as the measurement did.
    """
    root = Path(variant.results["run"]["data"]["root"])
    table = read_filelist(root)
    table = table[table["Split"] == split.upper()]
    if table.empty:
        raise EcholiteError(f"{root}: no {split} videos")
    rows = []
    for name, ef in zip(table["FileName"], table["EF"].astype(float)):
        path = video_path(root, name)
        frames = decode_video(path, prep["size"])  # once, for both readings
        whole = predict_video(path, run, prep, prep["clips"], frames=frames)
        one = predict_video(path, run, prep, 1, frames=frames)
        rows.append({**whole, "FileName": name, "EF": ef, "EF_pred_one_clip": one["EF_pred"]})
    y = np.array([r["EF"] for r in rows])
    p_whole = np.array([r["EF_pred"] for r in rows])
    p_one = np.array([r["EF_pred_one_clip"] for r in rows])
    ev = variant.cfg.eval
    idx = resample_indices(len(y), ev.n_bootstrap, ev.seed)
    out = {"variant": variant.name, "split": split.upper(), "n": len(y), "clips": prep["clips"],
           "mae_whole_video": mae(y, p_whole), "mae_one_clip": mae(y, p_one),
           "mean_clips": float(np.mean([r["clips"] for r in rows])),
           "mean_sd_across_clips": float(np.mean([r["EF_sd"] for r in rows])),
           "paired_delta": paired_delta({"mae": mae}, y, p_whole, p_one, idx)["mae"]}
    measured = variant.results["measure"]["eval"]
    if measured["split"] == split.upper():
        by_id = dict(zip(measured["ids"], variant.row["prediction"]))
        out["max_abs_diff_vs_row"] = float(max(abs(r["EF_pred_one_clip"] - by_id[r["FileName"]]) for r in rows))
    return out, rows
