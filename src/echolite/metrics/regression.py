"""Regression metrics (numpy only): MAE, RMSE, R², and ROC AUC of a thresholded target."""

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


def auc_below(threshold: float):
    """AUC for detecting ``y < threshold`` with the score ``-prediction`` (low predicted = positive)."""

    def fn(y: np.ndarray, p: np.ndarray) -> float:
        return auc(y < threshold, -p)

    return fn
