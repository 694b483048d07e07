"""The brain model on a fixed-size window: the one static-shape graph that compiled, ONNX and
TensorRT engines run. Real tokens come first; padding is masked out of attention, so real-token
outputs equal the unpadded model's."""

from __future__ import annotations

import torch
from torch import nn

from tribe_stream import MAX_TOKENS
from tribe_stream.model.fmri_encoder import FmriEncoder, pool_pairs, pool_valid_pairs


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


def pooled_rows(
    model: FmriEncoder,
    features: dict[str, torch.Tensor | None],
    rows: torch.Tensor,
    present: torch.Tensor | None = None,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Windows `(B, L, D, T)` of B streams -> `(B, n_outputs)`: the model's forward with a
    different pooled row for each window (`rows (B,)`), the head run on those rows only."""
    x = model.encode(model.embed(features, present), valid)
    x = pool_pairs(x) if valid is None else pool_valid_pairs(x, valid)
    x = x[torch.arange(x.shape[0], device=x.device), rows]
    return model.head(x[:, None])[:, 0]


class BatchWindow(nn.Module):
    """`StaticWindow` for B streams at once: each modality `(B, L, D, 200)`, `present (3,)`
    (one set of modalities for the batch), `valid (B,)` real tokens of each window, `rows (B,)`
    the pooled row each stream needs; returns `(B, n_outputs)`."""

    def __init__(self, model: FmriEncoder, window: int = MAX_TOKENS):
        super().__init__()
        self.model = model
        self.window = window

    def forward(self, text, audio, video, present, valid, rows):
        feats = {"text": text, "audio": audio, "video": video}
        return pooled_rows(self.model, feats, rows, present=present, valid=valid)


def pack_batch(
    windows: list[dict[str, torch.Tensor | None]],
    config,
    batch: int,
    window: int = MAX_TOKENS,
    device=None,
    dtype=torch.float32,
):
    """Pad B windows `(L, D, T_i)` of one set of modalities to `(batch, L, D, window)` each
    (rows past B repeat nothing: zeros, one valid token) and build (text, audio, video,
    present, valid)."""
    out, present = [], []
    for m, dims in config.feature_dims.items():
        buf = torch.zeros(batch, dims[0], dims[1], window, device=device, dtype=dtype)
        given = windows[0].get(m) is not None
        if given:
            for i, w in enumerate(windows):
                x = w[m]
                buf[i, :, :, : x.shape[-1]] = torch.as_tensor(x, device=device)
        out.append(buf)
        present.append(1.0 if given else 0.0)
    valid = [next(x for x in w.values() if x is not None).shape[-1] for w in windows]
    valid += [1] * (batch - len(windows))
    return (
        *out,
        torch.tensor(present, device=device),
        torch.tensor(valid, device=device, dtype=torch.long),
    )
