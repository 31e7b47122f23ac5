"""Compression engine (task-agnostic): one config dataclass per method, one verb.

    from echolite.compress import compress, StaticPTQConfig
    variant = compress(model, StaticPTQConfig(observer="histogram"), ctx)

Importing this package imports no heavy backend; each handler imports its library on use.
"""

from echolite.compress.base import CompressionError, Context, Variant, compress, register
from echolite.compress.onnxrt import OnnxFP32Config, OrtStaticConfig
from echolite.compress.pt2e import DynamicPTQConfig, QATConfig, StaticPTQConfig

__all__ = ["CompressionError", "Context", "Variant", "compress", "register", "OnnxFP32Config",
           "OrtStaticConfig", "DynamicPTQConfig", "QATConfig", "StaticPTQConfig"]
