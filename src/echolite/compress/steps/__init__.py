"""One module per step type: its config (a typed, frozen dataclass) and its ``@register``-ed handler.

Importing this package registers every step. Adding a step = copying a neighbour.
"""

from echolite.compress.steps.compile import CompileConfig
from echolite.compress.steps.distill import DistillConfig
from echolite.compress.steps.dynamic_ptq import DynamicPTQConfig
from echolite.compress.steps.executorch import ExecuTorchConfig
from echolite.compress.steps.finetune import FineTuneConfig
from echolite.compress.steps.nncf import NNCFConfig
from echolite.compress.steps.onnxruntime import OnnxRuntimeConfig
from echolite.compress.steps.ort_static import OrtStaticConfig
from echolite.compress.steps.qat import QATConfig
from echolite.compress.steps.static_ptq import StaticPTQConfig
from echolite.compress.steps.structured import StructuredPruneConfig
from echolite.compress.steps.unstructured import UnstructuredPruneConfig

__all__ = ["CompileConfig", "DistillConfig", "DynamicPTQConfig", "ExecuTorchConfig", "FineTuneConfig", "NNCFConfig",
           "OnnxRuntimeConfig", "OrtStaticConfig", "QATConfig", "StaticPTQConfig", "StructuredPruneConfig",
           "UnstructuredPruneConfig"]
