"""The one training loop: baseline training (checkpointed, resumable) and every fine-tuning step.

AdamW, linear warm-up then cosine (or step) decay, gradient clipping, optional mixed precision,
model selection on VAL with the task's primary metric. The task supplies the data, the loss
and the VAL score; this file knows nothing of what is being predicted.

Checkpoints (``torch.load(..., weights_only=True)`` safe: tensors, numbers, strings, lists, dicts):
  * ``last.pt``: after every epoch: model, optimizer, scheduler, GradScaler, RNG states (CPU and
    CUDA), history -> an exact resume;
  * ``best.pt``: the epoch with the best VAL score (of tied epochs, the later: a VAL set that
    saturates, 100 % accuracy, must not keep an early, barely trained epoch): model, config,
    statistics, history.
Both are written atomically (a kill mid-write leaves the previous file intact) by process 0. Under
torchrun, process 0 reads ``last.pt`` and sends it to the others: ranks on other nodes need not
see the same file system (they resume from what process 0 holds).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from echolite import EcholiteError
from echolite.config import from_dict
from echolite.data.sampler import EpochSampler
from echolite.env import (
    atomic_torch_save,
    autocast,
    barrier,
    broadcast,
    dist_backend,
    dist_info,
    seed_everything,
)
from echolite.store import describe_changes
from echolite.tasks import task_class

log = logging.getLogger(__name__)
BEST, LAST = "best.pt", "last.pt"


@dataclass
class Schedule:
    """Learning-rate schedule of one fit: peak ``lr``, warm-up, then cosine or step decay."""

    lr: float
    epochs: int
    warmup_epochs: float = 0.0
    kind: str = "cosine"  # cosine | step | constant
    step_epochs: int = 5  # with kind=step: x0.1 every this many epochs

    def factor(self, steps_per_epoch: int):
        warmup = max(1, round(self.warmup_epochs * steps_per_epoch)) if self.warmup_epochs else 0
        total = self.epochs * steps_per_epoch

        def f(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if self.kind == "step":
                return 0.1 ** (step // (self.step_epochs * steps_per_epoch))
            if self.kind == "constant":
                return 1.0
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

        return f


@dataclass
class FitResult:
    history: list[dict]
    best_score: float
    best_epoch: int  # 0 = the weights before any epoch of this fit were best (fine-tuning only)


def fit(task, model: torch.nn.Module, schedule: Schedule, device: torch.device, *, amp=None,
        max_items: int = 0, on_epoch=None, out_dir: Path | None = None, record: dict | None = None,
        keep_best: bool = True, score_start: bool = False, desc: str = "train", dataset=None,
        loss=None) -> FitResult:
    """Train ``model`` in place on the task's TRAIN items; select on VAL with the primary metric.

    Args:
        schedule: learning rate and epochs.
        amp: autocast dtype or None (fp32).
        max_items: TRAIN items per epoch (a fresh random subset each epoch); 0 = all.
        on_epoch: ``on_epoch(epoch)`` called after ``model.train()`` at the start of each epoch
            (QAT uses it to freeze observers and BatchNorm).
        out_dir: if given, checkpoint ``last.pt``/``best.pt`` there and resume from ``last.pt``.
        record: extra fields stored in both checkpoints (config, fingerprint, statistics).
        keep_best: load the best VAL epoch's weights at the end (else keep the last epoch's).
        score_start: score the weights before training too (epoch 0), so a fine-tuning that
            only hurts VAL returns the weights it started from (one that ties it is kept).
        dataset, loss: TRAIN items and ``loss(output, target)`` instead of the task's (distillation:
            items whose target carries the teacher's output too); VAL scoring is the task's.
    """
    tc = task.cfg.train
    hib = task.metric(task.PRIMARY).higher_is_better
    better = (lambda a, b: a > b) if hib else (lambda a, b: a < b)
    rank, world, _ = dist_info()
    if tc.batch_size % world:
        raise EcholiteError(f"train.batch_size={tc.batch_size} is the global batch: it must be divisible "
                            f"by the {world} processes")
    batch = tc.batch_size // world  # per process; the global batch is the same at any world size
    dataset = task.train_dataset() if dataset is None else dataset
    loss_fn = task.loss if loss is None else loss
    sampler = EpochSampler(len(dataset), tc.seed, max_items, rank, world, batch)
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, drop_last=True,
                        num_workers=task.num_workers)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise EcholiteError(f"TRAIN has {len(sampler)} items per epoch, fewer than one batch "
                            f"(train.batch_size={tc.batch_size})")
    net = model  # the module itself: VAL scoring, checkpoints
    if world > 1:
        if device.type == "cuda":
            net = model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    params = [p for p in model.parameters() if p.requires_grad]
    forward = torch.compile(model) if tc.compile and out_dir is not None else model  # the baseline only
    opt = torch.optim.AdamW(params, lr=schedule.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule.factor(steps_per_epoch))
    scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)

    start, history, best, best_epoch, best_state = 0, [], None, 0, None
    resume = broadcast(_load_last(out_dir) if rank == 0 else None)  # process 0's file, on every rank
    writer = out_dir is not None and rank == 0  # one process writes checkpoints
    if out_dir is not None and rank == 0:
        log.info("%s: %d process(es) (%s), %d items per process and step (global batch %d), %s",
                 desc, world, dist_backend() or "no process group", batch, tc.batch_size, device)
    if resume is not None:
        net.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        if "scaler" in resume:
            scaler.load_state_dict(resume["scaler"])
        _set_rng(resume["rng"])
        start, history = resume["epoch"], resume["history"]
        best, best_epoch = resume["best_score"], resume["best_epoch"]
        log.info("%s: resuming after epoch %d of %d", desc, start, schedule.epochs)
    elif score_start:
        best = task.val_score(net, device, amp)
        best_state = _state(net)
        history.append({"epoch": 0, "val_score": best})
        log.info("%s: before training: VAL %s %.4f", desc, task.PRIMARY, best)

    for epoch in range(start, schedule.epochs):
        sampler.set_epoch(epoch)
        model.train()
        if tc.freeze_bn:
            for m in net.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()
        if on_epoch is not None:
            on_epoch(epoch)
        t0, losses = time.perf_counter(), []
        bar = tqdm(loader, desc=f"{desc} {epoch + 1}/{schedule.epochs}", leave=False,
                   dynamic_ncols=True, disable=None)  # no bar when stderr is not a terminal
        for x, target in bar:
            x = x.to(device, non_blocking=True).float()
            target = [t.to(device) for t in target] if isinstance(target, list | tuple) else target.to(device)
            with autocast(device, amp):
                out = forward(x)
            loss = loss_fn(out.float(), target)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if tc.grad_clip > 0:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        score = task.val_score(net, device, amp)
        row = {"epoch": epoch + 1, "train_loss": _mean_over_processes(losses, device), "val_score": score,
               "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
        history.append(row)
        log.info("%s epoch %d/%d  loss %.4f  VAL %s %.4f  (%.0f s)", desc, epoch + 1, schedule.epochs,
                 row["train_loss"], task.PRIMARY, score, row["seconds"])
        # a tie goes to the later, longer-trained epoch; a NaN score never improves
        improved = math.isfinite(score) and (best is None or not math.isfinite(best) or not better(best, score))
        if improved:
            best, best_epoch = score, epoch + 1
            if keep_best and out_dir is None:
                best_state = _state(net)
        if writer:
            state = _state(net)
            base = {**(record or {}), "history": history,
                    "processes": {"world_size": world, "backend": dist_backend(), "batch_per_process": batch,
                                  "global_batch": tc.batch_size, "device": str(device)}}
            if improved:
                atomic_torch_save({**base, "model": state, "epoch": epoch + 1, "val_score": score},
                                  out_dir / BEST)
            atomic_torch_save({**base, "model": state, "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "scaler": scaler.state_dict(), "rng": _get_rng(),
                               "epoch": epoch + 1, "best_score": best, "best_epoch": best_epoch,
                               "finished": epoch + 1 == schedule.epochs}, out_dir / LAST)
        barrier()
    if best is None:  # every epoch scored NaN
        raise EcholiteError(f"{desc}: no epoch reached a finite VAL {task.PRIMARY}: the training diverged "
                            "(lower the learning rate)")
    if keep_best and best_state is not None and best_epoch != history[-1]["epoch"]:
        net.load_state_dict(best_state)
        log.info("%s: keeping epoch %d (best VAL %s %.4f)", desc, best_epoch, task.PRIMARY, best)
    return FitResult(history, float(best), best_epoch)


def _mean_over_processes(losses: list[float], device: torch.device) -> float:
    """The mean training loss of the epoch over every process's batches."""
    total = torch.tensor([float(np.sum(losses)), float(len(losses))], dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(total)
    return float(total[0] / total[1])


def _state(model: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _load_last(out_dir: Path | None) -> dict | None:
    if out_dir is None or not (out_dir / LAST).is_file():
        return None
    return torch.load(out_dir / LAST, map_location="cpu", weights_only=True)


def _get_rng() -> dict:
    """The global RNG states training draws from (item order and augmentation come from the
    epoch-keyed sampler; the torch generators cover anything random in a model's forward)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])


# --- the baseline ------------------------------------------------------------------------------
def train_baseline(task, out_dir: str | Path, device: torch.device, amp, fingerprint: dict) -> Path:
    """Train the task's model from scratch into ``out_dir`` (resuming from ``last.pt``).

    ``fingerprint``: what the baseline is made from (echolite.identity.baseline_inputs), stored in
    both checkpoints. Returns the path of ``best.pt``; a finished training of the same fingerprint
    returns at once.

    Raises:
        EcholiteError: ``out_dir`` holds a training made from other data or settings.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tc = task.cfg.train
    resume = broadcast(_load_last(out_dir) if dist_info()[0] == 0 else None)
    if resume is not None and resume["fingerprint"] != fingerprint:
        changed = "; ".join(describe_changes(resume["fingerprint"], fingerprint)[:4])
        raise EcholiteError(f"{out_dir} holds a training made from other data or settings "
                            f"({changed}); choose another --out or delete it to start over")
    if resume is not None and resume["finished"]:
        log.info("baseline in %s already finished (best VAL %s %.4f): reusing it", out_dir,
                 task.PRIMARY, resume["best_score"])
        return out_dir / BEST
    seed_everything(tc.seed)
    stats = resume["stats"] if resume is not None else task.init_stats()
    model = task.build_model(task.cfg, stats)
    pretrained = getattr(task.cfg.model, "pretrained", None)
    if resume is None and pretrained:
        log.info("initialised from %s", task.load_pretrained(model, pretrained))
    model = model.to(device, memory_format=torch.channels_last)
    log.info("training %s on %s, mixed precision: %s", task.model_name(task.cfg), device,
             amp or "off (fp32)")
    record = {"config": task.cfg.to_dict(), "fingerprint": fingerprint, "stats": stats}
    schedule = Schedule(tc.lr, tc.epochs, tc.warmup_epochs, tc.schedule, tc.step_epochs)
    fit(task, model, schedule, device, amp=amp, out_dir=out_dir, record=record, desc="train")
    return out_dir / BEST


def load_checkpoint(path: str | Path):
    """Rebuild the model of a ``best.pt``/``last.pt``: returns (task class, config, model, ckpt)."""
    path = Path(path)
    if not path.is_file():
        raise EcholiteError(f"{path}: checkpoint not found (run `echolite train` first)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cfg = from_dict(ckpt["config"])
    cls = task_class(cfg.task)
    model = cls.build_model(cfg, ckpt["stats"])
    model.load_state_dict(ckpt["model"])
    return cls, cfg, model.eval(), ckpt
