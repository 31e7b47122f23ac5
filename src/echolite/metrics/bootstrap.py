"""Percentile bootstrap over items: CIs of metrics and paired differences on shared resamples.

Every row of a run is scored on the *same* resample indices (drawn once from the evaluation
seed), so the Δ of a variant against the reference is computed pairwise: the same resampled
items for both models. That paired CI, not two overlapping unpaired CIs, says whether a variant
really differs from the reference.

Resamples on which a metric is undefined (e.g. an AUC without positives) are dropped from its CI;
the count is reported as ``dropped_nan``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MetricFn = Callable[[np.ndarray, np.ndarray], float]
LEVEL = 95.0  # confidence level (%)


def resample_indices(n: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """(n_bootstrap, n) item indices drawn with replacement; a function of (n, n_bootstrap, seed)."""
    if n < 1:
        raise ValueError("cannot bootstrap an empty evaluation set")
    return np.random.default_rng([seed, n]).integers(0, n, size=(n_bootstrap, n))


def _interval(samples: np.ndarray) -> tuple[float, float, int]:
    finite = samples[np.isfinite(samples)]
    dropped = int(len(samples) - len(finite))
    if not len(finite):
        return float("nan"), float("nan"), dropped
    lo, hi = np.percentile(finite, [(100 - LEVEL) / 2, 100 - (100 - LEVEL) / 2])
    return float(lo), float(hi), dropped


def with_ci(fns: dict[str, MetricFn], y, p, idx: np.ndarray) -> dict:
    """``{name: {"value", "ci_low", "ci_high", "resamples", "dropped_nan"}}`` for each metric."""
    y, p = np.asarray(y), np.asarray(p)
    if y.shape[0] != p.shape[0] or y.shape[0] == 0:
        raise ValueError(f"targets and predictions must be non-empty and of equal length, got "
                         f"{y.shape}, {p.shape}")
    out = {}
    for name, fn in fns.items():
        boot = np.array([fn(y[i], p[i]) for i in idx])
        lo, hi, dropped = _interval(boot)
        out[name] = {"value": float(fn(y, p)), "ci_low": lo, "ci_high": hi,
                     "resamples": int(len(idx)), "dropped_nan": dropped}
    return out


def paired_delta(fns: dict[str, MetricFn], y, p, p_ref, idx: np.ndarray) -> dict:
    """Δ = metric(p) - metric(p_ref) with a CI over the same resamples, absolute and relative.

    Returns:
        ``{name: {"value", "ci_low", "ci_high", "relative", "rel_ci_low", "rel_ci_high",
        "dropped_nan"}}``; relative = Δ / metric(p_ref) (per resample for its CI).
    """
    y, p, p_ref = np.asarray(y), np.asarray(p), np.asarray(p_ref)
    out = {}
    for name, fn in fns.items():
        ref_boot = np.array([fn(y[i], p_ref[i]) for i in idx])
        var_boot = np.array([fn(y[i], p[i]) for i in idx])
        delta = var_boot - ref_boot
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(ref_boot != 0, delta / np.abs(ref_boot), np.nan)
        ref_value = float(fn(y, p_ref))
        value = float(fn(y, p)) - ref_value
        lo, hi, dropped = _interval(delta)
        rlo, rhi, _ = _interval(rel)
        out[name] = {"value": value, "ci_low": lo, "ci_high": hi,
                     "relative": value / abs(ref_value) if ref_value else float("nan"),
                     "rel_ci_low": rlo, "rel_ci_high": rhi, "dropped_nan": dropped}
    return out
