"""``compile``: run the float module through torch.compile (Inductor, weight freezing, one whole graph)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from echolite.compress.backends.pt2e import INDUCTOR
from echolite.compress.base import FLOAT, RUNTIME, Context, Stage, StepConfig, link_or_copy, register


@dataclass(frozen=True)
class CompileConfig(StepConfig):
    """Run the float module through torch.compile (Inductor, weight freezing, one whole graph)."""

    key: ClassVar[str] = "compile"
    method: ClassVar[str] = "compile"
    family: ClassVar[str] = "runtime"
    consumes: ClassVar[str] = FLOAT
    produces: ClassVar[str] = RUNTIME
    uses_data: ClassVar[bool] = False


@register(CompileConfig)
def compile_step(stage: Stage, cfg: CompileConfig, ctx: Context) -> Stage:
    weights = link_or_copy(stage.artifacts["state_dict"], ctx.work_dir)
    return stage.then(cfg.method, {"lowering": "torch.compile (Inductor, freezing=True, fullgraph=True)"},
                      module=None, runtime=INDUCTOR, artifacts={"state_dict": weights})
