"""Compression engine (task-agnostic): steps as typed configs, recipes as chains of steps.

    from echolite.compress import apply, StaticPTQConfig
    stage = apply(StaticPTQConfig(observer="histogram"), stage, ctx)

    base.py      Stage, Context, StepConfig, register, apply: the vocabulary
    recipes.py   the one registry of method names: names -> chains of steps, built with shared prefixes
    runners.py   a stage's files -> something that runs (the one path from artifact to prediction)
    steps/       one module per step type
    backends/    the libraries: PT2E export and lowering, ONNX Runtime, OpenVINO, pruning helpers
    search/      the per-layer float fallback

Importing this package registers every step.
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
from echolite.compress.steps import (
    CompileConfig,
    DynamicPTQConfig,
    ExecuTorchConfig,
    FineTuneConfig,
    NNCFConfig,
    OnnxRuntimeConfig,
    OrtStaticConfig,
    QATConfig,
    StaticPTQConfig,
    StructuredPruneConfig,
    UnstructuredPruneConfig,
)

__all__ = ["CompressionError", "Context", "Stage", "StepConfig", "apply", "register", "step_types",
           "OnnxRuntimeConfig", "OrtStaticConfig", "CompileConfig", "DynamicPTQConfig", "QATConfig",
           "StaticPTQConfig", "FineTuneConfig", "StructuredPruneConfig", "UnstructuredPruneConfig", "NNCFConfig",
           "ExecuTorchConfig"]
