"""Where a task meets the compression engine: the :class:`~echolite.compress.base.Context` a task's
data, loop and metric make (calibration batches, the fine-tuning and distillation loops, a score
on VAL items, gradient batches, students), keyed by what each part is made from
(:mod:`echolite.identity`)."""

from __future__ import annotations

import logging

import torch

from echolite import EcholiteError
from echolite.compress.base import Context
from echolite.config import with_model
from echolite.identity import data_inputs, model_inputs, section, teacher_inputs
from echolite.store import digest, tensors_digest
from echolite.tasks.base import model_runner, predict_outputs
from echolite.train import Schedule, fit

log = logging.getLogger(__name__)
TEACHER_FILE = "teacher_outputs.pt"


def compression_context(task, store, device: torch.device, amp=None) -> Context:
    """What the engine gets from the task: inputs, calibration, the fine-tuning loop, a score."""
    cfg = task.cfg
    cc = cfg.compress
    calib = task.calibration_inputs(cc.calib_items, cc.calib_split)
    if not calib:
        raise EcholiteError(f"calibration set is empty ({cc.calib_split} split)")
    calib_key = tensors_digest(calib)
    example = task.example_input()
    model_key = digest(model_inputs(task, example.shape, task.INPUT_NAME))
    return Context(example_input=example, calibration=lambda: iter(calib),
                   work_dir=store.root, input_name=task.INPUT_NAME, threads=cfg.measure.threads,
                   calibration_key=calib_key, data_key=digest(data_inputs(task, calib_key, amp)),
                   model_key=model_key,
                   finetune=finetuner(task, device, amp),
                   score=lambda fn, n: task.score_subset(fn, n),
                   higher_is_better=task.metric(task.PRIMARY).higher_is_better,
                   model_factory=lambda overrides=None: task.build_model(with_model(cfg, overrides)),
                   student=lambda overrides: task.build_model(with_model(cfg, overrides), task.init_stats()),
                   distill=distiller(task, store, device, amp, model_key), store=store,
                   protected=lambda overrides=None: task.output_layers(with_model(cfg, overrides)),
                   gradient_batches=lambda n: gradient_batches(task, n),
                   validation=lambda n: validation_items(task, n),
                   budget=(task.budget().max_worsening, task.budget().relative))


def validation_items(task, n: int) -> tuple:
    """``n`` fixed VAL items (0 = all): inputs, targets and the primary metric on raw outputs."""
    evalset = task.eval_set("VAL", limit=n or None, seed=2)
    return evalset.inputs, evalset.targets, lambda targets, outputs: task.primary_fn()(targets, task.decode(outputs))


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


class WithTeacher(torch.utils.data.Dataset):
    """TRAIN items whose target is ``(target, the teacher's output on that item)``."""

    def __init__(self, base, teacher: torch.Tensor):
        if len(teacher) != len(base):
            raise EcholiteError(f"{len(teacher)} stored teacher outputs for {len(base)} TRAIN items")
        self.base, self.teacher = base, teacher

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, item):
        x, y = self.base[item]
        index = item[0] if isinstance(item, tuple) else item  # (index, augmentation seed) in training
        return x, (y, self.teacher[index])


def teacher_outputs(task, teacher: torch.nn.Module, overrides: dict, store,
                    model_key: str) -> tuple[torch.Tensor, dict]:
    """The teacher's outputs on every TRAIN item, in dataset order, on the item's evaluation view
    (deterministic frames, no augmentation): computed once and stored, keyed by the teacher's
    weights, its model settings, the dataset and how its items are read
    (:func:`echolite.identity.teacher_inputs`). Stored ids that are not TRAIN's are an error."""
    weights = tensors_digest(teacher.state_dict())
    model = section(with_model(task.cfg, overrides).model)
    entry = store.entry("teacher", "teacher", teacher_inputs(weights, model, task.data.key, model_key))
    train = task.eval_set("TRAIN")
    if not entry.complete:
        log.info("computing the teacher's outputs on TRAIN (%s)", entry.describe_miss())
        with entry.build() as tmp:
            outputs = predict_outputs(model_runner(teacher.eval()), train, max(task.EVAL_BATCH, 16))
            torch.save({"outputs": outputs, "ids": list(train.ids)}, tmp / TEACHER_FILE)
    else:
        log.info("reusing the teacher's outputs %s", entry.path.name)
    saved = torch.load(entry.path / TEACHER_FILE, weights_only=True)
    ids = list(train.ids)
    if saved["ids"] != ids:
        raise EcholiteError(f"{entry.path / TEACHER_FILE}: its items are not this TRAIN split's ({len(saved['ids'])} "
                            f"stored, {len(ids)} now): delete the entry to recompute it")
    return saved["outputs"], {"teacher_outputs": entry.path.name, "teacher_items": len(saved["outputs"])}


def distiller(task, store, device: torch.device, amp, model_key: str):
    """The task's loop as the engine's ``distill(student, teacher, ...)`` callback: loss =
    ``(1 - alpha) * task loss + alpha * task.distill_loss(student output, teacher output, T)``."""

    def distill(student: torch.nn.Module, teacher: torch.nn.Module, teacher_model: dict, epochs: int, lr: float,
                alpha: float, temperature: float, max_items: int = 0,
                warmup_epochs: float = 0.0) -> tuple[list[dict], dict]:
        info = {}
        dataset = task.train_dataset()
        loss = task.loss
        if alpha > 0:
            outputs, info = teacher_outputs(task, teacher, teacher_model, store, model_key)
            dataset = WithTeacher(dataset, outputs)

            def loss(output, target):
                truth, taught = target
                return (1 - alpha) * task.loss(output, truth) + alpha * task.distill_loss(output, taught, temperature)

        student.to(device)
        result = fit(task, student, Schedule(lr, epochs, warmup_epochs, "cosine"), device, amp=amp,
                     max_items=max_items, keep_best=True, desc="distill" if alpha > 0 else "student",
                     dataset=dataset, loss=loss)
        student.cpu()
        return result.history, {**info, "kept_epoch": result.best_epoch, "kept_val_score": result.best_score}

    return distill
