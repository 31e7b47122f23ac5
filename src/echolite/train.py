"""Training of the EF regressor: AdamW, warm-up + cosine/step schedule, AMP, atomic checkpoints.

Checkpoints (``torch.load(..., weights_only=True)`` safe: tensors, numbers, strings, lists, dicts):
  * ``last.pt``: after every epoch; model, optimizer, scheduler, history -> resume;
  * ``best.pt``: the epoch with the lowest validation MAE; model, config, statistics, metrics.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from echolite import EcholiteError
from echolite.config import RunConfig, from_dict
from echolite.data.echonet import EchoClips, EpochSampler, pixel_stats
from echolite.model import EFRegressor, load_pretrained_backbone
from echolite.runtime import amp_dtype, atomic_torch_save, autocast, seed_everything

log = logging.getLogger(__name__)
BEST, LAST = "best.pt", "last.pt"


def _fingerprint(cfg: RunConfig) -> dict:
    """The parts of a config that change what is trained (not workers or evaluation settings)."""
    d = cfg.to_dict()
    data = {k: v for k, v in d["data"].items() if k not in ("num_workers", "root")}
    return {"data": data, "model": d["model"], "train": {k: v for k, v in d["train"].items()
                                                         if k != "device"}}


def split_table(table: pd.DataFrame, split: str) -> pd.DataFrame:
    part = table[table["Split"] == split]
    if part.empty:
        raise EcholiteError(f"the dataset has no {split} videos (FileList.csv column Split)")
    return part


def eval_loader(root, table: pd.DataFrame, cfg: RunConfig, batch_size: int | None = None):
    ds = EchoClips(root, table, cfg.data.n_frames, cfg.data.size, 0, cfg.data.sampling,
                   cfg.data.window_s)
    return DataLoader(ds, batch_size=batch_size or cfg.train.batch_size, shuffle=False,
                      num_workers=cfg.data.num_workers)


@torch.inference_mode()
def predict(model: torch.nn.Module, loader, device: torch.device, amp=None) -> np.ndarray:
    """EF predictions (%) for every clip of ``loader``, in order."""
    model.eval()
    out = []
    for clips, _ in loader:
        with autocast(device, amp):
            out.append(model(clips.to(device).float()).float().cpu())
    return torch.cat(out).numpy()


def build_model(cfg: RunConfig, stats: dict) -> EFRegressor:
    return EFRegressor(cfg.model.pooling, stats["pixel_mean"], stats["pixel_std"],
                       stats["ef_mean"], stats["ef_std"])


def load_checkpoint(path: str | Path) -> tuple[EFRegressor, dict]:
    """Rebuild the model of a ``best.pt``/``last.pt`` and return it with the checkpoint dict."""
    path = Path(path)
    if not path.is_file():
        raise EcholiteError(f"{path}: checkpoint not found (run `echolite train` first)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cfg = from_dict(ckpt["config"])
    model = build_model(cfg, ckpt["stats"])
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


def train(cfg: RunConfig, root: str | Path, table: pd.DataFrame, out_dir: str | Path,
          device: torch.device) -> Path:
    """Train on the TRAIN rows of ``table``, select on VAL; resume from ``out_dir/last.pt``.

    Returns the path of ``best.pt``. A finished run with the same config returns at once.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tc = cfg.train
    seed_everything(tc.seed)
    train_rows, val_rows = split_table(table, "TRAIN"), split_table(table, "VAL")
    train_ds = EchoClips(root, train_rows, cfg.data.n_frames, cfg.data.size, cfg.data.shift_px,
                         cfg.data.sampling, cfg.data.window_s)
    val_loader = eval_loader(root, val_rows, cfg)

    resume = torch.load(out_dir / LAST, map_location="cpu", weights_only=True) \
        if (out_dir / LAST).is_file() else None
    if resume is not None and resume["fingerprint"] != _fingerprint(cfg):
        raise EcholiteError(f"{out_dir} holds a run with a different config; choose another --out "
                            "or delete it to start over")
    if resume is not None and resume["finished"]:
        log.info("baseline in %s already finished (best val MAE %.2f): reusing it", out_dir,
                 resume["best_val_mae"])
        return out_dir / BEST

    if resume is not None:
        stats = resume["stats"]
    else:
        pixel_mean, pixel_std = pixel_stats(train_ds, cfg.data.stats_videos, tc.seed)
        ef = train_rows["EF"].to_numpy(np.float64)
        stats = {"pixel_mean": pixel_mean, "pixel_std": pixel_std,
                 "ef_mean": float(ef.mean()), "ef_std": float(ef.std())}
    model = build_model(cfg, stats)
    if cfg.model.pretrained:
        load_pretrained_backbone(model, cfg.model.pretrained)
        log.info("backbone initialised from %s", cfg.model.pretrained)
    else:
        log.info("backbone randomly initialised (no --pretrained weights given)")
    model = model.to(device, memory_format=torch.channels_last)

    sampler = EpochSampler(len(train_ds), tc.seed)
    loader = DataLoader(train_ds, batch_size=tc.batch_size, sampler=sampler, drop_last=True,
                        num_workers=cfg.data.num_workers)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise EcholiteError(f"TRAIN has {len(train_ds)} videos, fewer than one batch "
                            f"(train.batch_size={tc.batch_size})")
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(tc, steps_per_epoch))
    amp = amp_dtype(device, tc.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
    log.info("training on %s, mixed precision: %s, %d train / %d val videos", device,
             amp or "off (fp32)", len(train_ds), len(val_rows))

    start, history, best = 0, [], math.inf
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        start, history, best = resume["epoch"], resume["history"], resume["best_val_mae"]
        log.info("resuming after epoch %d", start)

    base = {"config": cfg.to_dict(), "fingerprint": _fingerprint(cfg), "stats": stats}
    for epoch in range(start, tc.epochs):
        sampler.set_epoch(epoch)
        model.train()
        t0, losses = time.perf_counter(), []
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{tc.epochs}", leave=False, dynamic_ncols=True,
                   disable=None)  # no bar when stderr is not a terminal (logs, CI)
        for clips, ef in bar:
            clips = clips.to(device, non_blocking=True).float()
            target = ef.to(device)
            with autocast(device, amp):
                pred = model(clips)
            loss = (((pred.float() - target) / model.ef_std) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if tc.grad_clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        val_pred = predict(model, val_loader, device, amp)
        val_mae = float(np.mean(np.abs(val_pred - val_loader.dataset.ef)))
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_mae": val_mae,
               "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
        history.append(row)
        log.info("epoch %d/%d  loss %.4f  val MAE %.2f  (%.0f s)", epoch + 1, tc.epochs,
                 row["train_loss"], val_mae, row["seconds"])
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        if val_mae < best:
            best = val_mae
            atomic_torch_save({**base, "model": state, "epoch": epoch + 1, "val_mae": val_mae,
                               "history": history}, out_dir / BEST)
        atomic_torch_save({**base, "model": state, "optimizer": opt.state_dict(),
                           "scheduler": sched.state_dict(), "epoch": epoch + 1,
                           "history": history, "best_val_mae": best,
                           "finished": epoch + 1 == tc.epochs}, out_dir / LAST)
    return out_dir / BEST


def _schedule(tc, steps_per_epoch: int):
    warmup = max(1, round(tc.warmup_epochs * steps_per_epoch))
    total = tc.epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if tc.schedule == "step":
            return 0.1 ** (step // (tc.step_epochs * steps_per_epoch))
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor
