"""The microphone path against a real PortAudio device: a private PulseAudio null sink.

The test starts its own PulseAudio server (a null sink whose monitor is the default source),
plays a known tone into it (pacat), and records it back with `MicrophoneSource` via
PortAudio's ALSA "pulse" device. It skips, saying why, when PortAudio, PulseAudio or the ALSA
pulse plugin is missing. Needs: apt-get install libportaudio2 pulseaudio pulseaudio-utils
libasound2-plugins.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from pulse_device import PulseServer, play_tone

from tribe_stream.errors import SourceError
from tribe_stream.sources.microphone import (
    MicrophoneSource,
    list_input_devices,
)
from tribe_stream.sources.ring import SampleRing
from tribe_stream.types import Chunk


def first_chunk(mic: MicrophoneSource, timeout: float = 8.0) -> Chunk:
    chunk = mic.get(timeout)
    assert chunk is not None, f"no audio within {timeout} s: {mic.counters}"
    return chunk


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.parametrize(("rate", "channels"), [(48000, 2), (None, 1)])
def test_microphone_records_a_tone_at_16k(pulse: PulseServer, rate, channels) -> None:
    with MicrophoneSource("pulse", rate=rate, channels=channels) as mic:
        chunks = [first_chunk(mic)]
        t_play = mic.clock.now()
        play_tone(880.0, 1.0)
        time.sleep(0.3)
    chunks += mic.poll()  # stop() hands over the last partial chunk too
    default_rate = {d["name"]: d["default_rate"] for d in list_input_devices()}["pulse"]
    assert mic.device_rate == (rate or int(default_rate)) and mic.device_channels == channels
    assert all(c.kind == "audio" and c.rate == 16000 and c.data.dtype == np.float32 for c in chunks)
    # Contiguous stamps (the drift follower may nudge them by microseconds).
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        assert nxt.start == pytest.approx(prev.end, abs=2e-4)
    sound = np.concatenate([c.data for c in chunks])
    times = chunks[0].start + np.arange(len(sound)) / 16000
    loud = np.flatnonzero(np.abs(sound) > 0.25)
    assert len(loud), "the tone never arrived"
    tone = sound[loud[0] : loud[-1]]
    spectrum = np.abs(np.fft.rfft(tone * np.hanning(len(tone))))
    assert np.argmax(spectrum) * 16000 / len(tone) == pytest.approx(880, abs=3)
    assert times[loud[-1]] - times[loud[0]] == pytest.approx(1.0, abs=0.03)  # 16 kHz for real
    assert 0.45 < np.abs(tone).max() < 0.56  # the mono mix keeps the level
    # Capture-time stamps: the tone starts after we started playing it, and not much later.
    assert t_play <= times[loud[0]] < t_play + 0.3
    counters = mic.counters
    assert counters["samples"] == len(sound) and counters["dropped_chunks"] == 0
    assert counters["errors"] == 0


def test_missing_microphone_says_what_exists(pulse: PulseServer) -> None:
    with pytest.raises(SourceError, match=r"no input device 'no such mic'.*pulse"):
        MicrophoneSource("no such mic").start()


def test_microphone_drops_out_and_returns(pulse: PulseServer) -> None:
    mic = MicrophoneSource("pulse", backoff=(0.1, 0.3)).start()
    try:
        first_chunk(mic)
        pulse.stop()  # the audio server (the "device") goes away
        assert wait_for(lambda: mic.counters["errors"] >= 1, 5.0)
        assert wait_for(lambda: mic.counters["reconnect_failures"] >= 1, 3.0)
        assert not mic.ended
        mic.poll()
        pulse.start()
        assert wait_for(lambda: mic.counters["reconnects"] >= 1, 5.0)
        back = first_chunk(mic)
        assert back.start > 0 and back.rate == 16000
    finally:
        mic.stop()
    assert mic.error is None


def test_microphone_without_reconnect_ends_with_an_error(pulse: PulseServer) -> None:
    mic = MicrophoneSource("pulse", reconnect=False).start()
    try:
        first_chunk(mic)
        pulse.stop()
        assert mic.join(5.0)
    finally:
        mic.stop()
        pulse.start()
    assert isinstance(mic.error, SourceError)
    assert "stopped delivering audio" in str(mic.error)


def test_ring_drops_the_oldest_and_says_how_much() -> None:
    ring = SampleRing(capacity=100, channels=2, rate=1000)
    block = np.arange(60, dtype=np.float32).reshape(30, 2)
    for k in range(5):  # 150 frames into a 100-frame ring
        ring.write(block + 1000 * k, start_time=k * 0.03)
    start, data, lost = ring.read()
    assert (start, len(data), lost) == (50, 100, 50)
    assert data[0, 0] == 1000 + 40  # frame 50 = 20th frame of the second block
    assert ring.marks[-1] == (120, 0.12)
    ring.write(block[:10], start_time=0.15)
    start, data, lost = ring.read()
    assert (start, len(data), lost) == (150, 10, 0)


def test_ring_writer_never_waits_for_a_slow_reader() -> None:
    ring = SampleRing(capacity=4800, channels=1, rate=48000)
    block = np.ones((480, 1), np.float32)
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            ring.write(block, 0.0)

    thread = threading.Thread(target=writer)
    thread.start()
    got = lost = 0
    last_end = 0
    for _ in range(50):
        start, data, n_lost = ring.read()
        assert start == last_end + n_lost  # contiguous once the loss is accounted for
        last_end = start + len(data)
        got, lost = got + len(data), lost + n_lost
        time.sleep(0.001)
    stop.set()
    thread.join()
    assert got + lost == last_end and lost > 0
