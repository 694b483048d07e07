"""The V-JEPA2 encoder trunk as one readable forward over the `transformers` model's own weights.

Same arithmetic as `VJEPA2Model`'s encoder, arranged for speed: the tubelet embedding (a conv3d
whose kernel equals its stride) as one matrix product, query/key/value as one product, the 3-D
rotary tables made once per token count instead of in every layer, and only the hidden states a
layer group uses averaged over tokens. Optionally the four matrix products of each layer run in
FP8 (`fp8.py`). The model object itself is left untouched.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from tribe_stream.extractors.accel import fused_linear
from tribe_stream.extractors.fp8 import (
    ACT_DTYPE,
    Fp8Linear,
    VideoFp8,
    gelu_quantize_rows,
    norm_quantize_rows,
    quantize_rows,
)
from tribe_stream.extractors.fp8_attention import attend_fp8
from tribe_stream.extractors.layers import needed_group_weights

ROPE_BOUND = 2**0.5  # |x cos + y sin| <= sqrt(2) max(|x|, |y|)


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """`(x0, x1, x2, x3, ...)` -> `(-x1, x0, -x3, x2, ...)`: V-JEPA2's rotation partner."""
    y1, y2 = x.unflatten(-1, (-1, 2)).unbind(dim=-1)
    return torch.stack((-y2, y1), dim=-1).flatten(-2)


def rope_tables(attn: nn.Module, n_tokens: int, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """`(cos, sin)`, each `(n_tokens, head_dim)`, of a V-JEPA2 attention's 3-D rotary embedding.

    The same operations, in the same dtype, as `transformers`' `rotate_queries_or_keys` per
    (frame, height, width) segment, laid side by side; dimensions past the three segments keep
    their value (cos 1, sin 0).
    """
    probe = torch.empty((1, n_tokens, 1), dtype=dtype, device=device)
    cos, sin = [], []
    ids = attn.get_position_ids(probe)
    widths = (attn.d_dim, attn.h_dim, attn.w_dim)
    for pos, width in zip(ids, widths, strict=True):
        omega = torch.arange(width // 2, dtype=dtype, device=device)
        omega /= width / 2.0
        omega = 1.0 / 10000**omega
        freq = pos.unsqueeze(-1) * omega  # (n, width / 2)
        cos.append(freq.cos().repeat(1, 2))
        sin.append(freq.sin().repeat(1, 2))
    rest = int(attn.attention_head_size) - sum(widths)
    if rest > 0:
        cos.append(torch.ones((n_tokens, rest), dtype=dtype, device=device))
        sin.append(torch.zeros((n_tokens, rest), dtype=dtype, device=device))
    return torch.cat(cos, dim=-1), torch.cat(sin, dim=-1)


class TubeletEmbed(nn.Module):
    """V-JEPA2's conv3d patch embedding (kernel == stride) as one matrix product over tubelets."""

    def __init__(self, conv: nn.Conv3d):
        super().__init__()
        self.t, self.p, _ = conv.kernel_size
        self.weight = conv.weight  # shared with the model, viewed as (D, C·t·p·p) when used
        self.bias = conv.bias

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """`(B, F, C, H, W)` -> `(B, F/t · H/p · W/p, D)`, tokens in (time, row, column) order."""
        t, p = self.t, self.p
        if clips.shape[1] < t:  # as transformers: too few frames are repeated
            clips = clips.repeat(1, t, 1, 1, 1)
        b, f, c, h, w = clips.shape
        f, h, w = f // t * t, h // p * p, w // p * p  # a conv drops the remainders
        x = clips[:, :f, :, :h, :w].to(self.weight.dtype)
        x = x.reshape(b, f // t, t, c, h // p, p, w // p, p).permute(0, 1, 4, 6, 3, 2, 5, 7)
        x = x.reshape(b * (f // t) * (h // p) * (w // p), c * t * p * p)
        out = F.linear(x, self.weight.reshape(self.weight.shape[0], -1), self.bias)
        return out.view(b, -1, self.weight.shape[0])


class EncoderLayer(nn.Module):
    """One V-JEPA2 block: pre-norm rotary self-attention and a GELU MLP, each with a residual."""

    def __init__(self, layer: nn.Module, fp8: VideoFp8 = VideoFp8.OFF):
        super().__init__()
        attn = layer.attention
        self.heads, self.head_dim = attn.num_attention_heads, attn.attention_head_size
        self.scale = attn.scaling
        self.norm1, self.norm2 = layer.norm1, layer.norm2
        self.qkv, self.proj = fused_linear(attn.query, attn.key, attn.value), attn.proj
        self.fc1, self.act, self.fc2 = layer.mlp.fc1, layer.mlp.activation, layer.mlp.fc2
        self.fp8 = fp8
        if fp8:
            self.norm1 = copy.deepcopy(layer.norm1).to(ACT_DTYPE)
            self.norm2 = copy.deepcopy(layer.norm2).to(ACT_DTYPE)
            self.qkv, self.proj = Fp8Linear(self.qkv), Fp8Linear(attn.proj)
            self.fc1, self.fc2 = Fp8Linear(layer.mlp.fc1), Fp8Linear(layer.mlp.fc2)
            # erf GELU (what V-JEPA2 uses) goes through the fused GELU + quantise kernel
            self.exact_gelu = type(self.act).__name__ in ("GELU", "GELUActivation") and (
                getattr(self.act, "approximate", "none") == "none"
            )

    def mlp_rows(self, x8: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """The FP8 MLP of already quantised `(M, D)` rows -> `(M, D)`."""
        h = self.fc1.matmul(x8, scale)
        rows = gelu_quantize_rows(h) if self.exact_gelu else quantize_rows(self.act(h))
        return self.fc2.matmul(*rows)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        if self.fp8:  # the norm and its quantisation in one pass
            _, x8, s8 = norm_quantize_rows(x.reshape(b * n, d), self.norm1)
            qkv = self.qkv.matmul(x8, s8).view(b, n, 3, self.heads, self.head_dim)
        else:
            qkv = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, self.head_dim)
        if self.fp8.attention:  # (b, n, heads, head_dim) in and out: no transposes
            # per-clip scales of the rotated queries and keys from the unrotated ones: each rotated
            # entry is x_i cos + x_j sin, so |it| <= (|cos| + |sin|) max|x| <= sqrt(2) max|x|.
            # One read of q and k instead of rotating them twice (measured: docs/BENCHMARKS.md).
            amax = qkv[:, :, :2].abs().amax(dim=(1, 3, 4)).float() * ROPE_BOUND
            q, k, v = qkv.unbind(2)
            cos, sin = cos[:, None], sin[:, None]
            q = q * cos + rotate_pairs(q) * sin
            k = k * cos + rotate_pairs(k) * sin
            o8, descale = attend_fp8(q, k, v, self.scale, amax)
            # the projection takes the FP8 output as it is, on per-clip scales
            a = self.proj.matmul(o8.view(b * n, d), descale.repeat_interleave(n).view(-1, 1))
            x, x8, s8 = norm_quantize_rows(a, self.norm2, residual=x.reshape(b * n, d))
            return (x + self.mlp_rows(x8, s8)).view(b, n, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (b, heads, n, head_dim)
        q = q * cos + rotate_pairs(q) * sin
        k = k * cos + rotate_pairs(k) * sin
        o = F.scaled_dot_product_attention(q, k, v, scale=self.scale).transpose(1, 2)
        x = x + self.proj(o.reshape(b, n, d))
        if self.fp8:
            h, x8, s8 = norm_quantize_rows(x.reshape(b * n, d), self.norm2)
            return (h + self.mlp_rows(x8, s8)).view(b, n, d)
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class VideoTrunk(nn.Module):
    """The encoder returning only token-mean layer groups `(B, L, D)` float32.

    Hidden state 0 is the tubelet embedding, state i the output of layer i. The predictor (which
    does not change the encoder's hidden states) is skipped.
    """

    def __init__(
        self,
        model: nn.Module,
        groups: list[list[int]],
        fp8: VideoFp8 = VideoFp8.OFF,
    ):
        super().__init__()
        enc = model.encoder
        self.embed = TubeletEmbed(enc.embeddings.patch_embeddings.proj)
        self.layers = nn.ModuleList(EncoderLayer(layer, fp8) for layer in enc.layer)
        self._rope_source = enc.layer[0].attention
        self.dtype = ACT_DTYPE if fp8 else enc.embeddings.patch_embeddings.proj.weight.dtype
        self.needed, w = needed_group_weights(groups, len(self.layers) + 1)
        self.register_buffer("weights", torch.from_numpy(w), persistent=False)  # (L, n_needed)
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None

    def rope(self, n_tokens: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """The rotary tables for this token count (made once, in the model's dtype)."""
        if self._rope is None or self._rope[0].shape[0] != n_tokens:
            dtype = self.embed.weight.dtype
            cos, sin = rope_tables(self._rope_source, n_tokens, dtype, device)
            self._rope = (cos.to(self.dtype), sin.to(self.dtype))
        return self._rope

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """`(B, F, C, H, W)` normalised clips -> `(B, L, D)` float32."""
        h = self.embed(clips).to(self.dtype)
        cos, sin = self.rope(h.shape[1], h.device)
        means = [h.mean(dim=1, dtype=torch.float32)] if 0 in self.needed else []
        for i, layer in enumerate(self.layers, start=1):
            h = layer(h, cos, sin)
            if i in self.needed:
                means.append(h.mean(dim=1, dtype=torch.float32))
        return torch.einsum("ln,bnd->bld", self.weights, torch.stack(means, dim=1))
