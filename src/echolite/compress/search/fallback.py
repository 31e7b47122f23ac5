"""Accuracy-aware float fallback: which layers to keep in float so that a quantized model scores
within a tolerance of FP32 — against a small interface, whatever quantizes and runs the layers.

Sensitivity of layer L = how much the score improves when only L stays in float. The search then
keeps the most sensitive layers in float, one at a time, until the score is within
``max_rel_delta`` of FP32's (relative, in the better direction) or ``max_layers`` are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class Candidates:
    """What the search needs of a quantization method.

    Attributes:
        layers: names of the layers that can stay in float.
        fp32_score: the float model's score.
        all_int8_score: the score with every layer quantized.
        score_with_float: ``f(names) -> score`` with exactly ``names`` kept in float.
    """

    layers: tuple[str, ...]
    fp32_score: float
    all_int8_score: float
    score_with_float: Callable[[tuple[str, ...]], float]


def fallback_search(c: Candidates, higher_is_better: bool, max_rel_delta: float,
                    max_layers: int) -> tuple[tuple[str, ...], dict]:
    """The layers to keep in float and the record of the search (every layer's sensitivity)."""

    def gain(before: float, after: float) -> float:
        return after - before if higher_is_better else before - after

    base = c.all_int8_score
    sens = [{"layer": name, "score_with_layer_fp32": (s := c.score_with_float((name,))), "gain": gain(base, s)}
            for name in c.layers]
    sens.sort(key=lambda r: -r["gain"])
    fp32 = c.fp32_score
    bound = fp32 * (1 - max_rel_delta) if higher_is_better else fp32 * (1 + max_rel_delta)

    def within(s: float) -> bool:
        return s >= bound if higher_is_better else s <= bound

    keep: list[str] = []
    current = base
    for r in sens[:max_layers]:
        if within(current):
            break
        keep.append(r["layer"])
        current = c.score_with_float(tuple(keep))
    log.info("fallback: FP32 %.4f, all-int8 %.4f, keeping %s in float -> %.4f", fp32, base,
             keep or "nothing", current)
    search = {"fp32_score": fp32, "all_int8_score": base, "bound": bound, "final_score": current,
              "within_bound": within(current), "layers": sens, "higher_is_better": higher_is_better,
              "max_rel_delta": max_rel_delta}
    return tuple(keep), search
