"""One media path: offline reading and live replay give the same samples and frames for the same
file, and broken or odd files give what can be read (counted) or one clear error."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import run_cli

from tribe_stream import AUDIO_RATE
from tribe_stream.errors import SourceError
from tribe_stream.media import DecodeCounters, iter_video_frames, lay_out, probe, read_audio
from tribe_stream.sources.replay import FileReplay

RATE_IN = 44100


def stereo(seconds: float) -> np.ndarray:
    """(2, n) float32: left 440 Hz at 0.5, right 660 Hz at 0.25."""
    t = np.arange(int(seconds * RATE_IN)) / RATE_IN
    return np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 660 * t)]).astype(
        np.float32
    )


def write_audio(path: Path, samples: np.ndarray, codec: str, fmt: str, video: bool = False):
    """Write planar float `samples (2, n)` at 44.1 kHz (and a small moving picture if `video`)."""
    with av.open(str(path), "w") as out:
        vs = None
        if video:
            vs = out.add_stream("libx264", rate=16)
            vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream(codec, rate=RATE_IN, layout="stereo")
        step = 1024
        n_frames = int(samples.shape[1] / RATE_IN * 16)
        for i in range(0, samples.shape[1], step):
            block = samples[:, i : i + step]
            data = block if fmt.endswith("p") else block.T.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(data), format=fmt, layout="stereo"
            )
            frame.sample_rate = RATE_IN
            frame.pts = i
            for p in a.encode(frame):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
        if vs is not None:
            for k in range(n_frames):
                img = np.zeros((48, 64, 3), np.uint8)
                img[:, (k * 3) % 54 :][:, :10] = 255
                for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(p)
            for p in vs.encode():
                out.mux(p)


def replayed_audio(path: Path) -> tuple[np.ndarray, dict]:
    """The sound file replay streams (as fast as possible), laid out on its stamps."""
    with FileReplay(path, realtime=False, video=False) as src:
        chunks = [c for c in src if c.kind == "audio"]
        counters = dict(src.counters)
    assert chunks
    return lay_out([(c.start, c.data) for c in chunks]), counters


@pytest.mark.parametrize(
    "name,codec,fmt,video",
    [("stereo.wav", "pcm_s16le", "s16", False), ("stereo.mp4", "aac", "fltp", True)],
)
def test_stereo_file_gives_the_same_samples_offline_and_live(tmp_path, name, codec, fmt, video):
    """Offline extraction once downmixed with libswresample (-3 dB) and replay took the channel
    mean: the same stereo file came out about sqrt(2) apart in level."""
    src = stereo(3.0)
    data = (src * 32767).astype(np.int16) if fmt == "s16" else src
    path = tmp_path / name
    write_audio(path, data, codec, fmt, video)
    offline = read_audio(path)
    live, _ = replayed_audio(path)
    assert abs(len(offline) - 3.0 * AUDIO_RATE) < 0.05 * AUDIO_RATE
    n = min(len(offline), len(live))
    assert n > 2.9 * AUDIO_RATE
    # block by block vs one piece: the same julius filter, float32 rounding apart
    np.testing.assert_allclose(offline[:n], live[:n], rtol=0, atol=1e-6)
    # and the level is the plain channel mean: rms of (0.5 sin + 0.25 sin') / 2 -> 0.1976
    mid = offline[AUDIO_RATE // 2 : 2 * AUDIO_RATE]
    want = np.sqrt((0.25**2 + 0.125**2) / 2)
    assert abs(np.sqrt(np.mean(mid**2)) / want - 1) < 0.03


def test_nan_samples_become_silence_and_are_counted(tmp_path):
    src = stereo(2.0)
    src[:, RATE_IN // 2 : RATE_IN // 2 + 100] = np.nan
    src[0, RATE_IN] = np.inf
    path = tmp_path / "nan.wav"
    write_audio(path, src, "pcm_f32le", "flt")
    counters = DecodeCounters()
    offline = read_audio(path, counters)
    assert np.isfinite(offline).all()
    assert counters.nonfinite_samples > 0
    live, source_counters = replayed_audio(path)
    assert np.isfinite(live).all() and source_counters["nonfinite_samples"] > 0
    np.testing.assert_allclose(offline[: len(live)], live[: len(offline)], rtol=0, atol=1e-6)


def _clip(path: Path, seconds: float = 4.0, faststart: bool = False) -> Path:
    from tribe_stream.sources.clip import make_clip

    make_clip(path, seconds)
    if faststart:  # moov atom first, as web video is: truncation then cuts the media data
        fast = path.with_name("fast-" + path.name)
        with (
            av.open(str(path)) as src,
            av.open(str(fast), "w", options={"movflags": "faststart"}) as out,
        ):
            streams = {s.index: out.add_stream_from_template(s) for s in src.streams}
            for packet in src.demux():
                if packet.dts is None:
                    continue
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
        return fast
    return path


def test_truncated_and_corrupt_files_give_what_can_be_read(tmp_path):
    clip = _clip(tmp_path / "clip.mp4", faststart=True)
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    counters = DecodeCounters()
    frames = list(iter_video_frames(cut, counters=counters))
    audio = read_audio(cut, counters)
    # a video's sound is as long as the official reader makes it (zeros past what decodes)
    heard = np.flatnonzero(np.abs(audio) > 1e-4)
    assert 0 < len(frames) < 4 * 25 and 0 < len(heard) and heard[-1] < 3.5 * AUDIO_RATE
    # a corrupt MPEG-TS: garbage over a stretch in the middle
    ts = tmp_path / "clip.ts"
    subprocess_ffmpeg(["-i", str(clip), "-c", "copy", "-f", "mpegts", str(ts)])
    raw = bytearray(ts.read_bytes())
    rng = np.random.default_rng(0)
    mid = len(raw) // 2
    raw[mid : mid + 20000] = rng.integers(0, 256, 20000, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.ts"
    bad.write_bytes(bytes(raw))
    frames = list(iter_video_frames(bad))
    assert len(frames) > 30
    out = tmp_path / "f.npz"
    for path in (cut, bad):  # `extract` goes on past decode errors, as `run --file` does
        r = run_cli("extract", str(path), "--out", str(out), "--checkpoint", "demo", "--no-asr")
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
        with np.load(out) as z:
            assert set(z.files) == {"audio", "video"}


def subprocess_ffmpeg(args: list[str]) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg command is needed to make this file (apt-get install ffmpeg)")
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", *args], check=True, timeout=60)


def test_files_that_give_nothing_are_one_clear_line(tmp_path):
    out = tmp_path / "f.npz"
    short = tmp_path / "short.wav"
    write_audio(short, (stereo(0.2) * 32767).astype(np.int16), "pcm_s16le", "s16")
    r = run_cli("extract", str(short), "--out", str(out), "--checkpoint", "demo", "--no-asr")
    assert r.returncode == 2 and "too short for one 0.5 s feature bin" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not out.exists()
    srt = tmp_path / "subs.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:02,000\nhello\n")
    subs = tmp_path / "subs.mkv"
    subprocess_ffmpeg(["-i", str(srt), str(subs)])
    r = run_cli("extract", str(subs), "--out", str(out), "--checkpoint", "demo")
    assert r.returncode == 2 and "neither audio nor video" in r.stderr, r.stderr
    assert "Llama" not in r.stderr and "Traceback" not in r.stderr
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a media file" * 100)
    with pytest.raises(SourceError, match="cannot read"):
        probe(junk)


def test_read_ahead_keeps_order_raises_where_it_failed_and_stops_when_closed(tmp_path):
    """Frames decoded in a background thread come out in order, all of them; a decoding error
    reaches the consumer after the items before it; leaving early stops the producer thread."""
    import threading

    from tribe_stream.media import read_ahead

    path = tmp_path / "clip.mp4"
    write_audio(path, stereo(2.0), "aac", "fltp", video=True)
    direct = list(iter_video_frames(path))
    ahead = list(read_ahead(iter_video_frames(path), depth=3))
    assert [t for t, _ in ahead] == [t for t, _ in direct]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(ahead, direct, strict=True))

    def failing():
        yield 1
        yield 2
        raise SourceError("disk gone")

    got = []
    with pytest.raises(SourceError, match="disk gone"):
        for x in read_ahead(failing()):
            got.append(x)
    assert got == [1, 2]

    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    it = read_ahead(endless(), depth=2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()
    assert not any(t.name == "tribe-read-ahead" for t in threading.enumerate())
    assert len(produced) <= 3 + 2 + 2  # stopped within its read-ahead depth


def mono_float_wav(path: Path, samples: np.ndarray, rate: int = AUDIO_RATE) -> None:
    """A mono float32 WAV (pcm_f32le) of `samples` as they are, written by FFmpeg."""
    with av.open(str(path), "w") as out:
        a = out.add_stream("pcm_f32le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        for p in a.encode(frame) + a.encode():
            out.mux(p)


def test_huge_finite_samples_are_silenced_alike_offline_replayed_and_captured(tmp_path):
    """100 ms of 3e38 (finite) went through untouched: their squares overflow in the features,
    and one such packet from a page stopped the capture stream for good. Beyond ±MAX_SAMPLE a
    sample is damage, made silent and counted wherever sound enters."""
    from tribe_stream.clock import StreamClock
    from tribe_stream.media import MAX_SAMPLE
    from tribe_stream.prediction import Predictor
    from tribe_stream.sources.browser import BrowserSource, CapturePacket

    tone = (0.1 * np.sin(np.arange(4 * AUDIO_RATE) / AUDIO_RATE * 2 * np.pi * 220)).astype("f4")
    damaged, clean = tone.copy(), tone.copy()
    damaged[16000:17600], clean[16000:17600] = 3e38, 0.0
    damaged[20000], damaged[20001] = -1e6, MAX_SAMPLE  # beyond the bound, and at it (kept)
    clean[20000], clean[20001] = 0.0, MAX_SAMPLE
    mono_float_wav(tmp_path / "bad.wav", damaged)
    mono_float_wav(tmp_path / "clean.wav", clean)
    counters = DecodeCounters()
    offline = read_audio(tmp_path / "bad.wav", counters)
    assert counters.nonfinite_samples == 1601
    np.testing.assert_array_equal(offline, read_audio(tmp_path / "clean.wav"))
    live, live_counters = replayed_audio(tmp_path / "bad.wav")
    assert live_counters["nonfinite_samples"] == 1601
    np.testing.assert_allclose(live[: len(offline)], offline[: len(live)], rtol=0, atol=1e-6)

    # a page's 100 ms packets (parsed from the wire as the server does)
    now = time.monotonic()
    src = BrowserSource(clock=StreamClock(t0_monotonic=now - 10), inbox_size=64)
    src.start()
    try:  # sent at their pace: each arrived 100 ms after the one before
        for i in range(0, len(damaged), 1600):
            t = 1.0 + i / AUDIO_RATE
            src.offer(CapturePacket("audio", t, damaged[i : i + 1600], arrived=now - 5 + t))
        chunks, deadline = [], time.monotonic() + 30
        while (
            sum(len(c.data) for c in chunks) < len(damaged) - 1600 and time.monotonic() < deadline
        ):
            chunk = src.get(timeout=0.5)
            if chunk is not None:
                chunks.append(chunk)
        captured = dict(src.counters)
    finally:
        src.stop()
    assert captured["nonfinite_samples"] == 1601
    got = np.concatenate([c.data for c in chunks])
    assert np.abs(got).max() <= MAX_SAMPLE
    np.testing.assert_allclose(got, clean[: len(got)], rtol=0, atol=1e-6)

    # and predict gives the file the same seconds as the one silenced by hand
    predictor = Predictor(checkpoint="demo", asr=False, use_cache=False, device="cpu")
    bad, good = predictor.predict(tmp_path / "bad.wav"), predictor.predict(tmp_path / "clean.wav")
    assert len(bad) == 4
    np.testing.assert_allclose(bad.values, good.values, rtol=0, atol=1e-5)
