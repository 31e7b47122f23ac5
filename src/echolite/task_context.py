"""Where a task meets the compression engine: the :class:`~echolite.compress.base.Context` a task's
data, loop and metric make (calibration batches, the fine-tuning loop, a score on VAL items,
gradient batches), keyed by what each part is made from (:mod:`echolite.identity`)."""

from __future__ import annotations

import torch

from echolite import EcholiteError
from echolite.compress.base import Context
from echolite.identity import data_inputs, model_inputs
from echolite.store import digest, tensors_digest
from echolite.train import Schedule, fit


def compression_context(task, store, device: torch.device, amp=None) -> Context:
    """What the engine gets from the task: inputs, calibration, the fine-tuning loop, a score."""
    cfg = task.cfg
    cc = cfg.compress
    calib = task.calibration_inputs(cc.calib_items, cc.calib_split)
    if not calib:
        raise EcholiteError(f"calibration set is empty ({cc.calib_split} split)")
    calib_key = tensors_digest(calib)
    example = task.example_input()
    return Context(example_input=example, calibration=lambda: iter(calib),
                   work_dir=store.root, input_name=task.INPUT_NAME, threads=cfg.measure.threads,
                   calibration_key=calib_key, data_key=digest(data_inputs(task, calib_key, amp)),
                   model_key=digest(model_inputs(task, example.shape, task.INPUT_NAME)),
                   finetune=finetuner(task, device, amp),
                   score=lambda fn, n: task.score_subset(fn, n),
                   higher_is_better=task.metric(task.PRIMARY).higher_is_better,
                   model_factory=lambda: task.build_model(cfg), store=store,
                   protected=task.OUTPUT_LAYERS, gradient_batches=lambda n: gradient_batches(task, n))


def gradient_batches(task, n: int) -> list:
    """The first ``n`` TRAIN batches with their targets and the task's loss (for gradient-scored methods)."""
    dataset = task.train_dataset()
    size = task.cfg.train.batch_size
    items = [(i, 0) for i in range(min(len(dataset), n * size))]  # (index, augmentation seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=size, sampler=items, num_workers=0)
    return [(x.float(), y, task.loss) for x, y in loader]


def finetuner(task, device: torch.device, amp=None):
    """The task's loop as the compression engine's ``finetune(module, epochs, lr, ...)`` callback.

    Float models fine-tune in the training precision ``amp``; fake-quantized graphs
    (``mixed_precision=False``) in fp32. It runs on the process's own thread count: timing alone
    is pinned to ``measure.threads``.
    """

    def finetune(module: torch.nn.Module, epochs: int, lr: float, on_epoch=None, max_items: int = 0,
                 keep_best: bool = True, warmup_epochs: float = 0.0,
                 mixed_precision: bool = True) -> list[dict]:
        module.to(device)
        result = fit(task, module, Schedule(lr, epochs, warmup_epochs, "cosine"), device,
                     amp=amp if mixed_precision else None, max_items=max_items, on_epoch=on_epoch,
                     keep_best=keep_best, score_start=keep_best, desc="fine-tune")
        module.cpu()
        return result.history

    return finetune
