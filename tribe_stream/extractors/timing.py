"""Pure time arithmetic shared by the extractors: bins, clip frame times, nearest frames, word bins.

Bins are 2 Hz: bin b covers `[b/2, (b+1)/2)` on the stream clock and ends at `(b+1)/2`.
Every function here is numpy-only, so the live scheduler can use it without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tribe_stream import BIN_SECONDS, MAX_TOKENS
from tribe_stream.errors import InputError
from tribe_stream.media import reader_duration  # noqa: F401  (the official reader's length)

FRAME_EPS = 1e-5
"""Seconds of slack when matching a sample time to a frame stamp (float stamps from containers)."""

READER_EPS_FRAMES = 1e-5
"""Frame periods of slack the official video reader (moviepy) adds to `fps * t` before taking
the frame number: offline, a sample time `t` shows the frame stamped at or before
`t + READER_EPS_FRAMES / fps`."""


def n_bins_for(duration: float) -> int:
    """Number of 2 Hz bins the official pipeline gives a stretch of `duration` seconds."""
    return max(0, int(round(duration / BIN_SECONDS)))


def bin_end_times(bins: Sequence[int] | np.ndarray) -> np.ndarray:
    """End time of each bin (the instant its video clip ends)."""
    return (np.asarray(bins, dtype=np.float64) + 1.0) * BIN_SECONDS


def clip_sample_times(
    bin_ends: Sequence[float] | np.ndarray,
    n_frames: int = 64,
    clip_seconds: float = 4.0,
    t_min: float | Sequence[float] | np.ndarray = 0.0,
) -> np.ndarray:
    """`(n_bins, n_frames)` sample instants of each bin's clip, oldest first: as the official
    extractor, frame j of the clip ending at t at `t - clip * (n-1-j) / n`, clamped below at
    `t_min` (the start of the stream, or of the offline chunk)."""
    t = np.asarray(bin_ends, dtype=np.float64).reshape(-1, 1)
    back = clip_seconds * np.arange(n_frames - 1, -1, -1, dtype=np.float64) / n_frames
    lo = np.asarray(t_min, dtype=np.float64).reshape(-1, 1)
    return np.maximum(t - back[None, :], lo)


def select_frames(
    sample_times: np.ndarray, frame_times: Sequence[float] | np.ndarray, eps: float = FRAME_EPS
) -> np.ndarray:
    """Index of the frame shown at each sample time: the latest frame stamped at or before it
    (`eps` seconds of slack), the first frame for earlier times; `frame_times` non-decreasing."""
    ft = np.asarray(frame_times, dtype=np.float64)
    if ft.ndim != 1 or ft.size == 0:
        raise InputError("select_frames needs at least one frame time (a 1-D array)")
    if np.any(np.diff(ft) < 0):
        raise InputError("frame times must be in increasing order")
    idx = np.searchsorted(ft, np.asarray(sample_times, dtype=np.float64) + eps, side="right") - 1
    return np.clip(idx, 0, ft.size - 1)


def nearest_frame_indices(n_frames: int, n_out: int) -> np.ndarray:
    """Frame picked for each of `n_out` outputs by `F.interpolate(mode="nearest")` (float32 scale)."""
    if n_frames < 1 or n_out < 0:
        raise InputError(
            f"nearest sampling needs >= 1 frame, got {n_frames} frames for {n_out} bins"
        )
    if n_out == n_frames:
        return np.arange(n_out)
    scale = np.float32(n_frames) / np.float32(n_out)
    idx = np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, n_frames - 1)


def frames_for_bins(
    bins: Sequence[int] | np.ndarray, t0: float, t1: float, n_frames: int
) -> np.ndarray:
    """Frame (of `n_frames` evenly covering `[t0, t1)`) at each bin's start, as
    `F.interpolate(nearest)` picks it over a chunk on the bin grid; bins outside raise."""
    b = np.asarray(bins, dtype=np.int64)
    starts = b * BIN_SECONDS
    if b.size and (starts.min() < t0 - 1e-6 or starts.max() >= t1 - 1e-6):
        raise InputError(
            f"bins {b.min()}..{b.max()} are not inside the audio span [{t0:.3f}, {t1:.3f}) s"
        )
    span_bins = (t1 - t0) / BIN_SECONDS
    local = (starts - t0) / BIN_SECONDS
    whole = abs(span_bins - round(span_bins)) < 1e-6 and np.allclose(
        local, np.round(local), atol=1e-6
    )
    if whole:
        table = nearest_frame_indices(n_frames, int(round(span_bins)))
        return table[np.round(local).astype(np.int64)]
    idx = np.floor(local * n_frames / span_bins + 1e-9).astype(np.int64)
    return np.clip(idx, 0, n_frames - 1)


def chunk_bounds(
    duration: float, max_seconds: float = 60.0, min_seconds: float = 30.0
) -> list[tuple[float, float]]:
    """Offline chunks of a long recording, as the official `ChunkEvents` makes them: cuts tried
    every `max_seconds`, kept where both pieces between candidate cuts last `min_seconds`."""
    if duration <= 0:
        return []
    cuts = [float(c) for c in np.arange(max_seconds, duration, max_seconds) if 0 < c < duration]
    before = np.round(np.diff(cuts, prepend=0.0), 6)
    after = np.round(np.diff(cuts, append=duration), 6)
    kept = [
        c
        for c, b, a in zip(cuts, before, after, strict=True)
        if b >= min_seconds and a >= min_seconds
    ]
    edges = [0.0, *kept, float(duration)]
    return list(zip(edges[:-1], edges[1:], strict=True))


@dataclass(frozen=True)
class ClipPlan:
    """Where each offline video bin's clip ends: `bins[i]` a bin of the recording, `ends[i]` the
    time (s) its clip ends, `starts[i]` the start of its chunk (clips clamp there)."""

    bins: np.ndarray
    ends: np.ndarray
    starts: np.ndarray


def offline_clip_plan(
    duration: float, max_seconds: float = 60.0, min_seconds: float = 30.0
) -> ClipPlan:
    """The official offline clip timing of a video lasting `duration` (`reader_duration`): cut
    by `chunk_bounds`, a chunk `[c0, c1)` gets `n = round(2·(c1-c0))` bins, from `round(2·c0)`,
    whose clips end at `c0 + linspace(0, c1-c0, n+1)[1:]` (off the grid for odd lengths)."""
    bins, ends, starts = [], [], []
    for c0, c1 in chunk_bounds(duration, max_seconds, min_seconds):
        length = (c0 + (c1 - c0)) - c0  # the reader's sub-clip: (offset + duration) - offset
        n = n_bins_for(c1 - c0)
        first = int(round(c0 / BIN_SECONDS))
        bins.append(np.arange(first, first + n))
        ends.append(c0 + np.linspace(0.0, length, n + 1)[1:])
        starts.append(np.full(n, c0))
    if not bins:
        return ClipPlan(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    return ClipPlan(np.concatenate(bins), np.concatenate(ends), np.concatenate(starts))


def reader_picks(
    sample_times: np.ndarray, frame_times: Sequence[float] | np.ndarray, fps: float
) -> np.ndarray:
    """Frames the official reader (moviepy) returns for clips' sample times `(n_bins, n)`, read
    in order: the frame stamped at or before each (`READER_EPS_FRAMES` of slack); a sample past
    the last frame's end repeats the frame last read (the first frame if none)."""
    t = np.asarray(sample_times, dtype=np.float64)
    ft = np.asarray(frame_times, dtype=np.float64)
    eps = READER_EPS_FRAMES / fps
    idx = select_frames(t, ft, eps).reshape(-1)
    past = (t + eps >= ft[-1] + 1.0 / fps).reshape(-1)
    if past.any():
        last_read = np.maximum.accumulate(np.where(past, -1, np.arange(idx.size)))
        idx = np.where(past, np.where(last_read >= 0, idx[np.maximum(last_read, 0)], 0), idx)
    return idx.reshape(t.shape)


def word_bin_span(
    onset: float, duration: float, start: float = 0.0, n_bins: int | None = None
) -> tuple[int, int] | None:
    """`(first_bin, n_bins)` a word adds its vector to, or None when it falls outside.

    `round(2*onset)` for `max(1, round(2*duration))` bins (round half to even, as Python), relative
    to `start`; with `n_bins` the word is clipped to the window and, like the official overlap
    rule, a word hanging over the right edge is moved left so it still lands in the window.
    """
    freq = 1.0 / BIN_SECONDS
    if n_bins is None:
        first = int(round((onset - start) * freq))
        return (first, max(1, int(round(duration * freq)))) if first >= 0 else None
    stop_window = start + n_bins * BIN_SECONDS
    lo, hi = max(start, onset), min(stop_window, onset + duration)
    if hi < lo or (hi == lo and duration and n_bins):
        return None
    first = int(round((lo - start) * freq))
    count = max(1, int(round((hi - lo) * freq)))
    first = min(first, n_bins - count)
    if first < 0:
        return None
    return first, count


def window_word_bins(
    onset: float, duration: float, n_bins: int, start: float = 0.0, window: int = MAX_TOKENS
) -> list[int]:
    """Bins `[0, n_bins)` (from `start`) a word adds its vector to when each `window`-bin window
    is placed on its own, as the official predict's 100 s segments are: each window takes the
    words strictly overlapping it and places them by `word_bin_span` in a full window. A word
    across an edge is in both windows; one past the recording's last bin is dropped."""
    span = window * BIN_SECONDS
    out: list[int] = []
    first_w = max(0, int(np.floor((onset - start) / span)) - 1)
    for w in range(first_w, (n_bins + window - 1) // window):
        w0 = start + w * span
        if onset >= w0 + span:
            continue
        if onset + duration <= w0:
            break
        placed = word_bin_span(onset, duration, w0, window)
        if placed is not None:
            b0, count = placed
            out.extend(b for b in range(w * window + b0, w * window + b0 + count) if b < n_bins)
    return out


def place_words(
    vectors: np.ndarray,
    onsets: Sequence[float],
    durations: Sequence[float],
    n_bins: int,
    start: float = 0.0,
    window: int | None = MAX_TOKENS,
) -> np.ndarray:
    """Sum word vectors `(n_words, L, D)` into 2 Hz bins: returns `(L, D, n_bins)` float32.

    `window`: the bins of each 200-bin window of the official predict, placed window by window
    (`window_word_bins`), so these features are for windows cut every `window` bins from `start`
    (as `offline.predict_windows` cuts them); `None`: all `n_bins` as one window.
    """
    vec = np.asarray(vectors, dtype=np.float32)
    if vec.ndim != 3 or len(vec) != len(onsets) or len(onsets) != len(durations):
        raise InputError(
            f"place_words needs vectors (n_words, L, D) and one onset and duration per word; "
            f"got {vec.shape}, {len(onsets)} onsets, {len(durations)} durations"
        )
    out = np.zeros((vec.shape[1], vec.shape[2], n_bins), dtype=np.float32)
    for v, onset, dur in zip(vec, onsets, durations, strict=True):
        if window is not None:
            for b in window_word_bins(float(onset), float(dur), n_bins, start, window):
                out[:, :, b] += v
            continue
        span = word_bin_span(float(onset), float(dur), start, n_bins)
        if span is not None:
            first, count = span
            out[:, :, first : first + count] += v[:, :, None]
    return out
