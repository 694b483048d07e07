"""Media files and sound: the one module that probes files, decodes their pictures and sounds,
and turns any audio into what the models hear (PyAV / FFmpeg). Live replay, the camera, the
microphone and offline extraction all decode through here: one file, the same frames and samples.

- Pictures: `frame_to_rgb` (RGB uint8, shortest edge optionally area-downscaled); a corrupt,
  empty or non-finite frame raises `BadFrame`, which callers count and skip.
- Sound: read as the official pipeline reads it (`SoundFormat`), resampled to 16 kHz with
  julius (the official resampler; `StreamResampler`: the same samples block by block), made mono
  by the mean of the channels; NaN, inf and samples beyond ±`MAX_SAMPLE` silenced and counted.
- `AudioTimeline` stamps decoded sound on the media clock (a jump past `GAP_TOLERANCE_S` starts
  a new segment; encoder padding past the duration is dropped); `read_audio` lays the segments
  out as one array, file replay cuts them into chunks.
- Bad packets are skipped and counted (`DecodeCounters`): a damaged file gives what can be read.
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
    if p.stat().st_size == 0:
        raise SourceError(f"cannot read {str(p)!r}: it is empty (0 bytes); {FFMPEG_HINT}")
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


def probe_stimulus(path: str | os.PathLike) -> MediaInfo:
    """`probe` a stimulus: a file FFmpeg cannot open, or one with neither sound nor picture, is
    one line (`InputError`), said before any model loads."""
    info = probe(path)
    if not (info.has_audio or info.has_video):
        raise SourceError(
            f"{path} holds neither audio nor video (a subtitles or data file?); give a file "
            "with sound or pictures"
        )
    return info


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


def frame_to_rgb(frame: av.VideoFrame, max_size: int | None = None) -> np.ndarray:
    """RGB uint8 `(H, W, 3)` of `frame`, shortest edge downscaled to `max_size` (area filter).

    Raises `BadFrame` for corrupt, empty or non-finite frames.
    """
    if frame.width <= 0 or frame.height <= 0:
        raise BadFrame("empty", f"{frame.width}x{frame.height}")
    if frame.is_corrupt:
        raise BadFrame("corrupt", "FFmpeg flagged the frame as corrupt")
    width, height = target_size(frame.width, frame.height, max_size)
    if "f32" in frame.format.name or "f16" in frame.format.name:  # gbrpf32le, rgbaf16le, ...
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


MAX_SAMPLE = 32768.0
"""Louder than any sound (even 16-bit integers written unscaled stay within it): a sample beyond
it is damage, silenced and counted as NaN/inf are. No clip at ±1 (the official reader has none:
the audio features z-score their window); this bound keeps sums of squares finite in float32."""


def _finite(samples: np.ndarray, counters: DecodeCounters | None) -> np.ndarray:
    """`samples` with NaN, inf and samples beyond ±`MAX_SAMPLE` made silent (counted): one bad
    packet must not poison a window. Every way sound enters (files, replay, microphone, a web
    page's capture) passes here."""
    if not len(samples) or np.abs(samples).max() <= MAX_SAMPLE:  # NaN fails the comparison
        return samples
    bad = ~(np.abs(samples) <= MAX_SAMPLE)
    if counters is not None:
        counters.nonfinite_samples += int(bad.sum())
        counters.note(f"{int(bad.sum())} audio samples were NaN, inf or beyond ±32768; made silent")
    samples = samples.copy()
    samples[bad] = 0.0
    return samples


@dataclass(frozen=True)
class SoundFormat:
    """The rate and channels a file's sound is read at before it becomes 16 kHz mono, as the
    official pipeline reads it: a video's sound as moviepy writes it out (44.1 kHz, stereo,
    16-bit), an audio file as it is (`rate`/`layout` None: the file's own, float)."""

    rate: int | None = None
    layout: str | None = None
    s16: bool = False


VIDEO_SOUND = SoundFormat(44100, "stereo", s16=True)
FILE_SOUND = SoundFormat()


def sound_format(container: av.container.InputContainer) -> SoundFormat:
    """`VIDEO_SOUND` for a file with pictures, else `FILE_SOUND`."""
    return VIDEO_SOUND if container.streams.video else FILE_SOUND


def frame_samples(frame: av.AudioFrame) -> np.ndarray:
    """A decoded frame as `(n, channels)` float32 (16-bit samples scaled by 1/32768)."""
    values = frame.to_ndarray()
    if frame.format.is_planar:
        values = values.T
    else:  # packed: (1, n * channels), interleaved
        values = values.reshape(-1, frame.layout.nb_channels)
    if values.dtype == np.int16:
        return values.astype(np.float32) / 32768.0
    return values.astype(np.float32, copy=False)


class SoundConverter:
    """Decoded frames -> `(n, channels)` float32 in a `SoundFormat` (libswresample, as FFmpeg
    converts a video's sound for moviepy); a change of rate or layout starts a fresh converter."""

    def __init__(self, fmt: SoundFormat, counters: DecodeCounters | None = None) -> None:
        self.fmt = fmt
        self.counters = counters
        self._resampler: av.AudioResampler | None = None
        self._key: tuple[str, int] | None = None
        self.rate: int | None = fmt.rate
        self.channels: int | None = None

    def push(self, frame: av.AudioFrame) -> np.ndarray:
        key = (frame.layout.name, frame.rate)
        out = []
        if key != self._key:
            if self._resampler is not None:
                out.append(self.flush())
            layout = self.fmt.layout or frame.layout.name
            self._resampler = av.AudioResampler(
                format="s16" if self.fmt.s16 else "fltp",
                layout=layout,
                rate=self.fmt.rate or frame.rate,
            )
            self._key = key
            self.rate = self.fmt.rate or frame.rate
            self.channels = av.AudioLayout(layout).nb_channels
        frame.pts = None  # stamped by counting samples; pts gaps must not make swr pad
        assert self._resampler is not None
        out += [frame_samples(f) for f in self._resampler.resample(frame)]
        return _finite(self._join(out), self.counters)

    def flush(self) -> np.ndarray:
        """The samples still held back; the converter starts fresh afterwards."""
        if self._resampler is None:
            return np.zeros((0, self.channels or 1), np.float32)
        out = [frame_samples(f) for f in self._resampler.resample(None)]
        self._resampler, self._key = None, None
        return _finite(self._join(out), self.counters)

    def _join(self, parts: list[np.ndarray]) -> np.ndarray:
        parts = [p for p in parts if len(p)]
        return np.concatenate(parts) if parts else np.zeros((0, self.channels or 1), np.float32)


class StreamResampler:
    """`(n, channels)` blocks at `in_rate` -> mono float32 at `out_rate`: julius's windowed-sinc
    resampling (the official pipeline's), then the mean of the channels.

    Pushed block by block, the output equals `resample_sound` over the whole stream (julius pads
    the ends by repeating the edge samples; between them each output block of `new` samples
    reads `old` input samples plus a filter margin either side), so it lags the input by that
    margin (a few ms) plus at most `MIN_SECONDS` until `flush()`.
    """

    ZEROS, ROLLOFF = 24, 0.945  # julius's defaults, which the official pipeline uses
    MIN_SECONDS = 0.04

    def __init__(self, in_rate: int, out_rate: int = AUDIO_RATE) -> None:
        import julius

        g = math.gcd(int(in_rate), int(out_rate))
        self.old, self.new = int(in_rate) // g, int(out_rate) // g
        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        self._julius = (
            julius.ResampleFrac(self.in_rate, self.out_rate, self.ZEROS, self.ROLLOFF)
            if self.old != self.new
            else None
        )
        # the filter's half-width in input samples (julius's, from the same parameters), and
        # the whole input blocks of history that cover it
        self.margin = math.ceil(self.ZEROS * self.old / (min(self.old, self.new) * self.ROLLOFF))
        self._history_blocks = -(-self.margin // self.old)
        # each call costs a fixed ~0.5 ms (more on a busy machine): resample at least
        # `MIN_SECONDS` of output at a time (a microphone's 10 ms blocks would call 100 times a second)
        self._min_blocks = max(1, math.ceil(self.MIN_SECONDS * self.out_rate / self.new))
        self._buf: np.ndarray | None = None  # (channels, m) input from block `_buf_block` on
        self._buf_block = 0
        self._n_in = 0  # input samples pushed
        self._done = 0  # output blocks handed out

    def push(self, block: np.ndarray) -> np.ndarray:
        x = np.asarray(block, dtype=np.float32)
        x = x.reshape(-1, 1) if x.ndim == 1 else x
        if self._julius is None:
            return x.mean(axis=1)
        self._buf = x.T.copy() if self._buf is None else np.concatenate([self._buf, x.T], axis=1)
        self._n_in += len(x)
        end = (self._n_in - self.margin - self.old) // self.old + 1  # blocks with all input in
        if end - self._done < self._min_blocks:  # too few for a call's cost: wait for more
            return np.zeros(0, np.float32)
        return self._blocks(end, final=False)

    def flush(self) -> np.ndarray:
        """The rest of the output (the end padded as julius pads it); then a fresh stream."""
        if self._julius is None or self._buf is None:
            return np.zeros(0, np.float32)
        out = self._blocks(None, final=True)
        self._buf, self._buf_block, self._n_in, self._done = None, 0, 0, 0
        return out

    def _blocks(self, end: int | None, final: bool) -> np.ndarray:
        import torch

        assert self._buf is not None and self._julius is not None
        if not final and (end is None or end <= self._done):
            return np.zeros(0, np.float32)
        first = max(0, self._done - self._history_blocks)  # input block the call starts at
        a = (first - self._buf_block) * self.old
        stop = (
            self._buf.shape[1]
            if final
            else (end * self.old + self.margin) - self._buf_block * self.old
        )
        x = torch.from_numpy(np.ascontiguousarray(self._buf[:, a:stop]))
        y = self._julius(x, full=final).numpy()
        skip = (self._done - first) * self.new
        if final:
            total = (self.new * self._n_in) // self.old  # julius's (floored) output length
            out = y[:, skip : skip + total - self._done * self.new]
        else:
            out = y[:, skip : skip + (end - self._done) * self.new]
            self._done = end
            keep = max(0, self._done - self._history_blocks)
            self._buf = self._buf[:, (keep - self._buf_block) * self.old :]
            self._buf_block = keep
        return out.mean(axis=0).astype(np.float32, copy=False)


def resample_sound(samples: np.ndarray, rate: int, out_rate: int = AUDIO_RATE) -> np.ndarray:
    """`(n, channels)` float32 at `rate` -> mono at `out_rate`, in one piece (julius, then the
    mean of the channels: the official order)."""
    r = StreamResampler(rate, out_rate)
    return np.concatenate([r.push(samples), r.flush()])


class ArrayResampler(StreamResampler):
    """Blocks of `(n,)` or `(n, channels)` samples at `in_rate` (what a microphone or a page
    delivers) to mono float32 at `out_rate`, damaged samples silenced (and counted) first."""

    def __init__(
        self, in_rate: int, out_rate: int = AUDIO_RATE, counters: DecodeCounters | None = None
    ) -> None:
        super().__init__(in_rate, out_rate)
        self.counters = counters

    def push(self, block: np.ndarray) -> np.ndarray:
        """The mono output the block completes (`StreamResampler.push`)."""
        x = np.asarray(block, dtype=np.float32)
        return super().push(_finite(x.reshape(len(x), -1), self.counters))


def _first_samples(frame: av.AudioFrame, keep: int) -> av.AudioFrame | None:
    """The frame's first `keep` samples as a frame of its own (None when none are kept)."""
    if keep <= 0:
        return None
    if keep >= frame.samples:
        return frame
    width = keep if frame.format.is_planar else keep * len(frame.layout.channels)
    values = np.ascontiguousarray(frame.to_ndarray()[:, :width])
    out = av.AudioFrame.from_ndarray(values, format=frame.format.name, layout=frame.layout.name)
    out.sample_rate, out.time_base, out.pts = frame.sample_rate, frame.time_base, frame.pts
    return out


class AudioTimeline:
    """Decoded audio frames -> pieces stamped with media time.

    The sound is first converted to its `SoundFormat` (`fmt`; a video's sound as the official
    pipeline writes it out), then, with `out_rate` (default 16 kHz), resampled to mono by
    `StreamResampler`; with `out_rate=None` the pieces stay at the format's rate. Pieces are mono
    float32 (the mean of the channels).
    `push(frame)` and `finish()` return `(t, samples)` pieces: `t` is the media time of the first
    sample, seconds from the container's start. Pieces of one segment are contiguous; a frame
    more than `GAP_TOLERANCE_S` away from where the segment ends, or at another rate, starts a
    new segment (counted in `audio_gaps`). Samples after `limit` (`sound_limit`) are encoder
    padding and are dropped as they are decoded, before any conversion.
    """

    def __init__(
        self,
        origin: float = 0.0,
        limit: float | None = None,
        counters: DecodeCounters | None = None,
        fmt: SoundFormat = FILE_SOUND,
        out_rate: int | None = AUDIO_RATE,
    ) -> None:
        self.origin = origin
        self.limit = math.inf if limit is None else limit
        self.counters = counters if counters is not None else DecodeCounters()
        self.fmt = fmt
        self.out_rate = out_rate
        self._converter = SoundConverter(fmt, self.counters)
        self._resampler: StreamResampler | None = None
        self._seg_start: float | None = None  # media time of the segment's first sample
        self._seg_in = 0  # input samples in the segment
        self._seg_rate = 0
        self._seg_out = 0  # output samples of the segment handed out
        self.rate: int | None = out_rate or fmt.rate
        """The pieces' sample rate (known after the first frame when it is the file's own)."""
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
        t = self._seg_start + self._seg_in / self._seg_rate
        self._seg_in += frame.samples
        self.horizon = self._seg_start + self._seg_in / self._seg_rate
        if self.horizon > self.limit:  # decoded past the sound's end: that part is padding
            frame = _first_samples(frame, round((self.limit - t) * frame.rate))
            if frame is None:
                return out
        out += self._piece(self._stage(self._converter.push(frame)))
        return out

    def _stage(self, samples: np.ndarray, final: bool = False) -> np.ndarray:
        """Converted samples made mono (the mean of the channels), then resampled to `out_rate`
        when there is one. Mono first: a third of the memory of a long stereo file, and the same
        samples as resampling each channel (linear steps; float32 rounding apart)."""
        samples = samples.mean(axis=1, dtype=np.float32) if samples.ndim == 2 else samples
        if self.out_rate is None:
            self.rate = self._converter.rate
            return samples
        if self._resampler is None:
            if not len(samples) and final:
                return np.zeros(0, np.float32)
            assert self._converter.rate is not None
            self._resampler = StreamResampler(self._converter.rate, self.out_rate)
        out = self._resampler.push(samples) if len(samples) else np.zeros(0, np.float32)
        if final:
            out = np.concatenate([out, self._resampler.flush()])
            self._resampler = None
        return out

    def finish(self) -> list[tuple[float, np.ndarray]]:
        """End of the segment (or of the file): the samples the resampler still held."""
        if self._seg_start is None:
            return []
        out = self._piece(self._stage(self._converter.flush(), final=True))
        self._seg_start, self._seg_in, self._seg_out = None, 0, 0
        return out

    def _piece(self, samples: np.ndarray) -> list[tuple[float, np.ndarray]]:
        if not len(samples):
            return []
        assert self._seg_start is not None and self.rate is not None
        t = self._seg_start + self._seg_out / self.rate
        self._seg_out += len(samples)
        return [(t, samples)]


def duration_limit(container: av.container.InputContainer) -> float | None:
    """The file's duration from its header (sound past it is encoder padding), or None."""
    return container.duration / av.time_base if container.duration else None


def sound_limit(container: av.container.InputContainer) -> float | None:
    """Media time where the first audio stream's sound ends: its own duration when its header
    gives one (the padding of an AAC stream past it is dropped, as the FFmpeg the official
    pipeline runs drops it), else the file's."""
    whole = duration_limit(container)
    stream = container.streams.audio[0] if container.streams.audio else None
    if stream is None or not stream.duration or stream.time_base is None:
        return whole
    first = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
    own = first + float(stream.duration * stream.time_base) - start_time(container)
    return own if whole is None else min(own, whole)


def reader_duration(seconds: float) -> float:
    """The length the official video reader (moviepy) gives a file whose container lasts
    `seconds`: the `Duration:` ffmpeg prints (to the centisecond, half up), read back as moviepy
    reads it (`SS.cc + 60·MM + 3600·HH`)."""
    cs = (int(round(seconds * 1e6)) + 5000) // 10000
    hours, rest = divmod(cs, 360000)
    minutes, rest = divmod(rest, 6000)
    return float(f"{rest // 100}.{rest % 100:02d}") + 60 * float(minutes) + 3600 * float(hours)


@dataclass(frozen=True)
class Sound:
    """A file's sound as the official pipeline reads it, at `rate` (`SoundFormat`), made mono:
    float32 samples, sample i at media time i / rate."""

    samples: np.ndarray
    rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate

    def mono(self, out_rate: int = AUDIO_RATE) -> np.ndarray:
        """The whole sound as mono float32 at `out_rate` (`resample_sound`)."""
        return resample_sound(self.samples, self.rate, out_rate)


def read_sound(path: str | os.PathLike, counters: DecodeCounters | None = None) -> Sound:
    """The first audio stream in its `SoundFormat` (a late start and any gaps are silence)."""
    counters = counters if counters is not None else DecodeCounters()
    with open_media(path) as c:
        if not c.streams.audio:
            raise SourceError(f"{path} has no audio stream")
        limit, whole = sound_limit(c), duration_limit(c)
        fmt = sound_format(c)
        timeline = AudioTimeline(start_time(c), limit, counters, fmt, out_rate=None)
        rate = fmt.rate or c.streams.audio[0].codec_context.sample_rate or AUDIO_RATE
        layout = SampleLayout(rate, int((whole or limit or 0.0) * rate) + rate)
        for frame in decoded_frames(c, c.streams.audio[0], counters):
            layout.extend(timeline.push(frame))
        layout.extend(timeline.finish())
    samples = layout.samples()
    if fmt == VIDEO_SOUND and whole:  # moviepy writes int(44100 * its duration) frames, zeros
        n = int(rate * reader_duration(whole))  # past the sound
        samples = np.concatenate([samples[:n], np.zeros(max(0, n - len(samples)), np.float32)])
    return Sound(samples, int(timeline.rate or rate))


def read_audio(path: str | os.PathLike, counters: DecodeCounters | None = None) -> np.ndarray:
    """The first audio stream as mono float32 at 16 kHz, sample i at media time i / 16000:
    `read_sound` resampled in one piece, the samples file replay streams."""
    return read_sound(path, counters).mono()


class SampleLayout:
    """Stamped mono pieces laid out as one array from time 0 as they come (silence in gaps,
    overlaps keep the earlier samples, as a live stream does), without holding the pieces:
    `capacity` samples are set aside first (a long file's sound is never copied whole)."""

    def __init__(self, rate: int = AUDIO_RATE, capacity: int = 0) -> None:
        self.rate = rate
        self._buf = np.zeros(max(0, capacity), np.float32)
        self._n = 0

    def extend(self, pieces: Iterable[tuple[float, np.ndarray]]) -> None:
        for t, samples in pieces:
            at = round(t * self.rate)
            if at < self._n:
                samples = samples[self._n - at :]
                at = self._n
            self._reserve(at + len(samples))
            self._buf[self._n : at] = 0.0
            self._buf[at : at + len(samples)] = samples
            self._n = at + len(samples)

    def _reserve(self, n: int) -> None:
        if n > len(self._buf):
            grown = np.zeros(max(n, len(self._buf) * 3 // 2), np.float32)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown

    def samples(self) -> np.ndarray:
        return self._buf[: self._n]


def lay_out(pieces: list[tuple[float, np.ndarray]], rate: int = AUDIO_RATE) -> np.ndarray:
    """Stamped pieces as one array from time 0 (`SampleLayout`)."""
    layout = SampleLayout(rate)
    layout.extend(pieces)
    return layout.samples()


def media_duration(path: str | os.PathLike, info: MediaInfo | None = None) -> float:
    """The file's duration: from its header, else by decoding its sound (0.0 if none)."""
    info = info or probe(path)
    if info.duration is not None:
        return info.duration
    if info.has_audio:
        return len(read_audio(path)) / AUDIO_RATE
    return 0.0
