"""The brain model on a fixed-size window: the one static-shape graph that compiled, ONNX and
TensorRT engines run. Real tokens come first; padding is masked out of attention, so real-token
outputs equal the unpadded model's."""

from __future__ import annotations

import torch
from torch import nn

from tribe_stream import MAX_TOKENS
from tribe_stream.model.fmri_encoder import FmriEncoder, pool_pairs


class StaticWindow(nn.Module):
    """forward(text, audio, video, present, valid, rows) → `(R, n_outputs)` pooled rows.

    - each modality: `(1, L, D, 200)`, zeros where absent or padded;
    - `present (3,)`: 1.0 for a present modality, 0.0 for an absent one (zeros after its projector);
    - `valid (1,)` int64: number of real tokens; `rows (R,)` int64: pooled rows to return.
    """

    def __init__(self, model: FmriEncoder, window: int = MAX_TOKENS):
        super().__init__()
        self.model = model
        self.window = window
        self.modalities = list(model.config.feature_dims)

    def forward(self, text, audio, video, present, valid, rows):
        feats = {"text": text, "audio": audio, "video": video}
        parts = []
        for i, m in enumerate(self.modalities):
            x = feats[m].to(self.model.time_pos_embed.dtype).flatten(1, 2).transpose(1, 2)
            parts.append(self.model.projectors[m](x) * present[i].to(x.dtype))
        x = self.model.encode(torch.cat(parts, dim=-1), valid)
        # pool over real tokens only: a lone last token (odd T) is its own row, as in eager
        real = (torch.arange(x.shape[1], device=x.device) < valid).to(x.dtype)[None, :, None]
        x = pool_pairs(x * real) / pool_pairs(real).clamp_min(0.5)
        return self.model.head(x.index_select(1, rows))[0]


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
