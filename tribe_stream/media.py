"""Media files and sound: the one module that probes files, decodes their pictures and sounds,
and turns any audio into what the models hear (PyAV / FFmpeg).

Live replay, the camera, the microphone and offline extraction all decode through here, so one
file gives the same frames and the same samples whichever path reads it.

- Pictures: `frame_to_rgb` (RGB uint8, shortest edge optionally downscaled with an area filter);
  a corrupt, empty or non-finite frame raises `BadFrame`, which callers count and skip.
- Sound: mono float32 at `AUDIO_RATE` (16 kHz). Mono is the plain mean of the channels (not
  FFmpeg's -3 dB pan law), so a tone on both channels keeps its level; then PyAV's resampler
  (libswresample). Non-finite samples (NaN/inf in a float file) become 0 and are counted.
- `AudioTimeline` stamps decoded sound on the media clock: samples are counted from the first
  frame's time, a jump of more than `GAP_TOLERANCE_S` starts a new stamped segment, and samples
  past the file's duration (encoder padding) are dropped. `read_audio` lays its segments out as
  one array (silence in the gaps); file replay cuts the same segments into chunks.
- Bad packets are skipped and counted (`DecodeCounters`), never fatal: a truncated or corrupt
  file gives what can be read.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from tribe_stream import AUDIO_RATE
from tribe_stream.errors import SourceError

log = logging.getLogger("tribe_stream.media")

GAP_TOLERANCE_S = 0.02
"""An audio frame this far from where the previous ones end starts a new stamped segment."""

FFMPEG_HINT = (
    "give a media file FFmpeg can read (mp4, mkv, mov, webm, avi, wav, mp3, flac, ogg, ...)"
)


class NothingDecoded(SourceError):
    """A stream of a file that gave nothing decodable (every packet failed)."""


# ----- files ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds. `duration` is the longest stream's (seconds), None if unknown."""

    path: Path
    has_video: bool
    has_audio: bool
    duration: float | None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    audio_rate: int | None = None
    audio_channels: int | None = None


def open_media(path: str | os.PathLike) -> av.container.InputContainer:
    """Open a media file for decoding; `SourceError` (one line, with the fix) if it cannot be."""
    p = Path(path).expanduser()
    if not p.exists():
        raise SourceError(f"cannot read {str(p)!r}: no such file")
    if not p.is_file():
        raise SourceError(f"cannot read {str(p)!r}: it is not a file; {FFMPEG_HINT}")
    try:
        return av.open(str(p))
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read {str(p)!r}: {exc}; {FFMPEG_HINT}") from None


def start_time(container: av.container.InputContainer) -> float:
    """Media time (s) of the container's start: stamps are counted from here."""
    return container.start_time / av.time_base if container.start_time is not None else 0.0


def probe(path: str | os.PathLike) -> MediaInfo:
    """Which streams a file has and how long it lasts (from its headers; nothing is decoded)."""
    with open_media(path) as c:
        video = c.streams.video[0] if c.streams.video else None
        audio = c.streams.audio[0] if c.streams.audio else None
        durations = [
            float(s.duration * s.time_base)
            for s in (video, audio)
            if s is not None and s.duration is not None and s.time_base is not None
        ]
        duration = c.duration / av.time_base if c.duration else max(durations, default=None)
        return MediaInfo(
            path=Path(path),
            has_video=video is not None,
            has_audio=audio is not None,
            duration=duration if duration and duration > 0 else None,
            fps=float(video.average_rate) if video is not None and video.average_rate else None,
            width=video.codec_context.width if video is not None else None,
            height=video.codec_context.height if video is not None else None,
            audio_rate=audio.codec_context.sample_rate if audio is not None else None,
            audio_channels=audio.codec_context.channels if audio is not None else None,
        )


@dataclass
class DecodeCounters:
    """What decoding skipped: packets that failed, frames refused, samples made silent."""

    bad_packets: int = 0
    bad_frames: int = 0
    nonfinite_samples: int = 0
    audio_gaps: int = 0
    read_errors: int = 0
    messages: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        if len(self.messages) < 5:
            log.warning(message)
        self.messages.append(message)
        del self.messages[:-20]

    @property
    def total(self) -> int:
        return self.bad_packets + self.bad_frames + self.read_errors

    def merge(self, other: DecodeCounters) -> None:
        """Add another decoder's counts and messages (a stream decoded in another thread)."""
        for name in ("bad_packets", "bad_frames", "nonfinite_samples", "audio_gaps", "read_errors"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.messages = (self.messages + other.messages)[-20:]


def decoded_frames(
    container: av.container.InputContainer, stream: av.stream.Stream, counters: DecodeCounters
) -> Iterator[av.frame.Frame]:
    """Every frame of `stream` that decodes; a packet that fails is skipped and counted, and a
    read error ends the stream early (what was read so far stands)."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except (av.FFmpegError, OSError) as exc:
            counters.read_errors += 1
            counters.note(f"{container.name}: reading stopped early: {exc}")
            return
        try:
            frames = packet.decode()
        except (av.FFmpegError, ValueError) as exc:
            counters.bad_packets += 1
            counters.note(f"{container.name}: skipped a {stream.type} packet that failed: {exc}")
            continue
        yield from frames


# ----- pictures ------------------------------------------------------------------------------


class BadFrame(Exception):
    """A decoded frame that must be skipped; `reason` is "corrupt", "nan" or "empty"."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} frame{': ' + detail if detail else ''}")
        self.reason = reason


def target_size(width: int, height: int, max_size: int | None) -> tuple[int, int]:
    """(width, height) with the shortest edge at most `max_size`, keeping the aspect ratio."""
    short = min(width, height)
    if max_size is None or short <= max_size:
        return width, height
    scale = max_size / short
    if width <= height:
        return max_size, max(1, round(height * scale))
    return max(1, round(width * scale)), max_size


def is_float_format(name: str) -> bool:
    """True for float pixel formats (e.g. gbrpf32le, grayf32le, rgbaf16le)."""
    return "f32" in name or "f16" in name


def frame_to_rgb(frame: av.VideoFrame, max_size: int | None = None) -> np.ndarray:
    """RGB uint8 `(H, W, 3)` of `frame`, shortest edge downscaled to `max_size` (area filter).

    Raises `BadFrame` for corrupt, empty or non-finite frames.
    """
    if frame.width <= 0 or frame.height <= 0:
        raise BadFrame("empty", f"{frame.width}x{frame.height}")
    if frame.is_corrupt:
        raise BadFrame("corrupt", "FFmpeg flagged the frame as corrupt")
    width, height = target_size(frame.width, frame.height, max_size)
    if is_float_format(frame.format.name):
        rgb = _float_frame_to_rgb(frame)
        if (width, height) == (frame.width, frame.height):
            return rgb
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    if (width, height) == (frame.width, frame.height):
        return frame.to_ndarray(format="rgb24")
    return frame.reformat(
        width=width, height=height, format="rgb24", interpolation="AREA"
    ).to_ndarray()


def _float_frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    try:
        values = frame.to_ndarray()
    except (ValueError, av.FFmpegError):
        values = frame.reformat(format="gbrpf32le").to_ndarray()
    values = np.asarray(values, dtype=np.float32)
    if not np.isfinite(values).all():
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise BadFrame("nan", f"{bad} of {values.size} values are NaN or inf")
    if values.ndim == 2:
        values = np.repeat(values[:, :, None], 3, axis=2)
    values = values[:, :, :3]
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def iter_video_frames(
    path: str | os.PathLike,
    max_size: int | None = None,
    counters: DecodeCounters | None = None,
) -> Iterator[tuple[float, np.ndarray]]:
    """`(media time, RGB uint8 (H, W, 3))` for each good frame of the first video stream, in
    order (out-of-order stamps and bad frames are skipped and counted)."""
    counters = counters if counters is not None else DecodeCounters()
    with open_media(path) as c:
        if not c.streams.video:
            raise SourceError(f"{path} has no video stream")
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        t0 = start_time(c)
        last = -math.inf
        for frame in decoded_frames(c, stream, counters):
            if frame.time is None:
                continue
            t = float(frame.time) - t0
            if t <= last:  # out-of-order stamps would break nearest-earlier selection
                continue
            try:
                rgb = frame_to_rgb(frame, max_size)
            except BadFrame as exc:
                counters.bad_frames += 1
                counters.note(f"{path}: skipped a {exc.reason} frame at {t:.3f} s")
                continue
            last = t
            yield t, rgb


def read_ahead(items: Iterable, depth: int = 8) -> Iterator:
    """`items`, produced by a background thread up to `depth` ahead of the consumer.

    Decoding releases the interpreter lock, so a file's next frames are decoded while the caller
    works on (or waits for the GPU with) the previous ones. An exception in the producer is
    raised in the consumer at the point it happened; closing the iterator stops the producer.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        it = iter(items)
        try:
            for item in it:
                if not put((None, item)):
                    break
        except BaseException as exc:  # handed to the consumer, raised there
            put((exc, None))
            return
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
        put((None, done))

    worker = threading.Thread(target=produce, name="tribe-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            exc, item = q.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        worker.join(timeout=10)


# ----- sound ---------------------------------------------------------------------------------


def _finite(samples: np.ndarray, counters: DecodeCounters | None) -> np.ndarray:
    """`samples` with NaN/inf made silent (counted): one bad sample must not poison a window."""
    if np.isfinite(samples).all():
        return samples
    bad = ~np.isfinite(samples)
    if counters is not None:
        counters.nonfinite_samples += int(bad.sum())
        counters.note(f"{int(bad.sum())} audio samples were NaN or inf; made silent")
    samples = samples.copy()
    samples[bad] = 0.0
    return samples


def to_mono(frame: av.AudioFrame) -> np.ndarray:
    """The plain mean of a decoded frame's channels, float (any sample format and layout)."""
    values = frame.to_ndarray()
    if not frame.format.is_planar:  # packed: (1, n * channels), interleaved
        values = values.reshape(-1, frame.layout.nb_channels).T
    return values.mean(axis=0)


def _frames_to_mono(frames: list[av.AudioFrame]) -> np.ndarray:
    parts = [to_mono(f) for f in frames]
    if not parts:
        return np.zeros(0, np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)


class FrameResampler:
    """Decoded `av.AudioFrame`s (any format, layout and rate) to mono float32 at `out_rate`.

    The output is time-aligned with the input (the resampler holds back a few samples until
    `flush()`), so output sample m is at input time m / out_rate: callers stamp by counting.
    """

    def __init__(self, out_rate: int = AUDIO_RATE, counters: DecodeCounters | None = None) -> None:
        self.out_rate = out_rate
        self.counters = counters
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
        mono = _frames_to_mono(self._resampler.resample(frame))
        return _finite(np.concatenate([out, mono]), self.counters)

    def flush(self) -> np.ndarray:
        """The samples still held back; the resampler starts fresh afterwards."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        out = _frames_to_mono(self._resampler.resample(None))
        self._resampler, self._key = None, None
        return _finite(out, self.counters)


class ArrayResampler:
    """Blocks of `(n, channels)` float32 samples at `in_rate` to mono float32 at `out_rate`
    (what a microphone delivers), through the same mono mix and resampler as files."""

    def __init__(
        self, in_rate: int, out_rate: int = AUDIO_RATE, counters: DecodeCounters | None = None
    ) -> None:
        self.in_rate, self.out_rate = int(in_rate), out_rate
        self.counters = counters
        self._resampler: av.AudioResampler | None = None

    def push(self, block: np.ndarray) -> np.ndarray:
        mono = np.ascontiguousarray(
            block.mean(axis=1) if block.ndim == 2 else block, dtype=np.float32
        )
        mono = _finite(mono, self.counters)
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


class AudioTimeline:
    """Decoded audio frames → mono 16 kHz pieces stamped with media time.

    `push(frame)` and `finish()` return `(t, samples)` pieces: `t` is the media time of the first
    sample, seconds from the container's start. Pieces of one segment are contiguous; a frame
    more than `GAP_TOLERANCE_S` away from where the segment ends, or at another rate, starts a
    new segment (counted in `audio_gaps`). Samples after `limit` (the file's duration) are
    encoder padding and are dropped.
    """

    def __init__(
        self,
        origin: float = 0.0,
        limit: float | None = None,
        counters: DecodeCounters | None = None,
    ) -> None:
        self.origin = origin
        self.limit = math.inf if limit is None else limit
        self.counters = counters if counters is not None else DecodeCounters()
        self._resampler = FrameResampler(counters=self.counters)
        self._seg_start: float | None = None  # media time of the segment's first sample
        self._seg_in = 0  # input samples in the segment
        self._seg_rate = 0
        self._seg_out = 0  # output samples of the segment handed out
        self.horizon = -math.inf
        """Media time up to which the decoded input reaches."""

    def push(self, frame: av.AudioFrame) -> list[tuple[float, np.ndarray]]:
        out: list[tuple[float, np.ndarray]] = []
        media = None if frame.time is None else frame.time - self.origin
        if self._seg_start is None:
            self._seg_start = media if media is not None else 0.0
            self._seg_rate = frame.rate
        else:
            expected = self._seg_start + self._seg_in / self._seg_rate
            if media is not None and (
                abs(media - expected) > GAP_TOLERANCE_S or frame.rate != self._seg_rate
            ):
                self.counters.audio_gaps += 1
                self.counters.note(f"audio jumps from {expected:.3f} s to {media:.3f} s")
                out += self.finish()
                self._seg_start, self._seg_rate = media, frame.rate
        self._seg_in += frame.samples
        self.horizon = self._seg_start + self._seg_in / self._seg_rate
        out += self._piece(self._resampler.push(frame))
        return out

    def finish(self) -> list[tuple[float, np.ndarray]]:
        """End of the segment (or of the file): the samples the resampler still held."""
        if self._seg_start is None:
            return []
        out = self._piece(self._resampler.flush())
        self._seg_start, self._seg_in, self._seg_out = None, 0, 0
        return out

    def _piece(self, samples: np.ndarray) -> list[tuple[float, np.ndarray]]:
        if not len(samples):
            return []
        assert self._seg_start is not None
        t = self._seg_start + self._seg_out / AUDIO_RATE
        self._seg_out += len(samples)
        if t + len(samples) / AUDIO_RATE > self.limit:
            samples = samples[: max(0, round((self.limit - t) * AUDIO_RATE))]
        return [(t, samples)] if len(samples) else []


def duration_limit(container: av.container.InputContainer) -> float | None:
    """The file's duration from its header (sound past it is encoder padding), or None."""
    return container.duration / av.time_base if container.duration else None


def read_audio(path: str | os.PathLike, counters: DecodeCounters | None = None) -> np.ndarray:
    """The first audio stream as mono float32 at 16 kHz, sample i at media time i / 16000 (a
    late start and any gaps are silence), exactly the samples file replay streams."""
    counters = counters if counters is not None else DecodeCounters()
    with open_media(path) as c:
        if not c.streams.audio:
            raise SourceError(f"{path} has no audio stream")
        timeline = AudioTimeline(start_time(c), duration_limit(c), counters)
        pieces: list[tuple[float, np.ndarray]] = []
        for frame in decoded_frames(c, c.streams.audio[0], counters):
            pieces += timeline.push(frame)
        pieces += timeline.finish()
    return lay_out(pieces)


def lay_out(pieces: list[tuple[float, np.ndarray]]) -> np.ndarray:
    """Stamped pieces as one array from time 0: silence in gaps, overlaps keep the earlier
    samples (as a live stream does)."""
    parts: list[np.ndarray] = []
    n = 0
    for t, samples in pieces:
        at = round(t * AUDIO_RATE)
        if at > n:
            parts.append(np.zeros(at - n, np.float32))
            n = at
        elif at < n:
            samples = samples[n - at :]
        parts.append(samples)
        n += len(samples)
    return (
        np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)
    )


def media_duration(path: str | os.PathLike, info: MediaInfo | None = None) -> float:
    """The file's duration: from its header, else by decoding its sound (0.0 if none)."""
    info = info or probe(path)
    if info.duration is not None:
        return info.duration
    if info.has_audio:
        return len(read_audio(path)) / AUDIO_RATE
    return 0.0
