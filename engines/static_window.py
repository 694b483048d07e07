"""The brain model on a fixed-size window: the one static-shape graph that compiled, ONNX and
TensorRT engines run. Real tokens come first; padding is masked out of attention, so real-token
outputs equal the unpadded model's."""

from __future__ import annotations

import torch
from torch import nn

from tribe_stream import MAX_TOKENS
from tribe_stream.model.fmri_encoder import FmriEncoder


class StaticWindow(nn.Module):
    """forward(text, audio, video, present, valid, rows) → `(R, n_outputs)` pooled rows: the
    model's own forward with a validity mask, under the fixed signature engines compile/export.

    - each modality: `(1, L, D, 200)`, zeros where absent or padded;
    - `present (3,)`: 1.0 for a present modality, 0.0 for an absent one (zeros after its projector);
    - `valid (1,)` int64: number of real tokens; `rows (R,)` int64: pooled rows to return.
    """

    def __init__(self, model: FmriEncoder, window: int = MAX_TOKENS):
        super().__init__()
        self.model = model
        self.window = window

    def forward(self, text, audio, video, present, valid, rows):
        return self.model(text, audio, video, pool=True, rows=rows, present=present, valid=valid)[0]


def pack_inputs(
    features: dict[str, torch.Tensor | None],
    config,
    window: int = MAX_TOKENS,
    device=None,
    dtype=torch.float32,
):
    """Pad `(L, D, T)` features to the window and build (text, audio, video, present, valid)."""
    present_any = [v for v in features.values() if v is not None]
    T = present_any[0].shape[-1]
    out, present = [], []
    for m, dims in config.feature_dims.items():
        buf = torch.zeros(1, dims[0], dims[1], window, device=device, dtype=dtype)
        x = features.get(m)
        if x is not None:
            buf[0, :, :, :T] = x
        out.append(buf)
        present.append(1.0 if x is not None else 0.0)
    return (*out, torch.tensor(present, device=device), torch.tensor([T], device=device))
