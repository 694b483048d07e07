"""File replay: a video with its sound, or sound alone, at real-time pace or as fast as possible.

Stamps are media times on the stream clock (`offset + pts`, pts from the file's start): video
chunks carry each frame's pts, 16 kHz mono audio counts samples from the first audio frame's pts
(re-anchored on a gap). With `offset=0` they are the same at either pace, so offline and live
runs fill identical 0.5 s bins. `realtime=True` releases a frame when the clock reaches its
stamp, an audio chunk when it reaches its end (as a microphone would), dropping the oldest chunk
when the consumer falls behind; `realtime=False` releases chunks as decoded and blocks when the
queue is full, so nothing is dropped.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from tribe_stream import AUDIO_RATE
from tribe_stream.clock import StreamClock
from tribe_stream.errors import SourceError
from tribe_stream.media import (
    AudioTimeline,
    DecodeCounters,
    open_media,
    probe,
    sound_format,
    sound_limit,
    start_time,
)
from tribe_stream.sources.base import Source
from tribe_stream.sources.chunks import PendingSamples, audio_chunk, video_chunk
from tribe_stream.types import Chunk

log = logging.getLogger("tribe_stream.sources")

MAX_AHEAD_S = 2.0
"""In real-time mode, no stream is decoded more than lookahead + this many seconds ahead."""


class FileReplay(Source):
    """Video and/or audio chunks from a media file (anything FFmpeg opens).

    Args:
        path: the file.
        clock: the shared stream clock (a new one if None).
        realtime: release chunks at their stream time (True) or as fast as consumed (False).
        video, audio: which streams to replay (a missing stream is simply absent).
        max_size: downscale frames so the shortest edge is at most this many pixels.
        offset: stream time of media time 0; None means "now" (the clock time at `start()`).
        loop: start again at the end, continuing the stamps (counted in `loops`).
        chunk_seconds: length of audio chunks.
        queue_size: chunks kept for the consumer.
        lookahead: seconds of media decoded ahead of the clock in real-time mode.
    """

    kind = "av"

    def __init__(
        self,
        path: str | Path,
        *,
        clock: StreamClock | None = None,
        realtime: bool = True,
        video: bool = True,
        audio: bool = True,
        max_size: int | None = None,
        offset: float | None = 0.0,
        loop: bool = False,
        chunk_seconds: float = 0.1,
        queue_size: int = 256,
        lookahead: float = 0.5,
        name: str | None = None,
    ) -> None:
        super().__init__(
            clock=clock,
            queue_size=queue_size,
            overflow="drop_oldest" if realtime else "block",
            name=name or f"replay {Path(path).name}",
        )
        if not (video or audio):
            raise SourceError("file replay needs video=True, audio=True or both")
        if chunk_seconds <= 0:
            raise SourceError(f"chunk_seconds must be positive, not {chunk_seconds}")
        self.path = str(path)
        self.realtime = realtime
        self.want_video, self.want_audio = video, audio
        self.max_size = max_size
        self.offset = offset
        self.loop = loop
        self.chunk_samples = max(1, round(chunk_seconds * AUDIO_RATE))
        self.lookahead = lookahead
        self.has_video = self.has_audio = False
        self.duration: float | None = None
        self._base = 0.0

    def kinds(self) -> tuple[str, ...]:
        """The chunk kinds this replay will yield ("video", "audio"), without starting it."""
        info = probe(self.path)
        return self._wanted(info.has_video, info.has_audio)

    def _wanted(self, video: bool, audio: bool) -> tuple[str, ...]:
        """Of the kinds present (`video`, `audio`), those asked for."""
        present = {"video": video and self.want_video, "audio": audio and self.want_audio}
        return tuple(kind for kind, yes in present.items() if yes)

    # ----- opening -----
    def _open(self) -> None:
        self._container = self._open_file()
        self._base = self.clock.now() if self.offset is None else float(self.offset)

    def _open_file(self) -> av.container.InputContainer:
        try:
            container = open_media(self.path)
        except SourceError as exc:
            raise SourceError(f"cannot replay: {exc}") from None
        kinds = self._wanted(bool(container.streams.video), bool(container.streams.audio))
        self.has_video, self.has_audio = "video" in kinds, "audio" in kinds
        if not kinds:
            container.close()
            asked = " or ".join(
                k for k, w in (("video", self.want_video), ("audio", self.want_audio)) if w
            )
            raise SourceError(f"cannot replay {self.path!r}: it has no {asked} stream")
        if container.duration:
            self.duration = container.duration / av.time_base
        for stream in container.streams.video[:1]:
            stream.thread_type = "AUTO"
        return container

    # ----- replay -----
    def _run(self) -> None:
        while True:
            assert self._container is not None
            end = self._play(self._container)
            if end is None or not self.loop or self._stop.is_set():
                return
            self._close()
            self._container = self._open_file()
            self._base = end
            self._count(loops=1)

    def _play(self, container: av.container.InputContainer) -> float | None:
        """Replay the file once; returns the stream time where it ended, None if stopped."""
        video, audio = container.streams.video, container.streams.audio
        packets = container.demux(*video[: int(self.has_video)], *audio[: int(self.has_audio)])
        play = _Playback(self, container, start_time(container))
        eof = False
        while True:
            if self._stop.is_set():
                return None
            if self.realtime:
                now = self.clock.now()
                while play.heap and play.heap[0][0] <= now:
                    if not self._release(heapq.heappop(play.heap)[2]):
                        return None
                # Decode until every stream is `lookahead` ahead of the clock, but never more
                # than a few seconds ahead (one stream may end before the other).
                want = (
                    not eof
                    and play.horizon() < now + self.lookahead
                    and play.max_horizon() < now + self.lookahead + MAX_AHEAD_S
                )
            else:
                for _, _, chunk in play.take_all():
                    if not self._release(chunk):
                        return None
                want = not eof
            if want:
                eof = not self._step(packets, play)
            elif eof and not play.heap:
                media_end, full = play.end - play.base, self.duration or 0.0
                if media_end < full - max(1.0, 0.05 * full) and not play.read_error:
                    self._count(errors=1)
                    log.warning("%s: the file ended at %.1f s of the %.1f s it declares: cut "
                                "short (truncated?)", self.name, media_end, full)  # fmt: skip
                return play.end
            elif not play.heap:
                self._sleep(0.005)
            elif self._sleep_until(play.heap[0][0]):
                return None

    def _step(self, packets: Iterator[av.Packet], play: _Playback) -> bool:
        """Decode one packet; False at the end of the file (or of what could be read)."""
        try:
            packet = next(packets)
        except StopIteration:
            play.finish_audio()
            return False
        except (av.FFmpegError, OSError) as exc:
            self._count(errors=1)
            log.warning("%s: reading stopped early: %s", self.name, exc)
            play.read_error = True
            play.finish_audio()
            return False
        play.packet(packet)
        return True

    def _release(self, chunk: Chunk) -> bool:
        chunk.capture_time = self.clock.now()
        return self._emit(chunk)


class _Playback:
    """One pass over a file: decodes packets into chunks on a release heap."""

    def __init__(
        self, source: FileReplay, container: av.container.InputContainer, origin: float
    ) -> None:
        self.src = source
        self.origin = origin
        self.frame_rate: float | None = None
        if source.has_video and container.streams.video[0].average_rate:
            self.frame_rate = float(container.streams.video[0].average_rate)
        self.frame_s = 1.0 / (self.frame_rate or 25.0)
        self.base = source._base
        self.heap: list[tuple[float, int, Chunk]] = []
        self._seq = itertools.count()
        self.end = self.base
        self.read_error = False  # said already: no second line about the end
        self.video_horizon = -math.inf if source.has_video else math.inf
        self.audio_horizon = -math.inf if source.has_audio else math.inf
        self._last_video = -math.inf
        # sound is stamped on the media clock by the one media module (as offline reading is)
        self._decoded = DecodeCounters()
        self._seen = (0, 0)  # the decoder's audio gaps and silenced samples counted so far
        self._timeline = AudioTimeline(
            origin, sound_limit(container), self._decoded, sound_format(container)
        )
        self._pending = PendingSamples()
        self._pending_start = 0.0  # media time of the first pending sample

    def horizon(self) -> float:
        """Stream time up to which every replayed stream has been decoded."""
        return min(self.video_horizon, self.audio_horizon)

    def max_horizon(self) -> float:
        """Stream time of the furthest decoded media in any still-running stream."""
        live = [h for h in (self.video_horizon, self.audio_horizon) if h < math.inf]
        return max(live) if live else math.inf

    def packet(self, packet: av.Packet) -> None:
        is_video = packet.stream.type == "video"
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            if is_video:
                self.src._corrupt(f"decode error: {exc}")
            else:
                self.src._count(audio_errors=1)
                log.warning("%s: audio packet failed to decode: %s", self.src.name, exc)
            return
        for frame in frames:
            if is_video:
                self._video(frame)
            else:
                self._audio(frame)
        if packet.size == 0:  # the demuxer's end-of-stream flush packet
            if is_video:
                self.video_horizon = math.inf

    def take_all(self) -> list[tuple[float, int, Chunk]]:
        items, self.heap = sorted(self.heap), []
        return items

    def _push(self, release: float, chunk: Chunk) -> None:
        heapq.heappush(self.heap, (release, next(self._seq), chunk))
        self.end = max(self.end, chunk.end)

    # ----- video -----
    def _video(self, frame: av.VideoFrame) -> None:
        src = self.src
        frame_s = self.frame_s
        if frame.time is None:
            last = self._last_video
            media = last - self.base + frame_s if last > -math.inf else 0.0
        else:
            media = frame.time - self.origin
        stamp = self.base + media
        self.video_horizon = stamp
        if stamp <= self._last_video:
            src._count(out_of_order_frames=1)
            return
        rgb = src._frame_rgb(frame, src.max_size, f" at {media:.3f} s")
        if rgb is None:
            return
        self._last_video = stamp
        self._push(stamp, video_chunk(rgb, stamp, frame_s, self.frame_rate, src.clock.now()))

    # ----- audio -----
    def _audio(self, frame: av.AudioFrame) -> None:
        self._add(self._timeline.push(frame))
        self.audio_horizon = self.base + self._timeline.horizon
        self._chunks()

    def finish_audio(self) -> None:
        """End of the file: flush the resampler and chunk what is left."""
        self._add(self._timeline.finish())
        self._chunks(final=True)
        self.audio_horizon = math.inf

    def _add(self, pieces: list[tuple[float, np.ndarray]]) -> None:
        """Stamped pieces of sound, each contiguous with the pending samples or a new segment
        (the old one chunked first); the decoder's gaps and silenced samples since counted."""
        for t, samples in pieces:
            expected = self._pending_start + self._pending.n / AUDIO_RATE
            if self._pending.n and abs(t - expected) > 0.5 / AUDIO_RATE:
                self._chunks(final=True)
            if not self._pending.n:
                self._pending_start = t
            self._pending.add(samples)
        seen, self._seen = self._seen, (self._decoded.audio_gaps, self._decoded.nonfinite_samples)
        if self._seen != seen:
            self.src._count(
                audio_gaps=self._seen[0] - seen[0], nonfinite_samples=self._seen[1] - seen[1]
            )

    def _chunks(self, final: bool = False) -> None:
        for out in self._pending.pieces(self.src.chunk_samples, final):
            start = self.base + self._pending_start
            self._pending_start += len(out) / AUDIO_RATE
            chunk = audio_chunk(out, start, self.src.clock.now())
            self._push(chunk.end, chunk)
