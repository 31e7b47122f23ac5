"""The libraries that quantize, export and run models (PT2E, ONNX Runtime, OpenVINO, pruning helpers)."""
