"""``qat``: fake-quant fine-tuning (the task's loop), then conversion to the same artifact as static PTQ."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import ClassVar, Literal

from echolite.compress.backends.pt2e import (
    TrainableProgram,
    calibrate,
    export_graph,
    finish_int8,
    freeze_activation_ranges,
    qat_quantization_config,
    quantization_config,
    quantizer,
    set_bn_training,
)
from echolite.compress.base import (
    FLOAT,
    QUANTIZED,
    CompressionError,
    Context,
    Stage,
    StepConfig,
    kept_epoch,
    register,
)
from echolite.typed import setting


@dataclass(frozen=True)
class QATConfig(StepConfig):
    """Fake-quant fine-tuning, then conversion to the same artifact as static PTQ.

    Started from the PTQ-calibrated ranges (``init=ptq``), QAT begins where min-max static PTQ
    ends (not the percentile default of ``static_ptq``): min-max observers run over the same
    calibration batches with fake quantization off.
    The activation ranges then stay fixed, weight ranges follow the weights (per channel), and
    BatchNorm trains on batch statistics unless ``freeze_bn`` (VAL chose training). With
    ``keep_best`` the VAL score of every epoch, the PTQ-initialised start (epoch 0) included,
    decides which weights are converted.

    Attributes:
        init: ptq (as above) | fresh (the x86 default: moving-average observers from scratch,
            ranges updating during the first epoch).
        freeze_bn: BatchNorm on its running statistics from the first step (else batch statistics
            while training).
    """

    key: ClassVar[str] = "qat"
    method: ClassVar[str] = "qat"
    family: ClassVar[str] = "quantization"
    consumes: ClassVar[str] = FLOAT
    produces: ClassVar[str] = QUANTIZED

    epochs: int = setting(1, "fine-tuning epochs with fake quantization")
    lr: float = setting(1e-5, "learning rate")
    max_items: int = setting(0, "TRAIN items per epoch; 0 = all")
    init: Literal["ptq", "fresh"] = setting("ptq", "ptq: from the PTQ-calibrated ranges; fresh: the x86 default")
    freeze_bn: bool = setting(False, "BatchNorm on running statistics (chosen on VAL: training)")
    keep_best: bool = setting(True, "convert the epoch with the best VAL score (epoch 0 = the PTQ start)")
    engine: Literal["x86"] = setting("x86", "quantizer/kernel family: x86 (oneDNN)")

    def __post_init__(self):
        if self.epochs < 1 or self.lr <= 0 or self.max_items < 0:
            raise ValueError(f"QAT needs epochs >= 1, lr > 0, max_items >= 0, got epochs={self.epochs}, "
                             f"lr={self.lr}, max_items={self.max_items}")



@register(QATConfig)
def qat(stage: Stage, cfg: QATConfig, ctx: Context) -> Stage:
    from torchao.quantization.pt2e import (  # heavy, optional
        disable_fake_quant,
        disable_observer,
        enable_fake_quant,
        enable_observer,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    if ctx.finetune is None:
        raise CompressionError(f"{cfg.key}: QAT needs a fine-tuning loop from the task")
    model = copy.deepcopy(stage.module).train()
    graph = export_graph(model, ctx.example_input)
    details = {"library": "torchao PT2E", "quantizer": "X86InductorQuantizer (is_qat)", "engine": cfg.engine,
               "init": cfg.init, "epochs": cfg.epochs, "lr": cfg.lr, "freeze_bn": cfg.freeze_bn,
               "activations": "uint8 affine", "weights": "int8 symmetric per-channel"}
    if cfg.init == "ptq":
        prepared = prepare_qat_pt2e(graph, quantizer(qat_quantization_config()))
        set_bn_training(prepared, False)  # calibrate as PTQ does: BatchNorm on running statistics
        prepared.apply(disable_fake_quant)
        prepared.apply(enable_observer)
        details["calibration_items"] = calibrate(prepared, ctx, cfg.key)
        prepared.apply(enable_fake_quant)
        details["frozen_activation_ranges"] = freeze_activation_ranges(prepared)
        details["observer"] = "min-max (calibrated as PTQ, then fixed); weights: current min-max"
        on_epoch = None
    else:
        prepared = prepare_qat_pt2e(graph, quantizer(quantization_config(is_qat=True)))
        details["observer"] = "moving-average min-max (x86 default), updating while training"

        def on_epoch(epoch: int) -> None:  # the default schedule: ranges freeze after epoch 1
            if epoch >= 1:
                prepared.apply(disable_observer)
    trainable = TrainableProgram(prepared, bn_frozen=cfg.freeze_bn)
    t0 = time.perf_counter()
    history = ctx.finetune(trainable, cfg.epochs, cfg.lr, on_epoch=on_epoch, max_items=cfg.max_items,
                           keep_best=cfg.keep_best, mixed_precision=False)
    trainable.eval()
    prepared.apply(disable_observer)
    converted = convert_pt2e(prepared)
    kept = kept_epoch(history, ctx.higher_is_better, cfg.keep_best)["epoch"]
    details.update(history=history, kept_epoch=kept, finetune_seconds=round(time.perf_counter() - t0, 1))
    return finish_int8(stage, converted, cfg, ctx, details)
