"""Classification metrics (numpy only), in percent."""

from __future__ import annotations

import numpy as np


def accuracy(y: np.ndarray, p: np.ndarray) -> float:
    return float(100.0 * np.mean(y == p))


def macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    """Unweighted mean over the classes present in ``y`` or ``p`` of F1 (%)."""
    scores = []
    for c in np.union1d(y, p):
        tp = np.sum((p == c) & (y == c))
        denom = np.sum(p == c) + np.sum(y == c)
        scores.append(2.0 * tp / denom if denom else 0.0)
    return float(100.0 * np.mean(scores))

