"""Browser capture source: camera frames and sound a web page sends (getUserMedia), as `Chunk`s.

The web server parses each WebSocket message into a `CapturePacket` and hands it to `offer`,
which never blocks: packets wait in a small inbox (full: the oldest dropped and counted) and the
source's own thread decodes them, so JPEG decoding never stalls the server's event loop.

- Video: one JPEG per packet, decoded by PyAV (at most `MAX_PIXELS`; failures counted in
  `corrupt_frames`), downscaled to `max_size` as the camera does; a frame whose page time does
  not advance is skipped (`out_of_order_frames`).
- Audio: mono float32 at the page's rate, resampled to 16 kHz by `media.ArrayResampler`
  (damaged samples silenced, `nonfinite_samples`), stamped by counting samples; a packet more
  than `GAP_S` from where the sound ended starts again at its own stamp (`audio_gaps`), never
  overlapping, and sound running more than `GAP_S` ahead of the clock is dropped.
- Stamps: the page's clock (`performance.now()`) maps onto the stream clock by the smallest
  arrival delay seen (no stamp in the future), re-anchored (`clock_resyncs`) for a new page or
  when they disagree by more than `resync_s`. The delay is taken on arrival (`offer`), so a
  decoding backlog neither moves stamps nor re-anchors. What was captured before the stream
  began is left out on purpose (`skipped_frames`, `skipped_samples`, 16 kHz samples).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Literal

import av
import numpy as np

from tribe_stream import AUDIO_RATE
from tribe_stream.clock import StreamClock
from tribe_stream.media import ArrayResampler, DecodeCounters
from tribe_stream.sources.base import Source
from tribe_stream.sources.chunks import audio_chunk, video_chunk

log = logging.getLogger("tribe_stream.sources")

MAX_PIXELS = 3840 * 2160
"""Largest picture decoded (a bigger JPEG is refused by the decoder before it allocates)."""
GAP_S = 0.25
"""Audio packets further than this from where the sound ended start a new run (a gap)."""
DEFAULT_FRAME_S = 1 / 15
"""How long the first frame of a run is shown (later ones: until the next frame)."""


@dataclass(frozen=True)
class CapturePacket:
    """One message of a capturing page: a JPEG frame, or a run of mono samples.

    `t` is the page's clock (seconds) when the frame was captured or the first sample recorded;
    `session` names the capturing page (a new one re-anchors the clock).
    """

    kind: Literal["video", "audio"]
    t: float
    data: bytes | np.ndarray
    rate: int = AUDIO_RATE
    session: str = ""
    arrived: float | None = None
    """`time.monotonic()` when it reached the server (set by `BrowserSource.offer`)."""

    @property
    def samples_16k(self) -> int:
        """Its sound as 16 kHz samples (0 for a frame)."""
        return round(len(self.data) * AUDIO_RATE / self.rate) if self.kind == "audio" else 0

    @property
    def t_end(self) -> float:
        """Page time when the packet was complete (its last sample): it cannot arrive earlier."""
        return self.t + len(self.data) / self.rate if self.kind == "audio" else self.t


class BrowserSource(Source):
    """Video and audio chunks from a capturing web page (see the module docs)."""

    kind = "media"

    def __init__(
        self,
        *,
        clock: StreamClock | None = None,
        max_size: int | None = 292,
        inbox_size: int = 32,
        resync_s: float = 2.0,
        queue_size: int = 64,
        name: str = "browser",
    ) -> None:
        super().__init__(clock=clock, queue_size=queue_size, name=name)
        self.max_size = max_size
        self.resync_s = resync_s
        self._inbox: deque[CapturePacket] = deque()
        self._inbox_size = inbox_size
        self._cond = threading.Condition()
        self._decoder: av.CodecContext | None = None
        self._session: str | None = None
        self._offset: float | None = None  # stream time minus page time
        self._last_frame: tuple[str, float, float] | None = None  # session, page time, stamp
        self._audio_next: float | None = None
        self._audio_rate: int | None = None
        self._resampler: ArrayResampler | None = None
        self._decode = DecodeCounters()
        self._resyncs_logged = 0

    def kinds(self) -> tuple[str, ...]:
        """The chunk kinds a page sends: video and audio."""
        return ("video", "audio")

    def offer(self, packet: CapturePacket) -> None:
        """Queue a packet for decoding (any thread; never blocks; the oldest goes when full)."""
        if packet.arrived is None:
            packet = replace(packet, arrived=time.monotonic())
        with self._cond:
            if len(self._inbox) >= self._inbox_size:
                old = self._inbox.popleft()
                audio = old.kind == "audio"
                if not self._started:  # before the stream began: left out, not a loss
                    self._count(skipped_frames=0 if audio else 1, skipped_samples=old.samples_16k)
                else:
                    self._count(
                        dropped_chunks=1,
                        dropped_frames=0 if audio else 1,
                        dropped_samples=old.samples_16k,
                    )
            self._inbox.append(packet)
            self._cond.notify()

    # ----- the capture thread -----

    def _open(self) -> None:
        self._decoder = self._new_decoder()

    @staticmethod
    def _new_decoder() -> av.CodecContext:
        decoder = av.CodecContext.create("mjpeg", "r")
        decoder.options = {"max_pixels": str(MAX_PIXELS)}
        return decoder

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                if not self._inbox:
                    self._cond.wait(0.1)
                packet = self._inbox.popleft() if self._inbox else None
            if packet is None:
                continue
            try:
                if packet.kind == "video":
                    self._video(packet)
                else:
                    self._audio(packet)
            except Exception as exc:  # noqa: BLE001 - one bad packet never ends the capture
                self._count(errors=1)
                log.warning("%s: skipped a packet: %s: %s", self.name, type(exc).__name__, exc)

    def _stamp(self, packet: CapturePacket) -> float:
        """The packet's page time on the stream clock (see the module docs)."""
        now = self.clock.now()
        if packet.arrived is not None:  # when it reached us, not when the thread got to it
            now = min(now, packet.arrived - self.clock.t0_monotonic)
        delay = now - packet.t_end
        if packet.session != self._session:
            if self._session is not None:
                self._count(clock_resyncs=1)
            self._session, self._offset = packet.session, delay
        elif self._offset is None or delay < self._offset:
            self._offset = delay  # a quicker arrival: a better estimate of the clocks' offset
        elif delay - self._offset > self.resync_s:
            self._count(clock_resyncs=1)
            self._resyncs_logged += 1
            if self._resyncs_logged <= 3 or self._resyncs_logged % 100 == 0:
                log.warning(
                    "%s: the page's clock moved %.1f s; re-anchored (%d so far)",
                    self.name,
                    delay - self._offset,
                    self._resyncs_logged,
                )
            self._offset = delay
        return packet.t + self._offset

    def _video(self, packet: CapturePacket) -> None:
        assert self._decoder is not None
        stamp = self._stamp(packet)
        if stamp < 0:
            self._count(skipped_frames=1)
            return
        try:
            frames = self._decoder.decode(av.Packet(bytes(packet.data)))
        except (av.FFmpegError, ValueError) as exc:
            self._decoder = self._new_decoder()  # start clean after a broken picture
            self._corrupt(f"JPEG failed to decode: {exc}")
            return
        for frame in frames:
            rgb = self._frame_rgb(frame, self.max_size, " from the page")
            if rgb is None:
                continue
            last = self._last_frame
            if last is not None and packet.session == last[0] and packet.t <= last[1]:
                self._count(out_of_order_frames=1)  # the page's own clock went back
                continue
            if last is not None:  # a better clock estimate must not reorder frames
                stamp = max(stamp, last[2] + 1e-3)
            frame_s = DEFAULT_FRAME_S if last is None else min(max(stamp - last[2], 1e-3), 0.5)
            self._last_frame = (packet.session, packet.t, stamp)
            self._emit(video_chunk(rgb, stamp, frame_s, None, self.clock.now()))

    def _audio(self, packet: CapturePacket) -> None:
        stamp = self._stamp(packet)
        data = np.asarray(packet.data, dtype=np.float32)
        if stamp < 0:  # captured before the stream began: left out on purpose, not a loss
            cut = min(len(data), math.ceil(-stamp * packet.rate - 1e-9))
            self._count(skipped_samples=round(cut * AUDIO_RATE / packet.rate))
            data, stamp = data[cut:], stamp + cut / packet.rate
            if not len(data):
                return
        if self._resampler is None or packet.rate != self._audio_rate:
            self._resampler = ArrayResampler(packet.rate, counters=self._decode)
            self._audio_rate = packet.rate
        before = self._decode.nonfinite_samples
        samples = self._resampler.push(data)
        self._count(nonfinite_samples=self._decode.nonfinite_samples - before)
        if not len(samples):
            return
        start = stamp
        if self._audio_next is not None:
            if abs(stamp - self._audio_next) <= GAP_S:
                start = self._audio_next  # contiguous: count samples
            else:
                self._count(audio_gaps=1)
                start = max(stamp, self._audio_next)  # never overlap what was sent
        now = self.clock.now()
        if start > now + GAP_S:  # sound faster than real time (a burst): never run ahead
            self._count(dropped_samples=len(samples))
            return
        chunk = audio_chunk(samples, start, now)
        self._audio_next = chunk.end
        self._emit(chunk)

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._cond.notify_all()
        super().stop(timeout)
