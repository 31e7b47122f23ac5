"""Compression engine (task-agnostic): steps as config types, recipes as chains of steps.

    from echolite.compress import apply, StaticPTQConfig
    stage = apply(StaticPTQConfig(observer="histogram"), stage, ctx)

Importing this package registers every step; each handler imports its backend library on use.
"""

from echolite.compress.base import (
    CompressionError,
    Context,
    Stage,
    StepConfig,
    apply,
    register,
    step_types,
)
from echolite.compress.onnxrt import OnnxRuntimeConfig, OrtStaticConfig
from echolite.compress.prune import FineTuneConfig, StructuredPruneConfig, UnstructuredPruneConfig
from echolite.compress.pt2e import CompileConfig, DynamicPTQConfig, QATConfig, StaticPTQConfig

__all__ = ["CompressionError", "Context", "Stage", "StepConfig", "apply", "register", "step_types",
           "OnnxRuntimeConfig", "OrtStaticConfig", "CompileConfig", "DynamicPTQConfig", "QATConfig",
           "StaticPTQConfig", "FineTuneConfig", "StructuredPruneConfig", "UnstructuredPruneConfig"]
