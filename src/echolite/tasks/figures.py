"""The tasks' own report figures (a pure function of results.json, like the report core).

Kept apart from the task modules so that editing a figure never changes what a model or an
artifact was made from (see echolite.cache.code_digest).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_agreement(results: dict, path: Path) -> str | None:
    """Bland–Altman of FP32 vs truth, and every variant's per-video difference from FP32."""
    from echolite.report import ok_rows, plt

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
    ax1.set_xlabel("mean of FP32 prediction and true EF (%)")
    ax1.set_ylabel("FP32 prediction − true EF (EF points)")
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
    ax2.set_ylabel("variant − FP32 prediction (EF points)")
    ax2.set_title("what each variant changed, per video (box: quartiles; whiskers: min–max)", fontsize=10)
    ax2.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot.close(fig)
    return (f"**{path.name}** — left: agreement of the FP32 model with the true EF as clinicians judge a "
            f"measurement (bias and 95 % limits of agreement, bias ± 1.96 SD: {bias:+.2f} ± {1.96 * sd:.2f} "
            f"EF points). Right: for each variant, how far its prediction moved from FP32's on every {split} "
            f"video; a box hugging 0 means the variant measures EF like the baseline.")


def plot_confusion(results: dict, path: Path) -> str | None:
    """The FP32 model's confusion matrix, and how many evaluated images each variant labels differently."""
    from echolite.report import ok_rows, plt

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
