"""Audio features: w2v-BERT 2.0 over a span of audio, layer groups per frame, nearest frame per bin.

The span is z-scored (mean, unbiased std), turned into 80-mel features (`SeamlessM4TFeatureExtractor`,
50 frames/s after stacking), run through the model in one bidirectional pass, and each 2 Hz bin
takes the frame at its start (`F.interpolate(mode="nearest")` over the span, as the official
extractor). Offline the recording is cut in 30–60 s chunks like the official pipeline; live, each
pass covers a trailing context of `context_seconds` ending at the newest bin.

The encoder is `AudioTrunk` (`audio_encoder.py`) for the real model's `relative_key` positions,
the model's own call otherwise. Live on a GPU with `compile=True`, each pass is padded to the
context's length so one CUDA graph replays every pass (~600 small kernels, launch-bound).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tribe_stream import AUDIO_RATE, BIN_SECONDS
from tribe_stream.devices import pick_dtype
from tribe_stream.errors import InputError
from tribe_stream.extractors.accel import CudaGraphStep, compile_blocks, sdpa_context
from tribe_stream.extractors.audio_encoder import AudioTrunk
from tribe_stream.extractors.config import ModalitySettings
from tribe_stream.extractors.fbank import TorchFbank
from tribe_stream.extractors.grouped import GroupedExtractor, unwrap
from tribe_stream.extractors.layers import needed_group_weights
from tribe_stream.extractors.loading import load_pretrained, locate
from tribe_stream.extractors.timing import (
    chunk_bounds,
    frames_for_bins,
    n_bins_for,
    nearest_frame_indices,
)
from tribe_stream.media import Sound, read_sound, resample_sound

log = logging.getLogger(__name__)


def zscore(samples: np.ndarray | torch.Tensor) -> torch.Tensor:
    """`(x - mean) / (1e-8 + std)`, unbiased std, as the official audio preprocessing.

    The mean and std are summed in float64: in float32 their last bit depends on the thread
    count, and the log-mel filterbank magnifies that in near-silent bands (1 and 2 threads gave
    features 9e-5 apart)."""
    x = torch.as_tensor(samples).to(torch.float32).reshape(-1)
    if x.numel() < 2:
        return torch.zeros_like(x)
    d = x.double()
    return (x - d.mean().float()) / (1e-8 + d.std().float())


class GroupedAudioEncoder(nn.Module):
    """The model's own call on input features `(B, T, 160)` -> layer groups per frame
    `(B, L, T, D)` float32: for w2v-BERT variants `AudioTrunk` does not cover."""

    def __init__(self, model: nn.Module, groups: list[list[int]]):
        super().__init__()
        self.model = model
        n_states = int(model.config.num_hidden_layers) + 1
        self.needed, w = needed_group_weights(groups, n_states)
        self.register_buffer("weights", torch.from_numpy(w), persistent=False)

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        states = self.model(input_features=input_features, output_hidden_states=True).hidden_states
        stacked = torch.stack([states[i].float() for i in self.needed], dim=1)  # (B, n, T, D)
        return torch.einsum("ln,bntd->bltd", self.weights, stacked)


@dataclass
class AudioPass:
    """One w2v-BERT pass to run: samples covering `[t0, t0 + len/16000)` and the bins it fills."""

    samples: np.ndarray
    t0: float
    bins: np.ndarray | Sequence[int]
    pad_to: int | None = None


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
        if AudioTrunk.supports(model):
            self.encoder: nn.Module = AudioTrunk(model, self.groups).to(device).eval()
            blocks = self.encoder.layers
        else:
            self.encoder = GroupedAudioEncoder(model, self.groups).to(device).eval()
            blocks = model.encoder.layers
        if compile:
            compile_blocks(blocks, dynamic=None)
        # live passes padded to the context's length replay one CUDA graph (GPU, compiled trunk)
        self.pad_live = compile and str(device).startswith("cuda") and AudioTrunk.supports(model)
        self.graphs = self.pad_live
        self._steps: dict[int, CudaGraphStep] = {}
        self.attention = tuple(attention) if attention else None
        self.fbank = TorchFbank(processor, device)
        if int(getattr(processor, "sampling_rate", AUDIO_RATE)) != AUDIO_RATE:
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
    def frames(self, samples: np.ndarray | torch.Tensor, pad_to: int | None = None) -> torch.Tensor:
        """Layer-group features of every model frame of the span: `(L, n_frames, D)` float32 on device.

        `pad_to` (frames): when `pad_live` is on, run the span padded to this many frames (same
        features, one static shape: a CUDA graph on the GPU); ignored otherwise or if shorter.
        """
        return self.frames_batch([(samples, pad_to)])[0]

    @torch.inference_mode()
    def frames_batch(
        self, spans: Sequence[tuple[np.ndarray | torch.Tensor, int | None]]
    ) -> list[torch.Tensor]:
        """`frames` of several `(samples, pad_to)` spans (other streams' passes) in as few
        forwards as their shapes allow: spans padded to one length, or of one length, run as one
        batch (a span's frames do not depend on the others in its batch)."""
        feats, groups = [], {}
        for i, (samples, pad_to) in enumerate(spans):
            x = zscore(torch.as_tensor(np.asarray(samples, dtype=np.float32)).to(self.device))
            if x.numel() < 400:
                raise InputError(
                    f"audio span of {x.numel()} samples is shorter than one 25 ms frame"
                )
            f = self.fbank(x).to(self.dtype)  # (n, 160)
            n = f.shape[0]
            padded = self.pad_live and pad_to is not None and n <= pad_to
            groups.setdefault(("pad", pad_to) if padded else ("len", n), []).append(i)
            feats.append(f)
        out: list = [None] * len(feats)
        with sdpa_context(self.attention):
            for (kind, t), members in groups.items():
                if kind == "pad":
                    res = self._padded([feats[i] for i in members], t)
                else:
                    res = self.encoder(torch.stack([feats[i] for i in members]))
                for j, i in enumerate(members):
                    out[i] = res[j, :, : feats[i].shape[0]]
        return out

    def _padded(self, feats: list[torch.Tensor], t: int) -> torch.Tensor:
        """The trunk over spans `(n_i, 160)`, each padded with frames masked as keys to `t`."""
        b = len(feats)
        padded = feats[0].new_zeros((b, t, feats[0].shape[1]))
        key_bias = torch.full((b, 1, 1, t), float("-inf"), dtype=padded.dtype, device=padded.device)
        for i, f in enumerate(feats):
            padded[i, : f.shape[0]] = f
            key_bias[i, ..., : f.shape[0]] = 0.0
        if self.graphs:
            step = self._steps.get((b, t))
            if step is None:
                try:
                    step = self._steps[(b, t)] = CudaGraphStep(self.encoder, [padded, key_bias])
                except Exception as exc:  # noqa: BLE001 - the plain pass still works
                    log.warning("audio: CUDA graph capture failed (%s); running without", exc)
                    self.graphs = False
            if step is not None:
                return step(padded, key_bias)
        return self.encoder(padded, key_bias)

    def extract(
        self,
        samples: np.ndarray,
        t0: float,
        bins: Sequence[int] | np.ndarray,
        pad_to: int | None = None,
    ) -> np.ndarray:
        """Features `(n_bins, L, D)` of `bins`, from samples covering `[t0, t0 + len/16000)` on the stream clock.

        One pass over the whole span; each bin takes the frame at its start (nearest sampling).
        `pad_to`: as in `frames`.
        """
        return unwrap(self.extract_passes([AudioPass(samples, t0, bins, pad_to)])[0])

    def extract_passes(self, passes: Sequence[AudioPass]) -> list:
        """`extract` of several passes (several streams' seconds) batched by `frames_batch`;
        a pass that cannot run (or whose batch failed) gets the exception in its place."""
        out: list = [None] * len(passes)
        todo = []
        for i, p in enumerate(passes):
            p.samples = np.asarray(p.samples, dtype=np.float32).reshape(-1)
            p.bins = np.asarray(p.bins, dtype=np.int64).reshape(-1)
            if p.bins.size == 0:
                out[i] = np.zeros((0, *self.shape), np.float32)
            elif len(p.samples) < 400:
                out[i] = InputError(
                    f"audio span of {len(p.samples)} samples is shorter than one 25 ms frame"
                )
            else:
                todo.append(i)
        try:
            per_frame = self.frames_batch([(passes[i].samples, passes[i].pad_to) for i in todo])
        except Exception as exc:  # noqa: BLE001 - the caller counts it for each stream hit
            for i in todo:
                out[i] = exc
            return out
        for i, frames in zip(todo, per_frame, strict=True):
            p = passes[i]
            t1 = p.t0 + len(p.samples) / AUDIO_RATE
            idx = frames_for_bins(p.bins, p.t0, t1, frames.shape[1])
            out[i] = (
                frames[:, torch.as_tensor(idx, device=frames.device)].permute(1, 0, 2).cpu().numpy()
            )
        return out

    def extract_chunk(self, samples: np.ndarray, n_out: int | None = None) -> np.ndarray:
        """One official chunk (16 kHz mono) -> `(L, D, n_out)`, nearest frame per bin; `n_out`
        defaults to `round(2 * duration)` of the samples."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        n_out = n_bins_for(len(samples) / AUDIO_RATE) if n_out is None else n_out
        per_frame = self.frames(samples)
        idx = torch.as_tensor(
            nearest_frame_indices(per_frame.shape[1], n_out), device=per_frame.device
        )
        return per_frame[:, idx].permute(0, 2, 1).cpu().numpy()

    def extract_sound(self, sound: Sound, n_bins: int | None = None) -> np.ndarray:
        """A whole recording -> `(L, D, T)` as the official pipeline makes it: 30-60 s chunks
        cut from the sound at its own rate (`media.read_sound`), each resampled to 16 kHz on its
        own (julius) and run in one pass."""
        total = n_bins if n_bins is not None else n_bins_for(sound.duration)
        out = np.zeros((*self.shape, total), np.float32)
        for c0, c1 in chunk_bounds(
            sound.duration, self.settings.chunk_max_seconds, self.settings.chunk_min_seconds
        ):
            i0 = int(round(c0 * sound.rate))
            piece = resample_sound(
                sound.samples[i0 : i0 + int(round((c1 - c0) * sound.rate))], sound.rate
            )
            if len(piece) < 400:
                continue
            feats = self.extract_chunk(piece, n_bins_for(c1 - c0))
            first = int(round(c0 / BIN_SECONDS))
            n = max(0, min(feats.shape[-1], total - first))
            out[..., first : first + n] = feats[..., :n]
        return out

    def extract_samples(self, samples: np.ndarray, n_bins: int | None = None) -> np.ndarray:
        """A whole recording of 16 kHz mono samples -> `(L, D, T)` (`extract_sound`)."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        return self.extract_sound(Sound(samples, AUDIO_RATE), n_bins)

    def extract_file(self, path: str | os.PathLike, n_bins: int | None = None) -> np.ndarray:
        """A media file's first audio stream -> `(L, D, T)`."""
        return self.extract_sound(read_sound(path), n_bins)

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
        # the samples held are _store[:_n]: appended in place, the store made anew (the newest
        # `_keep` samples copied) only when full, so a chunk costs its own length, not the
        # context's (a copy of 2 MB per chunk before); passes planned keep views of old stores
        self._keep = int(round((self.context_seconds + 2.0) * AUDIO_RATE))
        self._store = np.zeros(0, np.float32)
        self._n = 0
        self._t0 = 0.0  # stream time of _store[0]
        self.counters = {"audio_gap_samples": 0, "audio_overlap_samples": 0}
        self.pad_to = extractor.n_frames(int(round(self.context_seconds * AUDIO_RATE)))

    @property
    def _buf(self) -> np.ndarray:
        return self._store[: self._n]

    @property
    def end_time(self) -> float:
        """Stream time just after the newest sample held."""
        return self._t0 + self._n / AUDIO_RATE

    def feed(self, samples: np.ndarray, t_start: float) -> None:
        """Append mono 16 kHz samples starting at stream time `t_start`."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not self._n:
            # Sound that begins between bin edges (a microphone or a browser opening late) is
            # led in with silence from its bin's start, so that bin has its pass like any other.
            start = np.floor(float(t_start) / BIN_SECONDS + 1e-9) * BIN_SECONDS
            lead = int(round((float(t_start) - start) * AUDIO_RATE))
            if lead > 0:
                x = np.concatenate([np.zeros(lead, np.float32), x])
            self._t0 = float(start) if lead > 0 else float(t_start)
        else:
            gap = int(round((t_start - self.end_time) * AUDIO_RATE))
            if gap > 0:
                self.counters["audio_gap_samples"] += gap
                x = np.concatenate([np.zeros(gap, np.float32), x])
            elif gap < 0:
                self.counters["audio_overlap_samples"] += min(-gap, len(x))
                x = x[-gap:]
        if self._n + len(x) > len(self._store):  # full: a new store, the newest samples kept
            tail = self._store[max(0, self._n - self._keep) : self._n]
            self._t0 += (self._n - len(tail)) / AUDIO_RATE
            store = np.empty(max(2 * self._keep, len(tail) + len(x)), np.float32)
            store[: len(tail)] = tail
            self._store, self._n = store, len(tail)
        self._store[self._n : self._n + len(x)] = x
        self._n += len(x)

    def extract(self, bins: Sequence[int] | np.ndarray) -> np.ndarray:
        """Features `(n, L, D)` of `bins`, from the trailing context ending at the newest bin's end."""
        b = np.asarray(bins, dtype=np.int64).reshape(-1)
        if b.size == 0:
            return np.zeros((0, *self.extractor.shape), np.float32)
        return unwrap(self.extractor.extract_passes([self.plan(b)])[0])

    def plan(self, bins: Sequence[int] | np.ndarray) -> AudioPass:
        """The pass that `extract(bins)` runs, its samples taken now (run later, batched)."""
        b = np.asarray(bins, dtype=np.int64).reshape(-1)
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
        i0 = int(round((t_start - self._t0) * AUDIO_RATE))
        i1 = int(round((t_end - self._t0) * AUDIO_RATE))
        return AudioPass(self._buf[i0:i1], t_start, b, self.pad_to)
