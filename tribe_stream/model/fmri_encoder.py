"""TRIBE v2's brain model (FmriEncoder) in plain PyTorch, read top to bottom.

Matches the official model (neuraltrain 0.0.2 + x_transformers 1.27.20 `Encoder`) to float32
rounding: see docs/MODEL.md §1. Inputs are per-modality features
`(B, L, D, T)` at 2 Hz; the output is time-major `(B, T_out, n_outputs)`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tribe_stream import MAX_TOKENS
from tribe_stream.errors import InputError
from tribe_stream.model.config import BrainConfig


class ScaleNorm(nn.Module):
    """`x / max(|x|, eps) * sqrt(dim) * g` with one learned scalar g; the norm is taken in float32."""

    def __init__(self, dim: int):
        super().__init__()
        self.scale = math.sqrt(dim)
        self.g = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x.float(), dim=-1, keepdim=True).clamp_min(1e-12)
        return x * (self.scale * self.g / norm).to(x.dtype)


def rotary_tables(inv_freq: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin `(T, r)` for positions 0..T-1, each frequency repeated for the two halves."""
    t = torch.arange(seq_len, device=inv_freq.device, dtype=inv_freq.dtype)
    freqs = torch.outer(t, inv_freq)
    freqs = torch.cat((freqs, freqs), dim=-1)
    return freqs.cos(), freqs.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Half-split RoPE on the first r dims of `x (B, H, T, dh)`; dims >= r pass through."""
    r = cos.shape[-1]
    x_rot, x_pass = x[..., :r], x[..., r:]
    x1, x2 = x_rot.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    x_rot = (x_rot.float() * cos + rotated.float() * sin).to(x.dtype)
    return torch.cat((x_rot, x_pass), dim=-1)


class Attention(nn.Module):
    """Bidirectional multi-head self-attention, no biases, rotary positions on q and k."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, rotary, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (
            proj(x).view(B, T, self.heads, C // self.heads).transpose(1, 2)
            for proj in (self.to_q, self.to_k, self.to_v)
        )
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # scale dh**-0.5
        return self.to_out(out.transpose(1, 2).reshape(B, T, C))


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int):
        super().__init__()
        self.up = nn.Linear(dim, dim * mult)
        self.down = nn.Linear(dim * mult, dim)

    def forward(self, x: torch.Tensor, rotary=None, mask=None) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """Pre-norm residual block: `x = f(norm(x)) + x * residual_scale` (the scale is on the skip path)."""

    def __init__(self, dim: int, fn: nn.Module, scale_residual: bool):
        super().__init__()
        self.norm = ScaleNorm(dim)
        self.fn = fn
        self.residual_scale = nn.Parameter(torch.ones(dim)) if scale_residual else None

    def forward(self, x: torch.Tensor, rotary, mask=None) -> torch.Tensor:
        h = self.fn(self.norm(x), rotary, mask)
        skip = x * self.residual_scale if self.residual_scale is not None else x
        return h + skip


class Encoder(nn.Module):
    """`depth` pairs of (attention, feed-forward) blocks, then a final ScaleNorm."""

    def __init__(self, c: BrainConfig):
        super().__init__()
        layers = []
        for _ in range(c.depth):
            layers.append(Block(c.hidden, Attention(c.hidden, c.heads), c.scale_residual))
            layers.append(Block(c.hidden, FeedForward(c.hidden, c.ff_mult), c.scale_residual))
        self.layers = nn.ModuleList(layers)
        self.final_norm = ScaleNorm(c.hidden)
        if c.rotary_pos_emb:
            r = c.rotary_dim
            self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, r, 2).float() / r)))
        else:
            self.inv_freq = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        rotary = rotary_tables(self.inv_freq, x.shape[1]) if self.inv_freq is not None else None
        for layer in self.layers:
            x = layer(x, rotary, mask)
        return self.final_norm(x)


class FmriEncoder(nn.Module):
    """Features of text, audio and video → predicted fMRI on `n_outputs` vertices.

    forward(text, audio, video): each `(B, L, D, T)` or None (absent). Returns `(B, T_out, n_outputs)`:
    `pool=True` gives one row per second (mean of token pairs 2k, 2k+1; equal to the official
    AdaptiveAvgPool1d(100) at T=200), `pool=False` one row per 2 Hz token. `rows` selects output
    rows (after pooling) before the head, which is what a live stream needs: only its newest second.
    """

    def __init__(self, config: BrainConfig):
        super().__init__()
        self.config = c = config
        self.projectors = nn.ModuleDict(
            {
                m: nn.Linear(dims[0] * dims[1], c.modality_width)
                for m, dims in c.feature_dims.items()
                if dims
            }
        )
        self.time_pos_embed = nn.Parameter(torch.zeros(1, c.max_seq_len, c.hidden))
        self.encoder = Encoder(c)
        head_in = c.hidden
        if c.low_rank_head:
            self.low_rank_head = nn.Linear(c.hidden, c.low_rank_head, bias=False)
            head_in = c.low_rank_head
        else:
            self.low_rank_head = None
        # The released checkpoints hold one shared "subject" row: y = x @ W[0] + b[0].
        self.predictor_weights = nn.Parameter(torch.zeros(c.n_subject_rows, head_in, c.n_outputs))
        self.predictor_bias = nn.Parameter(torch.zeros(c.n_subject_rows, c.n_outputs))

    def embed(
        self, features: dict[str, torch.Tensor | None], present: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Project each modality to hidden/3 and concat text|audio|video → `(B, T, hidden)`.

        An absent modality (None) gives zeros after its projector. `present (n_modalities,)`, for
        static graphs that always pass every modality: 1.0 keeps a modality's projection, 0.0
        makes it absent (the same zeros).
        """
        given = {m: x for m, x in features.items() if x is not None}
        if not given:
            raise InputError("no modality given: pass at least one of text, audio, video")
        unknown = set(given) - set(self.config.feature_dims)
        if unknown:
            raise InputError(
                f"unknown modalities {sorted(unknown)}; the model takes {list(self.config.feature_dims)}"
            )
        first = next(iter(given.values()))
        B, T = first.shape[0], first.shape[-1]
        dtype = self.time_pos_embed.dtype
        parts = []
        for i, (m, dims) in enumerate(self.config.feature_dims.items()):
            x = given.get(m)
            if x is None or m not in self.projectors:  # absent: zeros after the projector
                parts.append(
                    torch.zeros(B, T, self.config.modality_width, device=first.device, dtype=dtype)
                )
                continue
            if x.dim() == 3:
                x = x.unsqueeze(1)
            if tuple(x.shape[1:3]) != tuple(dims) or x.shape[0] != B or x.shape[-1] != T:
                raise InputError(
                    f"{m} features have shape {tuple(x.shape)}; expected (B={B}, L={dims[0]}, D={dims[1]}, T={T})"
                )
            x = x.to(dtype).flatten(1, 2).transpose(1, 2)  # b l d t -> b t (l d), layer-major
            y = self.projectors[m](x)
            parts.append(y if present is None else y * present[i].to(y.dtype))
        return torch.cat(parts, dim=-1)

    def forward(
        self,
        text: torch.Tensor | None = None,
        audio: torch.Tensor | None = None,
        video: torch.Tensor | None = None,
        pool: bool = True,
        rows: torch.Tensor | slice | None = None,
        present: torch.Tensor | None = None,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Features → `(B, rows, n_outputs)`. `present` and `valid` serve fixed-shape windows
        (compiled, ONNX and TensorRT engines): every modality passed, absent ones flagged 0 in
        `present`; only the first `valid` tokens real, the rest padding that nothing attends to
        and no pooled row averages in."""
        x = self.embed({"text": text, "audio": audio, "video": video}, present)
        x = self.encode(x, valid)
        if pool:
            x = pool_pairs(x) if valid is None else pool_valid_pairs(x, valid)
        if isinstance(rows, torch.Tensor):
            x = x.index_select(1, rows)
        elif rows is not None:
            x = x[:, rows]
        return self.head(x)

    def encode(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Learned time positions + the transformer over `(B, T, hidden)`.

        `valid (B,)` marks the first `valid` tokens as real and the rest as padding that no token
        attends to: a window padded to a fixed length gives the same real-token outputs (static
        shapes for compiled engines).
        """
        T = x.shape[1]
        if T > MAX_TOKENS:
            raise InputError(
                f"window of {T} tokens is longer than {MAX_TOKENS} (100 s at 2 Hz): positions >= 200 "
                "were never trained; cut the features into windows of at most 200 bins"
            )
        mask = None
        if valid is not None:
            mask = (torch.arange(T, device=x.device)[None, :] < valid[:, None])[:, None, None, :]
        return self.encoder(x + self.time_pos_embed[:, :T], mask)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Low-rank head then the shared subject row: `(B, T, hidden)` → `(B, T, n_outputs)`."""
        if self.low_rank_head is not None:
            x = self.low_rank_head(x)
        return x @ self.predictor_weights[0] + self.predictor_bias[0]


def pool_pairs(x: torch.Tensor) -> torch.Tensor:
    """`(B, T, C)` → `(B, ceil(T/2), C)`: the mean of tokens 2k and 2k+1 (a lone last token is kept)."""
    T = x.shape[1]
    if T % 2:
        last = x[:, -1:]
        return torch.cat((pool_pairs(x[:, :-1]), last), dim=1) if T > 1 else last
    return x.view(x.shape[0], T // 2, 2, x.shape[2]).mean(dim=2)


def pool_valid_pairs(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """`pool_pairs` over the first `valid` tokens only (padding after them is left out): a lone
    last real token (odd `valid`) is its own row, as in `pool_pairs` of the unpadded window."""
    real = (torch.arange(x.shape[1], device=x.device)[None, :] < valid[:, None]).to(x.dtype)
    real = real[:, :, None]
    return pool_pairs(x * real) / pool_pairs(real).clamp_min(0.5)


def copy_model(
    model: FmriEncoder, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> FmriEncoder:
    """A new FmriEncoder with `model`'s weights on `device` in `dtype`; `model` is never changed.

    Weights already on that device in that dtype are shared (read-only), not copied; buffers (the
    rotary frequencies) stay float32. Each engine runs its own copy, so building a bfloat16
    engine never degrades a float32 one built from the same loaded model.
    """
    with torch.device("meta"):
        new = FmriEncoder(model.config)
    params = {name for name, _ in model.named_parameters()}
    state = {
        k: v.detach().to(device=device, dtype=dtype if k in params else None)
        for k, v in model.state_dict().items()
    }
    new.load_state_dict(state, strict=True, assign=True)
    return new.requires_grad_(False).eval()
