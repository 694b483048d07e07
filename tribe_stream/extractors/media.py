"""Read a media file's audio (16 kHz mono float32) and video frames (RGB uint8) with PyAV."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tribe_stream.errors import InputError

AUDIO_RATE = 16000


@dataclass(frozen=True)
class MediaInfo:
    """What a file holds: duration (the longest stream, seconds) and which streams."""

    path: Path
    duration: float
    has_video: bool
    has_audio: bool
    fps: float | None = None


def _open(path: str | os.PathLike):
    import av

    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"{p} does not exist or is not a file")
    try:
        return av.open(str(p))
    except av.error.FFmpegError as exc:
        raise InputError(f"{p} cannot be opened as audio or video: {exc}") from None


def _start(container) -> float:
    return container.start_time / 1e6 if container.start_time is not None else 0.0


def probe(path: str | os.PathLike) -> MediaInfo:
    """Streams and duration of a media file (decoding the audio when the header has no duration)."""
    with _open(path) as c:
        durations = []
        if c.duration is not None:
            durations.append(c.duration / 1e6)
        for s in list(c.streams.video[:1]) + list(c.streams.audio[:1]):
            if s.duration is not None and s.time_base is not None:
                durations.append(float(s.duration * s.time_base))
        fps = (
            float(c.streams.video[0].average_rate)
            if c.streams.video and c.streams.video[0].average_rate
            else None
        )
        info = MediaInfo(
            Path(path),
            max(durations, default=0.0),
            bool(c.streams.video),
            bool(c.streams.audio),
            fps,
        )
    if info.duration <= 0 and info.has_audio:
        audio = read_audio(path)
        info = MediaInfo(info.path, len(audio) / AUDIO_RATE, info.has_video, True, fps)
    return info


def read_audio(path: str | os.PathLike, rate: int = AUDIO_RATE) -> np.ndarray:
    """The first audio stream as mono float32 at `rate` Hz (channels averaged by the resampler)."""
    import av

    with _open(path) as c:
        if not c.streams.audio:
            raise InputError(f"{path} has no audio stream")
        stream = c.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        parts: list[np.ndarray] = []
        lead = None
        for frame in c.decode(stream):
            if lead is None and frame.time is not None:
                lead = max(0.0, frame.time - _start(c))
            for out in resampler.resample(frame):
                parts.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            parts.append(out.to_ndarray().reshape(-1))
    audio = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    if lead:  # the audio starts late in the container: keep it on the container's clock
        audio = np.concatenate([np.zeros(int(round(lead * rate)), np.float32), audio])
    return audio


def iter_video_frames(path: str | os.PathLike) -> Iterator[tuple[float, np.ndarray]]:
    """`(time, RGB uint8 (H, W, 3))` for each frame of the first video stream, in order."""
    with _open(path) as c:
        if not c.streams.video:
            raise InputError(f"{path} has no video stream")
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        t0 = _start(c)
        last = -np.inf
        for frame in c.decode(stream):
            if frame.time is None:
                continue
            t = float(frame.time) - t0
            if t < last:  # out-of-order stamps would break nearest-earlier selection
                continue
            last = t
            yield t, frame.to_ndarray(format="rgb24")
