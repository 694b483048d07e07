"""Microphone source through sounddevice (PortAudio): mono 16 kHz float32 chunks.

The PortAudio callback only copies its block into a `SampleRing` with its capture time; a worker
thread reads the ring every `poll_seconds`, resamples to 16 kHz mono and cuts `chunk_seconds`
chunks, stamped by counting samples from the first block's capture time, following slow drift
of the device clock (`FOLLOW_SECONDS`) and re-anchoring past `resync_seconds` (`clock_resyncs`).
A device that stops delivering audio is a dropout (`errors`): reopened with backoff when
`reconnect=True` (`reconnects`), else the source ends with a `SourceError`.
"""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

import numpy as np

from tribe_stream import AUDIO_RATE
from tribe_stream.clock import StreamClock
from tribe_stream.errors import SourceError
from tribe_stream.media import ArrayResampler
from tribe_stream.sources.base import Source
from tribe_stream.sources.chunks import PendingSamples, audio_chunk
from tribe_stream.sources.ring import SampleRing

log = logging.getLogger("tribe_stream.sources")

FOLLOW_SECONDS = 30.0
"""Time constant with which microphone stamps follow drift between device and stream clocks:
slow enough that callback jitter moves consecutive chunks apart by microseconds only."""


def import_sounddevice() -> Any:
    """The sounddevice module, or a `SourceError` that says how to install what is missing."""
    try:
        import sounddevice
    except OSError as exc:  # the Python package is there, the PortAudio library is not
        raise SourceError(
            f"the PortAudio library is missing ({exc}): install it "
            "(Debian/Ubuntu: apt-get install libportaudio2; macOS: brew install portaudio)"
        ) from exc
    except ImportError as exc:
        from tribe_stream.errors import install_hint

        raise SourceError(f"the microphone needs sounddevice: {install_hint('audio')}") from exc
    return sounddevice


def mic_device(spec: str | int | None) -> int | str | None:
    """A `--mic` value as sounddevice takes it: None for `default`, an index, or a name."""
    if spec is None or spec == "default":
        return None
    if isinstance(spec, int):
        return spec
    return int(spec) if spec.isdigit() else spec


def check_microphone(spec: str | int | None) -> None:
    """Raise `SourceError` now, before any model loads, when PortAudio or the device is missing."""
    MicrophoneSource._find(import_sounddevice(), mic_device(spec))


def list_input_devices(refresh: bool = False) -> list[dict[str, Any]]:
    """PortAudio devices that can record: dicts with index, name, channels, default_rate.

    `refresh=True` re-initialises PortAudio so that devices plugged in (or audio servers started)
    since the first call appear; do not refresh while other PortAudio streams are open.
    """
    sd = import_sounddevice()
    if refresh:
        sd._terminate()
        sd._initialize()
    return [
        {
            "index": i,
            "name": d["name"],
            "channels": d["max_input_channels"],
            "default_rate": d["default_samplerate"],
        }
        for i, d in enumerate(sd.query_devices())
        if d["max_input_channels"] > 0
    ]


class MicrophoneSource(Source):
    """Audio chunks (float32 mono, 16 kHz) from a PortAudio input device.

    Args:
        device: None (default input), an index, or a (part of a) device name.
        clock: the shared stream clock (a new one if None).
        rate: device sample rate in Hz (None: the device's default).
        channels: channels to record before the mono mix (None: up to 2).
        chunk_seconds: length of the chunks handed to the consumer.
        blocksize: PortAudio block size in frames (0: let PortAudio choose).
        latency: PortAudio input latency ("low", "high" or seconds).
        ring_seconds: capacity of the callback's ring buffer.
        poll_seconds: how often the worker reads the ring.
        reconnect: reopen the device after a dropout (counted in `reconnects`).
        max_reconnects: give up after this many failed reopen attempts in a row (None: never).
        backoff: (first, maximum) seconds between reopen attempts after the first one.
        stall_seconds: no audio for this long counts as a dropout.
        start_seconds: the same for the first audio after (re)opening (ALSA's PulseAudio
            plugin can take about 2 s to deliver its first block after a reopen).
        resync_seconds: device/stream clock disagreement that forces a re-anchor.
        queue_size: chunks kept for the consumer; beyond it the oldest is dropped and counted.
    """

    kind = "audio"

    def __init__(
        self,
        device: int | str | None = None,
        *,
        clock: StreamClock | None = None,
        rate: int | None = None,
        channels: int | None = None,
        chunk_seconds: float = 0.1,
        blocksize: int = 0,
        latency: str | float = "high",
        ring_seconds: float = 5.0,
        poll_seconds: float = 0.02,
        reconnect: bool = True,
        max_reconnects: int | None = None,
        backoff: tuple[float, float] = (0.25, 5.0),
        stall_seconds: float = 2.0,
        start_seconds: float = 6.0,
        resync_seconds: float = 0.25,
        queue_size: int = 64,
        name: str | None = None,
    ) -> None:
        label = "default" if device is None else device
        super().__init__(clock=clock, queue_size=queue_size, name=name or f"microphone {label}")
        if chunk_seconds <= 0:
            raise SourceError(f"chunk_seconds must be positive, not {chunk_seconds}")
        if channels is not None and channels < 1:
            raise SourceError(f"channels must be at least 1, not {channels}")
        self.device = device
        self.rate = rate
        self.channels = channels
        self.chunk_samples = max(1, round(chunk_seconds * AUDIO_RATE))
        self.blocksize = blocksize
        self.latency = latency
        self.ring_seconds = ring_seconds
        self.poll_seconds = poll_seconds
        self.reconnect = reconnect
        self.max_reconnects = max_reconnects
        self.backoff = backoff
        self.stall_seconds = stall_seconds
        self.start_seconds = start_seconds
        self.resync_seconds = resync_seconds
        self.device_name: str | None = None
        self.device_rate: int | None = None
        self.device_channels: int | None = None
        self._stream: Any = None
        self._ring: SampleRing | None = None
        self._finished = threading.Event()
        self._last_end = -math.inf

    # ----- opening -----
    def _open(self) -> None:
        self._open_stream(self.device)

    @staticmethod
    def _find(sd: Any, wanted: int | str | None) -> tuple[int, dict[str, Any]]:
        try:
            info = sd.query_devices(wanted, "input")
        except (ValueError, sd.PortAudioError) as exc:
            what = "no default input device" if wanted is None else f"no input device {wanted!r}"
            found = "; ".join(
                f"{d['index']}: {d['name']} ({d['channels']} ch, {d['default_rate']:.0f} Hz)"
                for d in list_input_devices()
            )
            found = found or "none (is a microphone connected and an audio server running?)"
            raise SourceError(
                f"microphone: {what} ({exc}). Input devices: {found}. Pick one by index or name"
            ) from exc
        return int(info["index"]), info

    def _open_stream(self, wanted: int | str | None) -> None:
        sd = import_sounddevice()
        index, info = self._find(sd, wanted)
        rate = int(self.rate or info["default_samplerate"])
        channels = self.channels or max(1, min(2, int(info["max_input_channels"])))
        ring = SampleRing(max(rate, round(self.ring_seconds * rate)), channels, rate)
        clock = self.clock

        def callback(indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
            # Runs in PortAudio's thread: stamp, copy, nothing else. The block's first sample
            # was captured one block duration ago (PortAudio's ADC times are not trustworthy
            # on ALSA, so they are not used).
            now = clock.now()
            if status.input_overflow:
                ring.overflows += 1
            ring.write(indata, now - frames / rate)

        finished = threading.Event()  # per stream: a late callback of an old one cannot leak
        try:
            stream = sd.InputStream(
                device=index,
                channels=channels,
                samplerate=rate,
                dtype="float32",
                blocksize=self.blocksize,
                latency=self.latency,
                callback=callback,
                finished_callback=finished.set,
            )
            stream.start()
        except (ValueError, sd.PortAudioError) as exc:
            # (Settings are not pre-checked: a probe open delays ALSA-pulse capture by ~2 s.)
            raise SourceError(
                f"microphone {info['name']!r} cannot record {channels} channel(s) at {rate} Hz "
                f"({exc}). It is busy or gone, or does not take these settings: its default "
                f"is {info['default_samplerate']:.0f} Hz with up to "
                f"{info['max_input_channels']} channels (leave rate/channels unset to use them)"
            ) from exc
        self._stream, self._ring, self._finished = stream, ring, finished
        self.device_name, self.device_rate, self.device_channels = info["name"], rate, channels
        log.info("%s: recording %r at %d Hz, %d ch", self.name, info["name"], rate, channels)

    # ----- capture -----
    def _run(self) -> None:
        while not self._stop.is_set():
            dropped = self._capture()
            self._close()
            if not dropped or self._stop.is_set():
                return
            self._count(errors=1)
            if not self.reconnect:
                self._fail(
                    f"{self.device_name!r} stopped delivering audio (unplugged, or the audio "
                    "server went away); reconnect=True keeps retrying"
                )
                return
            log.warning("%s: %r stopped delivering audio; reopening", self.name, self.device_name)
            if not self._retry_open(lambda: self._open_stream(self._reopen_target())):
                return

    def _reopen_target(self) -> int | str | None:
        """The same device by exact name if it is listed (indices move when devices come and
        go), else the original choice after refreshing PortAudio's device list."""
        for refresh in (False, True):
            try:
                devices = list_input_devices(refresh=refresh)
            except SourceError:
                continue
            for d in devices:
                if d["name"] == self.device_name:
                    return int(d["index"])
        return self.device

    def _capture(self) -> bool:
        """Turn ring contents into chunks until stopped (False) or the device drops out (True)."""
        ring = self._ring
        assert ring is not None
        state = _Timeline(self, ring.rate)
        seen_overflows = 0
        last_data = self.clock.now()
        patience = self.start_seconds
        while not self._sleep(self.poll_seconds):
            start, block, lost = ring.read()
            if ring.overflows != seen_overflows:
                self._count(overflows=ring.overflows - seen_overflows)
                seen_overflows = ring.overflows
            if lost:
                self._count(ring_overflow_samples=lost)
            if len(block):
                last_data = self.clock.now()
                patience = self.stall_seconds
                state.add(start, block, lost, ring)
            stalled = self.clock.now() - last_data > patience
            if self._finished.is_set() or not self._stream.active or stalled:
                state.finish()
                return True
        state.finish()
        return False

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()
            finally:
                stream.close()


class _Timeline:
    """Stamps and chunks the samples of one open stream."""

    def __init__(self, source: MicrophoneSource, rate: float) -> None:
        self.src = source
        self.rate = rate
        self.anchor: tuple[int, float] | None = None  # (input index, stream time)
        self.marks_seen = -1
        self.resampler = ArrayResampler(int(rate))
        self.seg_in0: int | None = None  # input index where the resampler segment starts
        self.seg_in = 0  # input samples pushed in the segment
        self.seg_out = 0  # output samples of the segment already chunked
        self.pending = PendingSamples()

    def time_of(self, index: float) -> float:
        assert self.anchor is not None
        return self.anchor[1] + (index - self.anchor[0]) / self.rate

    def add(self, start: int, block: np.ndarray, lost: int, ring: SampleRing) -> None:
        """Stamp, mix, resample and chunk `block`, whose first frame has ring index `start`."""
        self._follow_clock(ring)
        if self.anchor is None:  # no block stamp kept (should not happen): stamp on arrival
            self.anchor = (start, self.src.clock.now() - len(block) / self.rate)
        if self.seg_in0 is not None and (lost or start != self.seg_in0 + self.seg_in):
            self.finish()  # samples were lost: the resampler must not glue across the hole
        if self.seg_in0 is None:
            self.seg_in0, self.seg_in, self.seg_out = start, 0, 0
        self.seg_in += len(block)
        self.pending.add(self.resampler.push(block))
        self._chunks()

    def _follow_clock(self, ring: SampleRing) -> None:
        """Track the device clock against the stream clock from the callback's block stamps."""
        for index, t in list(ring.marks):
            if index <= self.marks_seen:
                continue
            step = index - self.marks_seen if self.marks_seen >= 0 else 0
            self.marks_seen = index
            if self.anchor is None:
                self.anchor = (index, t)
                continue
            error = t - self.time_of(index)
            if abs(error) > self.src.resync_seconds:
                self.src._count(clock_resyncs=1)
                self.anchor = (index, t)
            else:  # drift: close the gap with a time constant of FOLLOW_SECONDS of audio
                weight = min(1.0, step / self.rate / FOLLOW_SECONDS)
                self.anchor = (self.anchor[0], self.anchor[1] + weight * error)

    def finish(self) -> None:
        """Flush the resampler and hand over what is left as a (shorter) chunk."""
        self.pending.add(self.resampler.flush())
        self._chunks(final=True)
        self.seg_in0 = None

    def _chunks(self, final: bool = False) -> None:
        for out in self.pending.pieces(self.src.chunk_samples, final):
            assert self.seg_in0 is not None
            index = self.seg_in0 + self.seg_out * self.rate / AUDIO_RATE
            start = max(self.time_of(index), self.src._last_end)
            self.seg_out += len(out)
            chunk = audio_chunk(out, start, self.src.clock.now())
            self.src._last_end = chunk.end
            self.src._emit(chunk)
