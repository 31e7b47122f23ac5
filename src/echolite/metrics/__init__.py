"""Metrics with bootstrap confidence intervals; task-agnostic core plus per-kind metric functions.

A task names its metric functions ``fn(y_true, y_pred) -> float``; :mod:`.bootstrap` gives each a
95 % CI and, against a reference model, a *paired* Δ with its CI on the same resamples.
"""
