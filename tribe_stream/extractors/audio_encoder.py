"""The w2v-BERT 2.0 encoder as one readable forward over the `transformers` model's own weights.

Same arithmetic as `Wav2Vec2BertModel` for unpadded input (the hidden states only; the adapter
and the intermediate feed-forward change only the last output, which the extractor does not use),
arranged for speed: rows stay `(B, T, D)` throughout (the 1x1 convolutions are matrix products,
no transposes), query/key/value are one product, and the `relative_key` bias is built from the
`left + right + 1` distinct distances instead of a `(T, T, head)` table, then gathered into the
additive mask of scaled-dot-product attention. Frames may be padded at the end (masked as keys),
so that one static shape, and so one CUDA graph, serves every span up to a length. The model
object itself is left untouched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tribe_stream.extractors.accel import fused_linear
from tribe_stream.extractors.layers import needed_group_weights


def distance_index(t: int, left: int, right: int, device) -> torch.Tensor:
    """`(t, t)` index into the distance table: `clamp(j - i, -left, right) + left`."""
    pos = torch.arange(t, device=device)
    return (pos[None, :] - pos[:, None]).clamp(-left, right) + left


class ConformerLayer(nn.Module):
    """One w2v-BERT block: half feed-forward, relative-key self-attention, causal depthwise
    convolution module, half feed-forward, final norm; each with its residual."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        attn, conv = layer.self_attn, layer.conv_module
        self.ffn1_norm, self.ffn1 = layer.ffn1_layer_norm, layer.ffn1
        self.attn_norm = layer.self_attn_layer_norm
        self.heads, self.head_dim = attn.num_heads, attn.head_size
        self.scale = attn.scaling
        self.qkv = fused_linear(attn.linear_q, attn.linear_k, attn.linear_v)
        self.attn_out = attn.linear_out
        self.distances = attn.distance_embedding.weight  # (left + right + 1, head_dim)
        self.left = attn.left_max_position_embeddings
        self.right = attn.right_max_position_embeddings
        self.conv_norm = conv.layer_norm
        self.pointwise1 = conv.pointwise_conv1.weight  # (2D, D, 1): used as (2D, D)
        self.depthwise = conv.depthwise_conv.weight  # (D, 1, K)
        self.depthwise_norm, self.conv_act = conv.depthwise_layer_norm, conv.activation
        self.pointwise2 = conv.pointwise_conv2.weight  # (D, D, 1)
        self.ffn2_norm, self.ffn2 = layer.ffn2_layer_norm, layer.ffn2
        self.final_norm = layer.final_layer_norm

    @staticmethod
    def feed_forward(ffn: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return ffn.output_dense(ffn.intermediate_act_fn(ffn.intermediate_dense(x)))

    def attention(
        self, x: torch.Tensor, dist: torch.Tensor, key_bias: torch.Tensor | None
    ) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        per_distance = q @ self.distances.t()  # (b, heads, t, left + right + 1)
        bias = torch.gather(per_distance, 3, dist.expand(b, self.heads, t, t)) * self.scale
        if key_bias is not None:  # padded frames: no query attends to them
            bias = bias + key_bias
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        return self.attn_out(o.transpose(1, 2).reshape(b, t, d))

    def convolution(self, x: torch.Tensor) -> torch.Tensor:
        h = F.glu(F.linear(self.conv_norm(x), self.pointwise1[..., 0]), dim=-1)  # (b, t, d)
        k = self.depthwise.shape[-1]
        h = F.conv1d(F.pad(h.transpose(1, 2), (k - 1, 0)), self.depthwise, groups=h.shape[-1])
        h = self.conv_act(self.depthwise_norm(h.transpose(1, 2)))
        return F.linear(h, self.pointwise2[..., 0])

    def forward(
        self, x: torch.Tensor, dist: torch.Tensor, key_bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.feed_forward(self.ffn1, self.ffn1_norm(x)) * 0.5 + x
        x = self.attention(self.attn_norm(x), dist, key_bias) + x
        x = x + self.convolution(x)
        x = self.feed_forward(self.ffn2, self.ffn2_norm(x)) * 0.5 + x
        return self.final_norm(x)


class AudioTrunk(nn.Module):
    """w2v-BERT input features `(B, T, 160)` -> layer groups per frame `(B, L, T, D)` float32.

    Hidden state 0 is the feature projection's output, state i the output of layer i; layers past
    the last one a group uses are not run.
    """

    def __init__(self, model: nn.Module, groups: list[list[int]]):
        super().__init__()
        self.norm = model.feature_projection.layer_norm
        self.project = model.feature_projection.projection
        self.needed, w = needed_group_weights(groups, int(model.config.num_hidden_layers) + 1)
        last = max(self.needed)
        self.layers = nn.ModuleList(ConformerLayer(lay) for lay in model.encoder.layers[:last])
        weights = torch.from_numpy(w).to(self.project.weight.device)
        self.register_buffer("weights", weights, persistent=False)  # (L, n_needed)
        self._dist: torch.Tensor | None = None

    @staticmethod
    def supports(model: nn.Module) -> bool:
        """Whether `model` is a w2v-BERT this trunk reproduces (`relative_key` positions)."""
        return getattr(model.config, "position_embeddings_type", None) == "relative_key"

    def dist(self, t: int, device) -> torch.Tensor:
        """The distance index for `t` frames (made once per length)."""
        if self._dist is None or self._dist.shape[0] != t or self._dist.device != device:
            first = self.layers[0]
            self._dist = distance_index(t, first.left, first.right, device)
        return self._dist

    def forward(self, features: torch.Tensor, key_bias: torch.Tensor | None = None) -> torch.Tensor:
        """`key_bias` `(T,)`: 0 for real frames, -inf for padding appended after them. Padded
        frames change nothing before them: attention ignores them as keys and the depthwise
        convolution is causal, so a padded pass equals the unpadded one on the real frames."""
        h = self.project(self.norm(features))
        dist = self.dist(h.shape[1], h.device)
        states = [h] if 0 in self.needed else []
        for i, layer in enumerate(self.layers, start=1):
            h = layer(h, dist, key_bias)
            if i in self.needed:
                states.append(h)
        return torch.einsum("ln,bntd->bltd", self.weights, torch.stack(states, dim=1).float())
