"""Audio to float32 mono at 16 kHz: channel mean, then PyAV's resampler (libswresample).

Mono mix is the plain mean of the channels (not FFmpeg's -3 dB pan law), so a tone on both
channels keeps its level. The resampler's output is time-aligned with its input (it holds back a
few samples until `flush()`), so output sample m is at input time m / 16000: callers stamp output
by counting samples.
"""

from __future__ import annotations

import av
import numpy as np

from tribe_stream.types import Chunk

TARGET_RATE = 16000
"""Sample rate of every audio chunk (what the audio extractor expects)."""


def _to_mono(frame: av.AudioFrame) -> np.ndarray:
    values = frame.to_ndarray()
    if not frame.format.is_planar:  # packed: (1, n * channels), interleaved
        values = values.reshape(-1, frame.layout.nb_channels).T
    return values.mean(axis=0)


def _frames_to_mono(frames: list[av.AudioFrame]) -> np.ndarray:
    parts = [_to_mono(f) for f in frames]
    if not parts:
        return np.zeros(0, np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


class FrameResampler:
    """Decoded `av.AudioFrame`s (any format, layout and rate) to mono 16 kHz float32."""

    def __init__(self, out_rate: int = TARGET_RATE) -> None:
        self.out_rate = out_rate
        self._resampler: av.AudioResampler | None = None
        self._key: tuple[str, int] | None = None

    def push(self, frame: av.AudioFrame) -> np.ndarray:
        """Mono samples for `frame` (fewer at first: the resampler holds back its filter delay)."""
        key = (frame.layout.name, frame.rate)
        out = np.zeros(0, np.float32)
        if key != self._key:
            out = self.flush()
            self._resampler = av.AudioResampler(
                format="fltp", layout=frame.layout.name, rate=self.out_rate
            )
            self._key = key
        frame.pts = None  # we stamp by counting samples; pts gaps must not make swr pad
        assert self._resampler is not None
        return np.concatenate([out, _frames_to_mono(self._resampler.resample(frame))])

    def flush(self) -> np.ndarray:
        """The samples still held back; the resampler starts fresh afterwards."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        out = _frames_to_mono(self._resampler.resample(None))
        self._resampler, self._key = None, None
        return out


class ArrayResampler:
    """Blocks of `(n, channels)` float32 samples at `in_rate` to mono 16 kHz float32."""

    def __init__(self, in_rate: int, out_rate: int = TARGET_RATE) -> None:
        self.in_rate, self.out_rate = int(in_rate), out_rate
        self._resampler: av.AudioResampler | None = None

    def push(self, block: np.ndarray) -> np.ndarray:
        mono = np.ascontiguousarray(
            block.mean(axis=1) if block.ndim == 2 else block, dtype=np.float32
        )
        if self.in_rate == self.out_rate or len(mono) == 0:
            return mono
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.out_rate)
        frame = av.AudioFrame.from_ndarray(mono[None, :], format="flt", layout="mono")
        frame.rate = self.in_rate
        return _frames_to_mono(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        if self._resampler is None:
            return np.zeros(0, np.float32)
        out = _frames_to_mono(self._resampler.resample(None))
        self._resampler = None
        return out


def audio_chunk(samples: np.ndarray, start: float, capture_time: float) -> Chunk:
    """The chunk of 16 kHz mono `samples` whose first sample is at stream time `start`."""
    return Chunk(
        kind="audio",
        data=np.ascontiguousarray(samples, dtype=np.float32),
        start=start,
        end=start + len(samples) / TARGET_RATE,
        capture_time=capture_time,
        times=np.array([start]),
        rate=float(TARGET_RATE),
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
