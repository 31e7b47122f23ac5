"""Regression metrics with bootstrap confidence intervals. Task-agnostic (numpy only)."""

from __future__ import annotations

import numpy as np


def mae(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(np.abs(p - y)))


def rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((p - y) ** 2)))


def r2(y: np.ndarray, p: np.ndarray) -> float:
    ss_tot = np.sum((y - y.mean()) ** 2)
    return float(1.0 - np.sum((p - y) ** 2) / ss_tot) if ss_tot > 0 else float("nan")


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC = P(score of a positive > score of a negative), ties count half (Mann-Whitney)."""
    labels = labels.astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def regression_metrics(y_true, y_pred, threshold: float | None = 50.0, n_bootstrap: int = 1000,
                       seed: int = 0, reference: float | None = None) -> dict:
    """MAE, RMSE, R² and (optionally) AUC for ``y < threshold``, each with a bootstrap 95 % CI.

    Args:
        y_true, y_pred: 1-D arrays of the same length.
        threshold: positives are ``y_true < threshold``, scored by ``-y_pred``; None skips AUC.
        n_bootstrap: resamples (videos drawn with replacement) for the percentile CIs.
        reference: a constant prediction (e.g. the TRAIN mean) whose MAE is reported for scale.

    Returns:
        ``{"n": N, "mae": {"value", "ci_low", "ci_high"}, ..., "mae_predict_reference": float}``
    """
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1 or len(y) == 0:
        raise ValueError(f"y_true and y_pred must be equal-length 1-D arrays, got {y.shape}, {p.shape}")
    fns = {"mae": mae, "rmse": rmse, "r2": r2}
    if threshold is not None:
        fns["auc"] = lambda a, b: auc(a < threshold, -b)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(y), size=(n_bootstrap, len(y)))
    out: dict = {"n": int(len(y))}
    for name, fn in fns.items():
        boot = np.array([fn(y[i], p[i]) for i in idx]) if n_bootstrap else np.array([])
        boot = boot[np.isfinite(boot)]
        lo, hi = (np.percentile(boot, [2.5, 97.5]) if len(boot) else (np.nan, np.nan))
        out[name] = {"value": fn(y, p), "ci_low": float(lo), "ci_high": float(hi)}
    if reference is not None:
        out["mae_predict_reference"] = mae(y, np.full_like(y, reference))
    return out
