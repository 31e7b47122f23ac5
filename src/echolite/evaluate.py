"""Evaluate an EF model on a split: per-video predictions CSV and metrics with bootstrap CIs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from echolite.config import RunConfig
from echolite.metrics import regression_metrics
from echolite.runtime import atomic_write_text
from echolite.train import eval_loader, predict, split_table


def evaluate(model: torch.nn.Module, cfg: RunConfig, root: str | Path, table: pd.DataFrame,
             device: torch.device, split: str = "TEST", predictions_csv: str | Path | None = None,
             reference_ef: float | None = None) -> dict:
    """Predict every video of ``split`` and return the metrics dict (see regression_metrics).

    Args:
        reference_ef: the TRAIN-mean EF; its MAE ("predict the mean") is reported for scale.
        predictions_csv: where to write FileName, EF, EF_pred, Split (atomically), if given.
    """
    rows = split_table(table, split)
    loader = eval_loader(root, rows, cfg)
    pred = predict(model.to(device), loader, device)
    true = loader.dataset.ef
    if predictions_csv is not None:
        df = pd.DataFrame({"FileName": loader.dataset.names, "EF": true, "EF_pred": pred,
                           "Split": split})
        atomic_write_text(predictions_csv, df.to_csv(index=False, float_format="%.3f"))
    metrics = regression_metrics(true, pred, cfg.eval.threshold_ef, cfg.eval.n_bootstrap,
                                 seed=cfg.train.seed, reference=reference_ef)
    metrics["split"] = split
    return metrics
