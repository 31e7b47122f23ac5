"""Evaluate a saved checkpoint on a split of any dataset of its task: per-item predictions + metrics.

Outputs go to their own folder, keyed by the dataset and the checkpoint, so evaluating on other
data never replaces a run's files.
"""

from __future__ import annotations

from pathlib import Path

import torch

from echolite.cache import digest, file_digest
from echolite.config import apply_overrides
from echolite.metrics.bootstrap import resample_indices
from echolite.runtime import atomic_write_json, atomic_write_text
from echolite.tasks.base import model_runner, predict_outputs
from echolite.train import load_checkpoint


def default_out(checkpoint: str | Path, data: str | Path, split: str) -> Path:
    where = Path(data).resolve()
    name = f"{where.name}-{digest(str(where))[:6]}-{split.lower()}-ckpt{file_digest(checkpoint)[:8]}"
    return Path("runs") / "evaluate" / name


def evaluate_checkpoint(checkpoint: str | Path, data: str | Path, split: str, out: str | Path,
                        device: torch.device) -> dict:
    """Predict every item of ``split`` of ``data`` with the checkpoint's model.

    Writes ``predictions_<split>.csv`` and ``metrics_<split>.json`` into ``out``; returns the
    metrics (with 95 % bootstrap CIs).
    """
    cls, cfg, model, _ = load_checkpoint(checkpoint)
    cfg = apply_overrides(cfg, [f"data.root={Path(data)}"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    task = cls(cfg, cls.prepare(cfg, out))
    evalset = task.eval_set(split)
    outputs = predict_outputs(model_runner(model.to(device), device), evalset, cfg.train.batch_size)
    pred = task.decode(outputs)
    idx = resample_indices(len(evalset), cfg.eval.n_bootstrap, cfg.eval.seed)
    metrics = {"checkpoint": str(checkpoint), "data": str(data), "data_key": task.data.key,
               **task.score(evalset, pred, idx)}
    atomic_write_text(out / f"predictions_{split.lower()}.csv",
                      task.prediction_table(evalset, pred).to_csv(index=False, float_format="%.4f"))
    atomic_write_json(out / f"metrics_{split.lower()}.json", metrics)
    return metrics
