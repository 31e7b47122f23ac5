"""Every figure echolite draws: the report's (a pure function of results.json), the tasks' report
figures (named by a task's ``FIGURES``: a Bland–Altman plot for a measurement, a confusion matrix
for a classification) and the notebook figures (an echo strip with its tracings, a learning curve,
predicted against true).

Report figures draw on matplotlib's object API (no pyplot, no global backend): report files render
anywhere, and a notebook that writes a report keeps its own inline backend. Notebook figures use
pyplot so that they display inline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from echolite.data.echonet import TRACINGS, read_filelist, video_path
from echolite.data.tracings import disk_volume
from echolite.data.video import read_frames
from echolite.results import MB, load_results, ok_rows, primary, prune_level, reference, size_bytes


# --- report figures ------------------------------------------------------------------------------
class _Figures:
    """Figures drawn on matplotlib's object API (no pyplot, no global backend): report files
    render anywhere, and a notebook that generates a report keeps its own inline backend."""

    @staticmethod
    def subplots(*args, figsize=None, **kwargs):
        fig = Figure(figsize=figsize)
        return fig, fig.subplots(*args, **kwargs)

    @staticmethod
    def close(fig) -> None:
        fig.clear()


def plt() -> _Figures:
    return _Figures()


def plain_axis(axis) -> None:
    """Plain decimal tick labels on a log axis (no 2×10¹)."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_minor_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)))
    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda x, _: ""))


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both x and y (both lower is better)."""
    front = []
    for i, (x, y) in enumerate(points):
        beaten = any(x2 <= x and y2 <= y and (x2 < x or y2 < y)
                     for j, (x2, y2) in enumerate(points) if j != i)
        if not beaten:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def plot_pareto(results: dict, path: Path) -> str | None:
    """Paired Δ(primary) with its CI against latency and against size; front drawn; numbered."""
    rows = ok_rows(results)
    if len(rows) < 2:
        return None
    p = primary(results)
    task = results["task"]
    rel = task["budget"]["relative"]
    sign = -1.0 if p["higher_is_better"] else 1.0  # plot "worsening" upwards for both directions

    def dy(r):
        d = (r["metrics"].get("paired_delta") or {}).get(p["key"])
        if d is None:
            return 0.0, 0.0, 0.0
        k = 100.0 if rel else 1.0
        lo, hi = (d["rel_ci_low"], d["rel_ci_high"]) if rel else (d["ci_low"], d["ci_high"])
        v = d["relative"] if rel else d["value"]
        vals = sorted([sign * k * lo, sign * k * hi])
        return sign * k * v, vals[0], vals[1]

    pyplot = plt()
    fig, axes = pyplot.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    budget = task["budget"]["max_worsening"] * (100.0 if rel else 1.0)
    ylabel = (f"worsening of {p['label']} vs FP32 (%, paired 95 % CI)" if rel else
              f"worsening of {p['label']} vs FP32 ({p['unit'] or 'units'}, paired 95 % CI)")
    for ax, key, label in ((axes[0], "latency", "p50 latency, batch 1 (ms, log scale)"),
                           (axes[1], "size", "size on disk (MB, log scale)")):
        pts = []
        for i, r in enumerate(rows):
            x = r["latency_ms"]["p50"] if key == "latency" else size_bytes(r) / MB
            y, lo, hi = dy(r)
            pts.append((x, y))
            color = "black" if i == 0 else f"C{i % 10}"
            ax.errorbar(x, y, yerr=[[y - lo], [hi - y]], fmt="o", color=color, capsize=3, ms=5)
            ax.annotate(str(i), (x, y), xytext=(5, 4), textcoords="offset points", fontsize=8,
                        color=color, fontweight="bold")
        front = pareto_front(pts)
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "-", color="grey", lw=1,
                alpha=0.6, zorder=0, label="Pareto front (points)")
        ax.axhline(0, color="black", lw=0.8)
        ax.axhline(budget, color="red", lw=0.8, ls="--", label=f"budget ({task['budget']['text']})")
        ax.set_xscale("log")
        plain_axis(ax.xaxis)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel(ylabel)
    axes[0].legend(fontsize=7, loc="upper right")
    legend = "\n".join(f"{i}  {r['name']}" for i, r in enumerate(rows))
    fig.text(0.995, 0.5, legend, fontsize=7, va="center", ha="right", family="monospace")
    fig.tight_layout(rect=(0, 0, 0.83, 1))
    fig.savefig(path, dpi=110)
    pyplot.close(fig)
    return (f"**{path.name}** — each point a variant (numbers: legend at right; 0 = FP32). Up = worse "
            f"{p['label']} than FP32 (paired 95 % CI on the same {task['item']}s); left = faster / smaller. "
            f"Points below the dashed line are within the budget; the grey line joins the Pareto front.")


def plot_pruning(results: dict, path: Path) -> str | None:
    """The primary metric against sparsity (unstructured) and channel ratio (structured), with the
    FP32 value and its CI as a band; FP32 pruned rows on the reference's runtime only."""
    ref = reference(results)
    points: dict[str, list] = {"unstructured": [], "structured": []}
    for r in ok_rows(results)[1:]:
        level = prune_level(r)
        if level and r["backend"] == ref["backend"] and r["precision"] == "fp32":
            points[level[0]].append((level[1], r))
    kinds = [k for k, v in points.items() if v]
    if not kinds:
        return None
    p = primary(results)
    fp32 = ref["metrics"]["values"][p["key"]]
    pyplot = plt()
    fig, axes = pyplot.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        pts = sorted(points[kind], key=lambda t: t[0])
        ax.axhspan(fp32["ci_low"], fp32["ci_high"], color="grey", alpha=0.25, label="FP32 95 % CI")
        ax.axhline(fp32["value"], color="black", lw=1, label="FP32")
        for x, r in pts:
            v = r["metrics"]["values"][p["key"]]
            err = [[v["value"] - v["ci_low"]], [v["ci_high"] - v["value"]]]
            ax.errorbar(100 * x, v["value"], yerr=err, fmt="o", capsize=3)
            ax.annotate(r["name"], (100 * x, v["value"]), xytext=(4, 4), textcoords="offset points",
                        fontsize=7)
        ax.set_xlabel("weights set to zero (%)" if kind == "unstructured" else "channels removed (%)")
        ax.set_ylabel(f"{p['label']} ({results['measure']['eval']['split']}, 95 % CI)")
        ax.set_title(f"{kind} pruning", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot.close(fig)
    return (f"**{path.name}** — {p['label']} of the pruned FP32 models ({ref['backend']}) against how much "
            "was pruned; the grey band is the FP32 model's 95 % CI. Unstructured pruning leaves dense "
            "tensors with zeros: dense kernels are not faster for it, its gain is the zipped size.")


def plot_sensitivity(results: dict, path: Path) -> str | None:
    hit = next(((r, s["sensitivity"]) for r in ok_rows(results) for s in r["details"].get("steps", [])
                if s.get("sensitivity")), None)
    if hit is None:
        return None
    row, sens = hit
    layers = sens["layers"]
    p = primary(results)
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(8, max(3, 0.24 * len(layers))))
    names = [s["layer"] for s in layers][::-1]
    gains = [s["gain"] for s in layers][::-1]
    ax.barh(names, gains, color=["C3" if g > 0 else "C0" for g in gains])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(f"{p['label']} recovered on VAL by keeping only this layer in FP32 "
                  f"(all-int8 {sens['all_int8_score']:.3f}, FP32 {sens['fp32_score']:.3f})")
    ax.set_title(f"per-layer quantization sensitivity ({row['name']}, {sens['items']} VAL "
                 f"{results['task']['item']}s)", fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot.close(fig)
    kept = next((s.get("kept_fp32") for s in row["details"]["steps"] if "kept_fp32" in s), [])
    return (f"**{path.name}** — layers by the model's own module names; a long bar = quantizing that "
            f"layer costs accuracy. The fallback kept {', '.join(kept) if kept else 'no layer'} in FP32.")




# --- the tasks' report figures ---------------------------------------------------------------
def plot_agreement(results: dict, path: Path) -> str | None:
    """Bland–Altman of FP32 vs truth, and every variant's per-video difference from FP32."""
    rows = ok_rows(results)
    truth = np.asarray(results["measure"]["eval"]["targets"])
    split = results["measure"]["eval"]["split"]
    ref = np.asarray(rows[0]["prediction"])
    pyplot = plt()
    fig, (ax1, ax2) = pyplot.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1, 1.4]})
    mean, diff = (ref + truth) / 2, ref - truth
    bias, sd = diff.mean(), diff.std(ddof=1) if len(diff) > 1 else 0.0
    ax1.scatter(mean, diff, s=10, alpha=0.6, color="black")
    hi, lo = bias + 1.96 * sd, bias - 1.96 * sd
    for y, ls, text in ((bias, "-", f"bias {bias:+.2f}"), (hi, "--", f"+1.96 SD {hi:+.2f}"),
                        (lo, "--", f"−1.96 SD {lo:+.2f}")):
        ax1.axhline(y, color="C3", ls=ls, lw=1)
        ax1.annotate(text, (1.0, y), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                     textcoords="offset points", ha="right", fontsize=8, color="C3")
    unit = primary(results)["unit"] or "units"
    ax1.set_xlabel("mean of the FP32 prediction and the truth")
    ax1.set_ylabel(f"FP32 prediction − truth ({unit})")
    ax1.set_title(f"Bland–Altman: FP32 baseline vs truth ({split})", fontsize=10)
    ax1.grid(alpha=0.3)
    variants = rows[1:]
    if variants:
        deltas = [np.asarray(r["prediction"]) - ref for r in variants]
        ax2.boxplot(deltas, whis=(0, 100), widths=0.6)
        for i, d in enumerate(deltas, 1):
            ax2.scatter(np.full(len(d), i) + np.random.default_rng(i).uniform(-0.18, 0.18, len(d)), d,
                        s=5, alpha=0.5, color=f"C{i % 10}")
        ax2.set_xticks(range(1, len(variants) + 1), [r["name"] for r in variants], rotation=35,
                       ha="right", fontsize=8)
    ax2.axhline(0, color="black", lw=0.8)
    ax2.set_ylabel(f"variant − FP32 prediction ({unit})")
    ax2.set_title(f"what each variant changed, per {results['task']['item']} (box: quartiles; whiskers: "
                  "min–max)", fontsize=10)
    ax2.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot.close(fig)
    item = results["task"]["item"]
    return (f"**{path.name}** — left: agreement of the FP32 model with the truth as clinicians judge a "
            f"measurement (bias and 95 % limits of agreement, bias ± 1.96 SD: {bias:+.2f} ± {1.96 * sd:.2f} "
            f"{unit}). Right: for each variant, how far its prediction moved from FP32's on every {split} "
            f"{item}; a box hugging 0 means the variant measures like the baseline.")


def plot_confusion(results: dict, path: Path) -> str | None:
    """The FP32 model's confusion matrix, and how many evaluated images each variant labels differently."""
    rows = ok_rows(results)
    extra = rows[0]["metrics"]["extra"]
    confusion, classes = np.asarray(extra["confusion"]), extra["classes"]
    pyplot = plt()
    fig, (ax1, ax2) = pyplot.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1, 1.2]})
    share = confusion / np.maximum(1, confusion.sum(axis=1, keepdims=True))
    ax1.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if confusion[i, j]:
                ax1.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=7,
                         color="white" if share[i, j] > 0.5 else "black")
    ax1.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax1.set_yticks(range(len(classes)), classes, fontsize=8)
    ax1.set_xlabel("predicted class")
    ax1.set_ylabel("true class")
    split = results["measure"]["eval"]["split"]
    ax1.set_title(f"FP32 baseline on {split} (counts; colour: share of the row)", fontsize=10)
    variants = rows[1:]
    if variants:
        changed = [r["details"]["vs_reference"]["changed"] for r in variants]
        ax2.barh([r["name"] for r in variants][::-1], changed[::-1], color="C1")
        ax2.set_xlabel(f"{results['task']['item']}s classified differently from FP32 "
                       f"(of {results['measure']['eval']['n']})")
        ax2.tick_params(axis="y", labelsize=8)
        ax2.grid(alpha=0.3, axis="x")
    ax2.set_title("what each variant changed", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot.close(fig)
    return (f"**{path.name}** — left: where the FP32 model confuses classes (rows: true class). Right: for "
            f"each variant, how many {split} images it assigns another class than FP32 does; 0 means it "
            "classifies exactly like the baseline.")


TASK_FIGURES = {"agreement": ("agreement.png", plot_agreement), "confusion": ("confusion.png", plot_confusion)}


def task_figures(results: dict, run_dir: Path, names) -> list[str | None]:
    """The task's figures ``names`` (keys of :data:`TASK_FIGURES`), written into ``run_dir``."""
    out = []
    for name in names:
        file, draw = TASK_FIGURES[name]
        out.append(draw(results, Path(run_dir) / file))
    return out


# --- notebook figures -------------------------------------------------------------------------------
def _pyplot():
    import matplotlib.pyplot as pyplot  # local: selecting a backend is the notebook's business

    return pyplot


def echo_strip(root: str | Path, file_name: str, n: int = 8):
    """``n`` frames of one video, evenly over its first beat-and-a-half, with the end-diastolic and
    end-systolic tracings of VolumeTracings.csv drawn on the frames they belong to; the title
    gives the video's EF from FileList.csv. Returns the matplotlib figure."""
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
    plt = _pyplot()
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
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    history = [h for h in ckpt["history"] if "train_loss" in h]
    epochs = [h["epoch"] for h in history]
    plt = _pyplot()
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
    results = load_results(run_dir)
    rows = [r for r in ok_rows(results) if variants is None or r["name"] in ("fp32", *variants)]
    truth = np.asarray(results["measure"]["eval"]["targets"])
    plt = _pyplot()
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
