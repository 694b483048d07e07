"""Chunks as sources hand them on: one video frame, or a run of 16 kHz mono samples."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from tribe_stream import AUDIO_RATE
from tribe_stream.types import Chunk


def video_chunk(
    rgb: np.ndarray, stamp: float, frame_s: float, rate: float | None, capture_time: float
) -> Chunk:
    """The chunk of one RGB frame shown from stream time `stamp` for `frame_s` seconds."""
    return Chunk(
        kind="video",
        data=rgb[None],
        start=stamp,
        end=stamp + frame_s,
        capture_time=capture_time,
        times=np.array([stamp]),
        rate=rate,
    )


def audio_chunk(samples: np.ndarray, start: float, capture_time: float) -> Chunk:
    """The chunk of 16 kHz mono `samples` whose first sample is at stream time `start`."""
    return Chunk(
        kind="audio",
        data=np.ascontiguousarray(samples, dtype=np.float32),
        start=start,
        end=start + len(samples) / AUDIO_RATE,
        capture_time=capture_time,
        times=np.array([start]),
        rate=float(AUDIO_RATE),
    )


class PendingSamples:
    """16 kHz samples waiting to be cut into chunks: `add` appends, `take(n)` removes the oldest
    `n`; `n` is how many are held."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []
        self.n = 0

    def add(self, samples: np.ndarray) -> None:
        if len(samples):
            self._parts.append(samples)
            self.n += len(samples)

    def take(self, n: int) -> np.ndarray:
        data = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
        out, rest = data[:n], data[n:]
        self._parts = [rest] if len(rest) else []
        self.n = len(rest)
        return out

    def pieces(self, size: int, final: bool = False) -> Iterator[np.ndarray]:
        """`take(size)` while that many are held; `final`: then the rest, a shorter piece."""
        while self.n >= size or (final and self.n):
            yield self.take(min(self.n, size))
