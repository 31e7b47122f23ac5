"""Figures for notebooks and exploration (the run report's figures live in echolite.report)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib.pyplot as pyplot  # notebooks: figures display inline

    return pyplot


def echo_strip(root: str | Path, file_name: str, n: int = 8):
    """``n`` frames of one video, evenly over its first beat-and-a-half, with the end-diastolic and
    end-systolic tracings of VolumeTracings.csv drawn on the frames they belong to; the title
    gives the video's EF from FileList.csv. Returns the matplotlib figure."""
    import pandas as pd

    from echolite.data.echonet import TRACINGS, read_filelist, video_path
    from echolite.data.tracings import disk_volume
    from echolite.data.video import read_frames

    root = Path(root)
    row = read_filelist(root).set_index("FileName").loc[file_name]
    tracings = pd.read_csv(root / TRACINGS) if (root / TRACINGS).is_file() else None
    traced = {}
    if tracings is not None:
        rows = tracings[tracings["FileName"].str.replace(".avi", "", regex=False) == file_name]
        for frame, fr in rows.groupby("Frame"):
            traced[int(frame)] = fr[["X1", "Y1", "X2", "Y2"]].to_numpy()
    volumes = {f: disk_volume(c) for f, c in traced.items()}
    phases = {f: "ED" if v == max(volumes.values()) else "ES" for f, v in volumes.items()}
    span = min(int(row["NumberOfFrames"]) - 1, int(1.5 * row["FPS"]))
    picks = sorted(set(np.linspace(0, span, n).round().astype(int)) | set(traced))[: n + len(traced)]
    frames = read_frames(video_path(root, file_name), np.asarray(picks))[..., 0]
    plt = _plt()
    fig, axes = plt.subplots(1, len(picks), figsize=(1.6 * len(picks), 2.1))
    for ax, f, img in zip(np.atleast_1d(axes), picks, frames):
        ax.imshow(img, cmap="gray", vmin=0, vmax=255)
        if f in traced:
            chords = traced[f][1:]
            outline = np.concatenate([chords[:, :2], chords[::-1, 2:]])
            ax.plot(*np.vstack([outline, outline[:1]]).T, color="C1" if phases[f] == "ED" else "C3", lw=1)
            ax.set_title(f"{f} ({phases[f]})", fontsize=8)
        else:
            ax.set_title(str(f), fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{file_name}: EF {row['EF']:.1f} %  (orange: end-diastole, red: end-systole)", fontsize=9)
    fig.tight_layout()
    return fig


def learning_curve(checkpoint: str | Path):
    """Training loss and VAL score per epoch of a saved baseline (its checkpoint's history)."""
    import torch

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    history = [h for h in ckpt["history"] if "train_loss" in h]
    epochs = [h["epoch"] for h in history]
    plt = _plt()
    fig, ax1 = plt.subplots(figsize=(6, 3.2))
    ax1.plot(epochs, [h["train_loss"] for h in history], "o-", color="C0", label="training loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss", color="C0")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [h["val_score"] for h in history], "s-", color="C3", label="VAL score")
    ax2.set_ylabel("VAL score (primary metric)", color="C3")
    ax1.set_title(f"best epoch {ckpt['epoch']} (VAL {ckpt['val_score']:.3f})", fontsize=9)
    fig.tight_layout()
    return fig


def pred_vs_true(run_dir: str | Path, variants: list[str] | None = None):
    """Predicted against true values on the evaluation split for the reference and ``variants``
    (default: every measured variant), one panel each, from results.json (regression tasks)."""
    from echolite.report import load_results, ok_rows

    results = load_results(run_dir)
    rows = [r for r in ok_rows(results) if variants is None or r["name"] in ("fp32", *variants)]
    truth = np.asarray(results["measure"]["eval"]["targets"])
    plt = _plt()
    fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.2), squeeze=False)
    lo, hi = float(truth.min()), float(truth.max())
    for ax, r in zip(axes[0], rows):
        ax.scatter(truth, r["prediction"], s=8, alpha=0.6)
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        v = r["metrics"]["values"][results["task"]["primary"]]
        ax.set_title(f"{r['name']}\n{results['task']['primary']} {v['value']:.2f}", fontsize=8)
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
    fig.tight_layout()
    return fig
