"""Brain-model inference backends behind one interface (`engines.base.Engine`).

| name | backend |
|---|---|
| `torch` | PyTorch eager, any device and dtype |
| `compiled` | PyTorch with torch.compile on a static 200-token window (CUDA graphs on GPU) |
| `onnx` | onnxruntime on the exported static-window graph |
| `tensorrt` | TensorRT engine built from the same ONNX graph (needs the `tensorrt` package) |
"""

from tribe_stream.engines.base import Engine, make_engine

__all__ = ["Engine", "make_engine", "ENGINES"]

ENGINES = ("torch", "compiled", "onnx", "tensorrt")
