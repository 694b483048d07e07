"""PyTorch engines: eager (any shape) and compiled (static 200-token window)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tribe_stream.devices import torch_dtype
from tribe_stream.engines.base import Engine
from tribe_stream.engines.static_window import (
    BatchWindow,
    StaticWindow,
    pack_batch,
    pack_inputs,
    pooled_rows,
)
from tribe_stream.model.fmri_encoder import copy_model
from tribe_stream.model.loading import LoadedModel

BATCH_SIZES = (2, 4, 8, 16)
"""Batch sizes the compiled engine pads several streams' windows to (one graph each)."""


class TorchEngine(Engine):
    """The model as written, eager, on `device` in `dtype` (weights cast, norms in float32).

    The engine runs its own copy of the weights (`copy_model`): the loaded model it was given is
    never moved or cast, so engines of different dtypes built from one model all stay exact.
    """

    name = "torch"

    def __init__(self, loaded: LoadedModel, device: str = "cpu", dtype: str = "float32"):
        super().__init__(loaded)
        self.device = torch.device(device)
        self.dtype = torch_dtype(dtype)
        self.model = copy_model(loaded.model, self.device, self.dtype)

    def _tensors(self, features):
        return {
            m: (
                torch.as_tensor(x, device=self.device, dtype=self.dtype)[None]
                if x is not None
                else None
            )
            for m, x in features.items()
        }

    @torch.inference_mode()
    def run(self, features, *, pool: bool = True, rows: Sequence[int] | None = None) -> np.ndarray:
        self.check(features)
        idx = torch.as_tensor(list(rows), device=self.device) if rows is not None else None
        out = self.model(**self._tensors(features), pool=pool, rows=idx)
        return self.finite(out[0].float().cpu().numpy(), features)

    @torch.inference_mode()
    def _run_group(self, windows: list[dict], rows: list[int]) -> list[np.ndarray]:
        """Windows of one length: one eager forward with a batch dimension."""
        feats = {
            m: (
                torch.stack([torch.as_tensor(w[m], device=self.device) for w in windows]).to(
                    self.dtype
                )
                if windows[0].get(m) is not None
                else None
            )
            for m in self.config.feature_dims
        }
        idx = torch.as_tensor(rows, device=self.device)
        out = pooled_rows(self.model, feats, idx).float().cpu().numpy()
        return [self.finite(o, w) for o, w in zip(out, windows, strict=True)]


class CompiledEngine(TorchEngine):
    """torch.compile over the static window (one graph for every T ≤ 200; CUDA graphs on GPU).

    Token-level output (`pool=False`) falls back to eager.
    """

    name = "compiled"

    def __init__(self, loaded: LoadedModel, device: str = "cpu", dtype: str = "float32"):
        super().__init__(loaded, device, dtype)
        self.window = StaticWindow(self.model)
        mode = "reduce-overhead" if self.device.type == "cuda" else None
        self.compiled = torch.compile(self.window, mode=mode, dynamic=False, fullgraph=True)
        # several streams' windows: one graph per batch size in BATCH_SIZES (compiled on first use)
        self.compiled_batch = torch.compile(
            BatchWindow(self.model), mode=mode, dynamic=False, fullgraph=True
        )

    @torch.inference_mode()
    def run(self, features, *, pool: bool = True, rows: Sequence[int] | None = None) -> np.ndarray:
        T = self.check(features)
        if not pool:
            return super().run(features, pool=False, rows=rows)
        n_rows = (T + 1) // 2
        rows = list(range(n_rows)) if rows is None else list(rows)
        inputs = pack_inputs(
            self._tensors_lt(features), self.config, device=self.device, dtype=self.dtype
        )
        idx = torch.as_tensor(rows, device=self.device, dtype=torch.long)
        out = self.compiled(*inputs, idx)
        return self.finite(out.float().cpu().numpy(), features)

    def batch_key(self, T: int) -> int:
        return 0  # every length pads to the one static window

    @torch.inference_mode()
    def _run_group(self, windows: list[dict], rows: list[int]) -> list[np.ndarray]:
        """Windows of any lengths, padded to the static window, batch padded to a size in
        BATCH_SIZES (one compiled graph each)."""
        out = []
        for lo in range(0, len(windows), BATCH_SIZES[-1]):
            part, part_rows = windows[lo : lo + BATCH_SIZES[-1]], rows[lo : lo + BATCH_SIZES[-1]]
            b = next(n for n in BATCH_SIZES if n >= len(part))
            inputs = pack_batch(part, self.config, b, device=self.device, dtype=self.dtype)
            idx = torch.zeros(b, dtype=torch.long, device=self.device)
            idx[: len(part)] = torch.as_tensor(part_rows, device=self.device)
            values = self.compiled_batch(*inputs, idx)[: len(part)].float().cpu().numpy()
            out += [self.finite(v, w) for v, w in zip(values, part, strict=True)]
        return out

    def _tensors_lt(self, features):
        return {
            m: (torch.as_tensor(x, device=self.device) if x is not None else None)
            for m, x in features.items()
        }
