"""Brain-model inference backends behind one interface (`engines.base.Engine`).

| name | backend |
|---|---|
| `torch` | PyTorch eager, any device and dtype |
| `compiled` | PyTorch with torch.compile on a static 200-token window (CUDA graphs on GPU) |
| `onnx` | onnxruntime on the exported static-window graph |
| `tensorrt` | TensorRT engine built from the same ONNX graph (needs the `tensorrt` package) |
"""

from __future__ import annotations

from tribe_stream.engines.base import Engine
from tribe_stream.errors import TribeStreamError
from tribe_stream.model.loading import LoadedModel
from tribe_stream.options import ENGINE_NAMES as ENGINES

__all__ = ["Engine", "make_engine", "ENGINES"]


def make_engine(
    name: str, loaded: LoadedModel, *, device: str = "cpu", dtype: str = "float32"
) -> Engine:
    """Build the engine called `name` (see `engines.ENGINES`)."""
    if name == "torch":
        from tribe_stream.engines.torch_engine import TorchEngine

        return TorchEngine(loaded, device=device, dtype=dtype)
    if name == "compiled":
        from tribe_stream.engines.torch_engine import CompiledEngine

        return CompiledEngine(loaded, device=device, dtype=dtype)
    if name == "onnx":
        from tribe_stream.engines.onnx_engine import OnnxEngine

        return OnnxEngine(loaded, dtype=dtype)
    if name == "tensorrt":
        from tribe_stream.engines.tensorrt_engine import TensorRTEngine

        return TensorRTEngine(loaded, dtype=dtype)
    raise TribeStreamError(
        f"unknown engine {name!r}; choose one of torch, compiled, onnx, tensorrt"
    )
