"""Property-based fuzzing of what users and pages send in (hypothesis): capture packets from a
page (`web.wire.parse_packet` -> `BrowserSource`) and transcript files (`read_transcript`).

Capture: any bytes are a packet or a `Rejected` with a documented reason, and whatever is
accepted (random, huge, NaN or infinite samples, any page time) never stops the stream: every
chunk it gives is finite and within `media.MAX_SAMPLE`, nothing raises in its thread, and good
sound after the fuzz still comes through. Transcripts: any file is words or one `InputError`
line, in time linear in its size (markup repeated to 100+ KB: an unclosed `[` was quadratic).
Sized for a loaded 2-core machine: the time bounds are about 50 times what a run takes.
"""

from __future__ import annotations

import math
import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tribe_stream.clock import StreamClock
from tribe_stream.errors import InputError
from tribe_stream.media import MAX_SAMPLE
from tribe_stream.sources.browser import BrowserSource, CapturePacket
from tribe_stream.transcripts import read_transcript
from tribe_stream.web.wire import HEAD, REJECT_REASONS, Rejected, parse_packet

FUZZ = dict(
    deadline=None,
    database=None,  # no .hypothesis/ folder in the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SAMPLE = st.one_of(
    st.floats(width=32),  # NaN, infinities, subnormals, the largest finite
    st.sampled_from([3e38, -3e38, 1e20, MAX_SAMPLE, -MAX_SAMPLE, 32769.0, 1.0, 0.0]),
)


@st.composite
def capture_messages(draw) -> bytes:
    """A page's binary message: random bytes, or a head and samples of any value."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=64))
    tag = draw(st.sampled_from([b"PCMF", b"PCMF", b"PCMS", b"JPEG", b"XXXX"]))
    rate = draw(st.sampled_from([8000, 16000, 44100, 48000, 96000]) | st.integers(0, 2**32 - 1))
    t_ms = draw(st.floats() | st.floats(0, 1e7))
    n = draw(st.integers(1, 4800))
    if tag == b"PCMS":
        payload = np.resize(np.array(draw(st.lists(st.integers(-32768, 32767), min_size=1))), n)
        payload = payload.astype("<i2").tobytes()
    else:
        values = draw(st.lists(SAMPLE, min_size=1, max_size=32))
        payload = np.resize(np.array(values, dtype="<f4"), n).tobytes()
    if draw(st.booleans()):
        payload = payload[: draw(st.integers(0, len(payload)))]  # cut anywhere
    return HEAD.pack(tag, rate, t_ms) + payload


def _drain(src: BrowserSource, into: list, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        chunk = src.get(0.05)
        if chunk is not None:
            into.append(chunk)


def test_capture_packets_never_stop_the_stream():
    src = BrowserSource(clock=StreamClock(t0_monotonic=time.monotonic() - 100), inbox_size=4096)
    src.start()
    chunks: list = []
    reasons: set = set()
    try:

        @settings(max_examples=300, **FUZZ)
        @given(capture_messages(), st.sampled_from(["a", "b"]))
        def offer(data: bytes, session: str) -> None:
            try:
                packet = parse_packet(data, session)
            except Rejected as exc:
                assert exc.reason in REJECT_REASONS, exc.reason
                reasons.add(exc.reason)
                return
            assert packet.kind in ("audio", "video")
            assert math.isfinite(packet.t) and packet.t >= 0
            src.offer(packet)
            chunks.extend(src.poll())

        offer()
        _drain(src, chunks, 1.0)
        # then a page sends good sound at its pace: it comes through
        tone = np.sin(np.arange(1600) / 16000 * 2 * np.pi * 220).astype(np.float32)
        start = time.monotonic()
        for i in range(10):
            t = 5000.0 + 0.1 * i
            src.offer(CapturePacket("audio", t, tone, session="good", arrived=start + 0.1 * i))
            time.sleep(0.1)
        good: list = []
        _drain(src, good, 2.0)
        counters = src.counters
    finally:
        src.stop()
    for chunk in chunks + good:
        if chunk.kind == "audio":
            peak = float(np.max(np.abs(chunk.data)))  # NaN if any is
            # the input is limited to ±MAX_SAMPLE; resampling's sinc can overshoot it a little
            assert math.isfinite(peak) and peak <= 4 * MAX_SAMPLE, (chunk.start, peak)
    assert counters["errors"] == 0, counters  # nothing raised in the source's thread
    assert sum(len(c.data) for c in good if c.kind == "audio") > 0.5 * 16000, counters
    assert {"bad-time", "bad-rate", "truncated"} <= reasons


MARKUP = "[]()<>{}\\/ rtai:.,0123456789-\n&;#♪'\"\t>WEBVT"


@st.composite
def transcripts(draw) -> tuple[str, str]:
    """A subtitle or TSV file around markup repeated to 100+ KB (the shape of a quadratic
    pattern's worst case), with random text either side."""
    suffix = draw(st.sampled_from([".srt", ".vtt", ".tsv"]))
    unit = draw(st.text(alphabet=MARKUP, min_size=1, max_size=6))
    body = unit * (draw(st.integers(100_000, 200_000)) // len(unit))
    edge = st.text(alphabet=MARKUP, max_size=40)
    body = draw(edge) + body + draw(edge)
    if suffix == ".tsv":
        text = "onset\tduration\ttext\n1\t0.5\t" + body + "\n"
    else:
        head = "WEBVTT\n\n" if suffix == ".vtt" else "1\n"
        text = head + "00:00:01.000 --> 00:00:04.000\n" + body + "\n"
    return suffix, text


def _read(path) -> None:
    try:
        words = read_transcript(path)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    onsets = [w.onset for w in words]
    assert onsets == sorted(onsets)
    assert all(math.isfinite(w.onset) and w.onset >= 0 and w.duration >= 0 for w in words)


@settings(max_examples=40, **FUZZ)
@given(transcripts())
def test_transcripts_read_in_time_linear_in_their_size(tmp_path_factory, case):
    suffix, text = case
    path = tmp_path_factory.mktemp("t") / f"w{suffix}"
    path.write_text(text, encoding="utf-8")
    t0 = time.perf_counter()
    _read(path)
    took = time.perf_counter() - t0
    # about 0.2 µs a byte here; a quadratic pattern took seconds at 100 KB. Generous: a busy
    # machine (a full suite beside a soak) once took 1.03 s for 100 KB
    assert took < 2.0 + 2e-5 * len(text), (took, text[:80])


@settings(max_examples=200, **FUZZ)
@given(st.binary(max_size=300) | st.text(alphabet=MARKUP, max_size=300).map(str.encode))
def test_any_transcript_file_is_words_or_one_line(tmp_path_factory, data):
    for suffix in (".srt", ".vtt", ".tsv"):
        path = tmp_path_factory.mktemp("t") / f"w{suffix}"
        path.write_bytes(data)
        _read(path)
