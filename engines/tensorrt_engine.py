"""TensorRT engine built from the static-window ONNX graph (`engines.onnx_engine.export_onnx`).

Needs the `tensorrt` Python package (10.x) and a CUDA GPU; the buffers live in torch CUDA tensors.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from tribe_stream.devices import torch_dtype
from tribe_stream.engines.base import Engine
from tribe_stream.engines.onnx_engine import INPUT_NAMES, export_onnx
from tribe_stream.engines.static_window import pack_inputs
from tribe_stream.errors import TribeStreamError, install_hint
from tribe_stream.model.loading import LoadedModel

MAX_ROWS = 100


def build_engine(onnx_path: Path | str, fp16: bool = True) -> bytes:
    """Parse the ONNX file and build a serialised TensorRT engine (rows: 1..100)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise TribeStreamError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape("rows", (1,), (1,), (MAX_ROWS,))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise TribeStreamError("TensorRT failed to build an engine; see its log above")
    return bytes(serialized)


class TensorRTEngine(Engine):
    name = "tensorrt"

    def __init__(
        self, loaded: LoadedModel, dtype: str = "float16", engine_path: Path | str | None = None
    ):
        super().__init__(loaded)
        try:
            import tensorrt as trt
        except ImportError:
            raise TribeStreamError(
                f"the tensorrt engine needs NVIDIA TensorRT: {install_hint('tensorrt')} on a CUDA "
                "machine"
            ) from None
        if not torch.cuda.is_available():
            raise TribeStreamError("the tensorrt engine needs a CUDA GPU")
        if engine_path is None or not Path(engine_path).exists():
            with tempfile.TemporaryDirectory(prefix="tribe-onnx-") as tmp:
                onnx = export_onnx(loaded, Path(tmp) / "window.onnx", dtype="float32")
                blob = build_engine(onnx, fp16=dtype != "float32")
            if engine_path is not None:
                Path(engine_path).write_bytes(blob)
        else:
            blob = Path(engine_path).read_bytes()
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(blob)
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()

    def run(self, features, *, pool: bool = True, rows: Sequence[int] | None = None) -> np.ndarray:
        T = self.check(features)
        if not pool:
            raise TribeStreamError(
                "the tensorrt engine predicts pooled rows only; use --engine torch for --tokens"
            )
        rows = list(range((T + 1) // 2)) if rows is None else list(rows)
        tensors = {m: (torch.as_tensor(x) if x is not None else None) for m, x in features.items()}
        packed = list(
            pack_inputs(tensors, self.config, device="cuda", dtype=torch_dtype("float32"))
        )
        packed.append(torch.as_tensor(rows, device="cuda", dtype=torch.long))
        out = torch.empty(len(rows), self.config.n_outputs, device="cuda", dtype=torch.float32)
        for name, t in zip(INPUT_NAMES, packed, strict=True):
            t = t.contiguous()
            self.context.set_input_shape(name, tuple(t.shape))
            self.context.set_tensor_address(name, t.data_ptr())
        self.context.set_tensor_address("pred", out.data_ptr())
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        return self.finite(out.cpu().numpy(), features)
