"""Feature extractors: the three foundation models that turn media into the brain model's inputs.

Everything is numpy in, numpy out; each extractor reports its per-bin shape `(L, D)` as `.shape`
and loads with `from_pretrained(folder | HF-cache entry | hub id, settings, device=, dtype=,
compile=)` (GPU: half precision by default; `compile=True` compiles the repeated layers, and for
text replays new tokens as a CUDA graph; video/audio take `attention=("cudnn", "flash")` to prefer
SDPA kernels). A live stream never needs a second code path: the live helpers call the same
methods as the offline ones. Settings (model names, layer fractions, `cache_n_layers`) come from the checkpoint's
`config.yaml` (`config.from_yaml` / `config.from_experiment`), the reference values otherwise.
Bins are 2 Hz: bin b covers `[b/2, (b+1)/2)` s and ends at `(b+1)/2`. Imports here are light
(numpy only); the torch/transformers modules load when used.

Video — `video.VideoExtractor`
    `extract(bin_ends, frames (N,H,W,3) uint8, frame_times (N,), t_min=0.0) -> (n_bins, L, D)`:
    for each bin ending at t, 64 frames at `t - 4*(63-j)/64` (the frame shown at that instant:
    latest stamped at or before it; the first frame before that), one batched forward.
    Frame choice is the pure `timing.clip_sample_times` + `timing.select_frames`.
    `extract_clips(clips (B,64,H,W,3)) -> (B, L, D)`; `extract_file(path) -> (L, D, T)`.
    Live: `video.LiveVideo(extractor)`: `feed(frames, times)` preprocesses each frame once on
    arrival, `extract(bin_ends) -> (n_bins, L, D)` (batch the bins of a second together).
Audio — `audio.AudioExtractor`
    `extract(samples float32 16 kHz mono, t0, bins) -> (n_bins, L, D)`: one pass over the span
    `[t0, t0 + len/16000)`, each bin the frame at its start (`timing.frames_for_bins`).
    `live(context_seconds=30.0) -> LiveAudio`: `feed(samples, t_start)`, `extract(bins)` over the
    trailing context ending at the newest bin (GPU + `compile=True`: each pass padded to the
    context, one CUDA graph). `extract_samples(audio) / extract_file(path) -> (L, D, T)`
    (official 30–60 s chunks). The encoder is `audio_encoder.AudioTrunk` (relative-key models).
Speech recognition — `asr`
    `WhisperASR(model_path=None).transcribe(audio16k, offset=0.0) -> list[Word]` (offline);
    `LiveASR(asr).feed(samples, t_end) -> list[Word]` returns newly stable words once
    (stable-prefix policy), `flush()` at the end. `resolve_whisper_model()` finds or joins the
    PyPI Whisper base; `asr_available()` says why not.
Text — `text.TextExtractor`
    `extract(words, n_bins) -> (L, D, T)`; `word_vectors(words) -> (n, L, D)`;
    `live(overflow="exact") -> LiveText` with `add(word) -> (L, D)` (KV cache; equal to the full
    forward), `prime(words)` to start from a known transcript, `reset()`; past 1024 words
    `overflow="exact"` re-runs the context per word, `"rebase"` halves it once.
    `timing.place_words(vectors, onsets, durations, n_bins) -> (L, D, T)` and
    `timing.word_bin_span(onset, duration)`: `round(2*onset)` for `max(1, round(2*duration))` bins.
Layer groups — `layers.group_layers(n_hidden_states, fractions=(0.5, 0.75, 1.0), cache_n_layers=20,
    aggregation="group_mean") -> list[list[int]]`.
Whole file — `offline.extract_media(path, {modality: extractor}, asr=, words=) -> FileFeatures`
    (absent modality = absent key); `suite.load_extractors(config, device=, modalities=)`; CLI
    `tribe-stream extract FILE --out features.npz`.
Demo — `demo.build_demo_extractors(folder) -> DemoPaths` (tiny random-weight models, `(L, D) =
    demo.DEMO_SHAPE = (2, 64)` each) and `demo.load_demo_extractors(folder)`.
"""

from tribe_stream.extractors.config import (
    ExtractorConfig,
    ModalitySettings,
    from_experiment,
    from_yaml,
)
from tribe_stream.extractors.layers import group_layers, thin_indices
from tribe_stream.extractors.timing import (
    bin_end_times,
    chunk_bounds,
    clip_sample_times,
    frames_for_bins,
    n_bins_for,
    nearest_frame_indices,
    place_words,
    select_frames,
    word_bin_span,
)

__all__ = [
    "ExtractorConfig",
    "ModalitySettings",
    "from_experiment",
    "from_yaml",
    "group_layers",
    "thin_indices",
    "bin_end_times",
    "chunk_bounds",
    "clip_sample_times",
    "frames_for_bins",
    "n_bins_for",
    "nearest_frame_indices",
    "place_words",
    "select_frames",
    "word_bin_span",
]
