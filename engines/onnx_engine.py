"""ONNX export of the static-window graph, and an onnxruntime engine that runs it."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from tribe_stream import MAX_TOKENS
from tribe_stream.devices import torch_dtype
from tribe_stream.engines.base import Engine
from tribe_stream.engines.static_window import StaticWindow, pack_inputs
from tribe_stream.errors import TribeStreamError, install_hint
from tribe_stream.model.fmri_encoder import copy_model
from tribe_stream.model.loading import LoadedModel

INPUT_NAMES = ["text", "audio", "video", "present", "valid", "rows"]


def export_onnx(
    loaded: LoadedModel, path: Path | str, dtype: str = "float32", opset: int = 18
) -> Path:
    """Export the 200-token static window (`engines.static_window.StaticWindow`) to ONNX.

    Inputs: text/audio/video `(1, L, D, 200)`, present `(3,)` float, valid `(1,)` int64, rows `(R,)`
    int64 (dynamic R). Output: `pred (R, n_outputs)`. TensorRT builds its engine from this file.
    """
    path = Path(path)
    model = copy_model(loaded.model, "cpu", torch_dtype(dtype))
    window = StaticWindow(model).eval()
    dummy = {m: torch.zeros(1) for m in ("text", "audio", "video")}
    first = next(m for m, d in loaded.config.feature_dims.items() if d)
    dims = loaded.config.feature_dims[first]
    dummy[first] = torch.zeros(dims[0], dims[1], 4)
    feats = {m: (dummy[m] if m == first else None) for m in loaded.config.feature_dims}
    inputs = (*pack_inputs(feats, loaded.config, dtype=torch_dtype(dtype)), torch.tensor([0, 1]))
    rows = torch.export.Dim("R", min=1, max=MAX_TOKENS)
    dynamic = {name: None for name in INPUT_NAMES} | {"rows": {0: rows}}
    with torch.inference_mode(False), torch.no_grad(), _quiet():
        program = torch.onnx.export(  # the torch.export-based exporter (dynamo), not TorchScript
            window,
            inputs,
            input_names=INPUT_NAMES,
            output_names=["pred"],
            dynamic_shapes=dynamic,
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    program.save(str(path))
    return path


@contextlib.contextmanager
def _quiet():
    """The exporter reports each of its stages on stdout and warns about absent torchvision
    operators: keep that out of the user's terminal unless debugging."""
    names = ("torch.onnx", "torch.onnx._internal.exporter._registration")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's own pytree deprecations
            yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


class OnnxEngine(Engine):
    """onnxruntime on the exported static window (CPU, or CUDA where onnxruntime-gpu is installed)."""

    name = "onnx"

    def __init__(
        self,
        loaded: LoadedModel,
        dtype: str = "float32",
        onnx_path: Path | str | None = None,
        providers: Sequence[str] | None = None,
    ):
        super().__init__(loaded)
        try:
            import onnxruntime as ort
        except ImportError:
            raise TribeStreamError(
                f"the onnx engine needs onnxruntime: {install_hint('onnx')}"
            ) from None
        self.dtype = torch_dtype(dtype)
        available = ort.get_available_providers()
        providers = list(
            providers
            or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        )
        if onnx_path is not None:
            self.onnx_path: Path | None = Path(onnx_path)
            self.session = ort.InferenceSession(str(self.onnx_path), providers=providers)
            return
        self.onnx_path = None  # exported to a temporary file, read once, then deleted
        with tempfile.TemporaryDirectory(prefix="tribe-onnx-") as tmp:
            path = export_onnx(loaded, Path(tmp) / "window.onnx", dtype=dtype)
            self.session = ort.InferenceSession(str(path), providers=providers)

    def run(self, features, *, pool: bool = True, rows: Sequence[int] | None = None) -> np.ndarray:
        T = self.check(features)
        if not pool:
            raise TribeStreamError(
                "the onnx engine predicts pooled rows only; use --engine torch for --tokens"
            )
        rows = list(range((T + 1) // 2)) if rows is None else list(rows)
        tensors = {m: (torch.as_tensor(x) if x is not None else None) for m, x in features.items()}
        packed = pack_inputs(tensors, self.config, dtype=self.dtype)
        feed = dict(
            zip(
                INPUT_NAMES,
                [t.numpy() for t in packed] + [np.asarray(rows, dtype=np.int64)],
                strict=True,
            )
        )
        feed["present"] = feed["present"].astype(np.float32)
        (out,) = self.session.run(["pred"], feed)
        return self.finite(out.astype(np.float32, copy=False), features)
