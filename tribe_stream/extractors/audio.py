"""Audio features: w2v-BERT 2.0 over a span of audio, layer groups per frame, nearest frame per bin.

The span is z-scored (mean, unbiased std), turned into 80-mel features (`SeamlessM4TFeatureExtractor`,
50 frames/s after stacking), run through the model in one bidirectional pass, and each 2 Hz bin
takes the frame at its start (`F.interpolate(mode="nearest")` over the span, as the official
extractor). Offline the recording is cut in 30–60 s chunks like the official pipeline; live, each
pass covers a trailing context of `context_seconds` ending at the newest bin.
"""

from __future__ import annotations

import logging
import os
import types
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from tribe_stream import BIN_SECONDS
from tribe_stream.errors import InputError
from tribe_stream.extractors.accel import compile_blocks, sdpa_context
from tribe_stream.extractors.config import ModalitySettings
from tribe_stream.extractors.fbank import TorchFbank
from tribe_stream.extractors.grouped import GroupedExtractor
from tribe_stream.extractors.layers import needed_group_weights
from tribe_stream.extractors.loading import load_pretrained, locate, pick_dtype
from tribe_stream.extractors.timing import (
    chunk_bounds,
    frames_for_bins,
    n_bins_for,
    nearest_frame_indices,
)

log = logging.getLogger(__name__)

RATE = 16000


def zscore(samples: np.ndarray | torch.Tensor) -> torch.Tensor:
    """`(x - mean) / (1e-8 + std)`, unbiased std, as the official audio preprocessing."""
    x = torch.as_tensor(samples).to(torch.float32).reshape(-1)
    if x.numel() < 2:
        return torch.zeros_like(x)
    return (x - x.mean()) / (1e-8 + x.std())


def _relative_key_attention(
    self: nn.Module,
    hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    relative_position_embeddings: torch.Tensor | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """w2v-BERT `relative_key` self-attention with the same numbers as `transformers`' own, cheaper.

    `transformers` adds `q_i . E[clamp(j - i)] / sqrt(d)` to every score by materialising a
    `(T, T, d)` table of distance embeddings (288 MB a layer for 30 s in fp16) and an einsum over
    it. The distance is clamped to `[-left, right]`, so each query meets only `left + right + 1`
    embeddings: multiply by those (`(T, left + right + 1)` per head) and gather them into the
    `(T, T)` bias, which goes to scaled-dot-product attention as its additive mask.
    """
    if attention_mask is not None:  # padded batches: the model's own path
        return self._tribe_forward(
            hidden_states,
            attention_mask=attention_mask,
            relative_position_embeddings=relative_position_embeddings,
            **kwargs,
        )
    b, t, _ = hidden_states.shape
    nh, hs = self.num_heads, self.head_size
    scaling = hs**-0.5
    q = self.linear_q(hidden_states).view(b, t, nh, hs).transpose(1, 2)
    k = self.linear_k(hidden_states).view(b, t, nh, hs).transpose(1, 2)
    v = self.linear_v(hidden_states).view(b, t, nh, hs).transpose(1, 2)
    left, right = self.left_max_position_embeddings, self.right_max_position_embeddings
    table = self.distance_embedding.weight.to(q.dtype)  # (left + right + 1, hs)
    per_distance = q @ table.t()  # (b, nh, t, left + right + 1)
    pos = torch.arange(t, device=q.device)
    dist = (pos[None, :] - pos[:, None]).clamp(-left, right) + left  # (t, t)
    bias = torch.gather(per_distance, 3, dist.expand(b, nh, t, t)) * scaling
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scaling)
    return self.linear_out(out.transpose(1, 2).reshape(b, t, nh * hs)), None


def use_fast_relative_key(model: nn.Module) -> int:
    """Route each `relative_key` self-attention of a w2v-BERT through `_relative_key_attention`
    (same weights, same state dict; the original forward stays as `_tribe_forward`). Returns the count."""
    n = 0
    for module in model.modules():
        if (
            getattr(module, "position_embeddings_type", None) == "relative_key"
            and hasattr(module, "distance_embedding")
            and not hasattr(module, "_tribe_forward")
        ):
            module._tribe_forward = module.forward
            module.forward = types.MethodType(_relative_key_attention, module)
            n += 1
    return n


class GroupedAudioEncoder(nn.Module):
    """w2v-BERT on input features `(1, T, 160)` -> layer groups per frame `(L, T, D)` float32."""

    def __init__(self, model: nn.Module, groups: list[list[int]]):
        super().__init__()
        self.model = model
        n_states = int(model.config.num_hidden_layers) + 1
        self.needed, w = needed_group_weights(groups, n_states)
        self.register_buffer("weights", torch.from_numpy(w), persistent=False)

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        states = self.model(input_features=input_features, output_hidden_states=True).hidden_states
        stacked = torch.stack([states[i][0].float() for i in self.needed])  # (n_needed, T, D)
        return torch.einsum("ln,ntd->ltd", self.weights, stacked)


class AudioExtractor(GroupedExtractor):
    """w2v-BERT audio features per 0.5 s bin: `(n_bins, L, D)` float32 from 16 kHz mono samples."""

    def __init__(
        self,
        model: nn.Module,
        processor,
        settings: ModalitySettings,
        *,
        device: str = "cpu",
        compile: bool = False,
        attention: Sequence[str] | None = None,
    ):
        self._setup(model, settings, device)
        self.processor = processor
        self.dtype = next(model.parameters()).dtype
        self.encoder = GroupedAudioEncoder(model, self.groups).to(device).eval()
        use_fast_relative_key(model)
        if compile:
            compile_blocks(model.encoder.layers, dynamic=None)
        self.attention = tuple(attention) if attention else None
        self.fbank = TorchFbank(processor, device)
        if int(getattr(processor, "sampling_rate", RATE)) != RATE:
            raise InputError(
                f"the audio processor expects {processor.sampling_rate} Hz; tribe-stream feeds 16 kHz"
            )

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike | None = None,
        settings: ModalitySettings | None = None,
        *,
        device: str | None = "auto",
        dtype: torch.dtype | str | None = None,
        compile: bool = False,
        attention: Sequence[str] | None = None,
    ) -> AudioExtractor:
        """Load a `Wav2Vec2BertModel` folder (with its `SeamlessM4TFeatureExtractor`) or cached hub id."""
        from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertModel

        settings, folder, dev = locate(name_or_path, settings, "audio", device)
        model = load_pretrained(
            Wav2Vec2BertModel, folder, "w2v-BERT audio model", dtype=pick_dtype(dev, dtype)
        )
        processor = load_pretrained(
            SeamlessM4TFeatureExtractor, folder, "w2v-BERT feature extractor"
        )
        return cls(
            model.to(dev), processor, settings, device=dev, compile=compile, attention=attention
        )

    def n_frames(self, n_samples: int) -> int:
        """Model frames for a span of `n_samples` samples (about 50 per second)."""
        return self.fbank.n_frames(n_samples)

    @torch.inference_mode()
    def frames(self, samples: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Layer-group features of every model frame of the span: `(L, n_frames, D)` float32 on device."""
        x = zscore(torch.as_tensor(np.asarray(samples, dtype=np.float32)).to(self.device))
        if x.numel() < 400:
            raise InputError(f"audio span of {x.numel()} samples is shorter than one 25 ms frame")
        feats = self.fbank(x)[None].to(self.dtype)
        with sdpa_context(self.attention):
            return self.encoder(feats)

    def extract(
        self, samples: np.ndarray, t0: float, bins: Sequence[int] | np.ndarray
    ) -> np.ndarray:
        """Features `(n_bins, L, D)` of `bins`, from samples covering `[t0, t0 + len/16000)` on the stream clock.

        One pass over the whole span; each bin takes the frame at its start (nearest sampling).
        """
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        b = np.asarray(bins, dtype=np.int64).reshape(-1)
        if b.size == 0:
            return np.zeros((0, *self.shape), np.float32)
        t1 = t0 + len(samples) / RATE
        per_frame = self.frames(samples)
        idx = frames_for_bins(b, t0, t1, per_frame.shape[1])
        return (
            per_frame[:, torch.as_tensor(idx, device=per_frame.device)]
            .permute(1, 0, 2)
            .cpu()
            .numpy()
        )

    def extract_chunk(self, samples: np.ndarray) -> np.ndarray:
        """One official chunk -> `(L, D, round(2*duration))`, nearest frame per bin."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        n_out = n_bins_for(len(samples) / RATE)
        per_frame = self.frames(samples)
        idx = torch.as_tensor(
            nearest_frame_indices(per_frame.shape[1], n_out), device=per_frame.device
        )
        return per_frame[:, idx].permute(0, 2, 1).cpu().numpy()

    def extract_samples(self, samples: np.ndarray, n_bins: int | None = None) -> np.ndarray:
        """A whole recording (16 kHz mono) -> `(L, D, T)`: official 30–60 s chunks, each one pass."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        duration = len(samples) / RATE
        total = n_bins if n_bins is not None else n_bins_for(duration)
        out = np.zeros((*self.shape, total), np.float32)
        for c0, c1 in chunk_bounds(
            duration, self.settings.chunk_max_seconds, self.settings.chunk_min_seconds
        ):
            piece = samples[int(round(c0 * RATE)) : int(round(c1 * RATE))]
            if len(piece) < 400:
                continue
            feats = self.extract_chunk(piece)
            first = int(round(c0 / BIN_SECONDS))
            n = max(0, min(feats.shape[-1], total - first))
            out[..., first : first + n] = feats[..., :n]
        return out

    def extract_file(self, path: str | os.PathLike, n_bins: int | None = None) -> np.ndarray:
        """A media file's first audio stream -> `(L, D, T)`."""
        from tribe_stream.extractors.media import read_audio

        return self.extract_samples(read_audio(path), n_bins)

    def live(self, context_seconds: float = 30.0) -> LiveAudio:
        """A live helper keeping the trailing `context_seconds` of audio."""
        return LiveAudio(self, context_seconds)


class LiveAudio:
    """Trailing-context audio features for a live stream.

    `feed(samples, t_start)` appends audio stamped on the stream clock; `extract(bins)` runs one
    pass over the `context_seconds` of audio ending at the end of the newest requested bin and
    returns `(n_bins, L, D)`. Gaps in the audio are filled with silence (and counted).
    """

    def __init__(self, extractor: AudioExtractor, context_seconds: float = 30.0):
        if context_seconds < 1.0:
            raise InputError(f"the audio context must be at least 1 s, got {context_seconds}")
        self.extractor = extractor
        self.context_seconds = float(context_seconds)
        self._buf = np.zeros(0, np.float32)
        self._t0 = 0.0  # stream time of _buf[0]
        self.counters = {"audio_gap_samples": 0, "audio_overlap_samples": 0}

    @property
    def end_time(self) -> float:
        """Stream time just after the newest sample held."""
        return self._t0 + len(self._buf) / RATE

    def feed(self, samples: np.ndarray, t_start: float) -> None:
        """Append mono 16 kHz samples starting at stream time `t_start`."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not len(self._buf):
            self._t0 = float(t_start)
        else:
            gap = int(round((t_start - self.end_time) * RATE))
            if gap > 0:
                self.counters["audio_gap_samples"] += gap
                x = np.concatenate([np.zeros(gap, np.float32), x])
            elif gap < 0:
                self.counters["audio_overlap_samples"] += min(-gap, len(x))
                x = x[-gap:]
        self._buf = np.concatenate([self._buf, x])
        keep = int(round((self.context_seconds + 2.0) * RATE))
        if len(self._buf) > keep:
            cut = len(self._buf) - keep
            self._buf = self._buf[cut:]
            self._t0 += cut / RATE

    def extract(self, bins: Sequence[int] | np.ndarray) -> np.ndarray:
        """Features `(n, L, D)` of `bins`, from the trailing context ending at the newest bin's end."""
        b = np.asarray(bins, dtype=np.int64).reshape(-1)
        if b.size == 0:
            return np.zeros((0, *self.extractor.shape), np.float32)
        t_end = (b.max() + 1) * BIN_SECONDS
        if t_end > self.end_time + 1e-6:
            raise InputError(
                f"audio up to {t_end:.2f} s asked for, but only {self.end_time:.2f} s arrived"
            )
        t_start = max(self._t0, t_end - self.context_seconds)
        t_start = np.ceil(t_start / BIN_SECONDS - 1e-9) * BIN_SECONDS  # start on the bin grid
        if b.min() * BIN_SECONDS < t_start - 1e-6:
            raise InputError(
                f"bin {b.min()} is older than the {self.context_seconds:.0f} s audio context"
            )
        i0 = int(round((t_start - self._t0) * RATE))
        i1 = int(round((t_end - self._t0) * RATE))
        return self.extractor.extract(self._buf[i0:i1], t_start, b)
