"""Camera, file replay, clip and fault handling, with real PyAV decoding (no mocks).

Every file here is made by the test with PyAV: the project's synthetic clip (a code strip spells
each frame's index, the tone steps every 0.5 s), a copy with one corrupted video packet, and an
OpenEXR movie whose frames hold NaN and inf.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import av
import numpy as np
import pytest

from tribe_stream.clock import StreamClock
from tribe_stream.errors import SourceError
from tribe_stream.media import BadFrame, frame_to_rgb, target_size
from tribe_stream.media import probe as probe_file
from tribe_stream.sources import (
    COUNTER_KEYS,
    FileReplay,
    make_clip,
    open_camera,
    parse_camera_spec,
    read_frame_index,
)
from tribe_stream.sources.clip import clip_tone_hz
from tribe_stream.types import Chunk

FPS = 16


# ----- helpers -----
@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", 3.0, fps=FPS)


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("short") / "short.mp4", 1.0, fps=FPS)


def collect(source, seconds: float) -> list[Chunk]:
    """Poll `source` like a pipeline would, for `seconds`."""
    chunks: list[Chunk] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        chunks += source.poll()
        time.sleep(0.02)
    return chunks + source.poll()


def wait_for(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def dominant_hz(x: np.ndarray, rate: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def video_and_audio(chunks: list[Chunk]) -> tuple[list[Chunk], list[Chunk]]:
    return [c for c in chunks if c.kind == "video"], [c for c in chunks if c.kind == "audio"]


def corrupt_video_packet(src: Path, dst: Path, index: int) -> None:
    """Copy `src` with the middle of the `index`-th video packet overwritten by garbage."""
    with av.open(str(src)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
        pos, size = packets[index].pos, packets[index].size
    data = bytearray(src.read_bytes())
    garbage = np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes()
    data[pos + 4 : pos + size] = garbage[: size - 4]  # keep the length prefix, trash the NAL
    dst.write_bytes(bytes(data))


def exr_movie_with_nan(path: Path) -> list[float]:
    """A 6-frame OpenEXR (float32) movie: frame 2 is all NaN, frame 3 has one inf pixel."""
    levels = [k / 6 for k in range(6)]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("exr", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "gbrpf32le"
        for k, level in enumerate(levels):
            img = np.full((48, 64, 3), level, np.float32)
            if k == 2:
                img[:] = np.nan
            if k == 3:
                img[5, 5, 1] = np.inf
            frame = av.VideoFrame.from_ndarray(img, format="gbrpf32le")
            frame.pts = k
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return levels


# ----- the clip -----
def test_clip_is_deterministic_and_self_describing(tmp_path: Path, clip: Path) -> None:
    again = make_clip(tmp_path / "again.mp4", 3.0, fps=FPS)
    assert again.read_bytes() == clip.read_bytes()
    with av.open(str(clip)) as container:
        assert container.streams.video[0].codec_context.name in ("h264", "mpeg4")
        assert container.streams.audio[0].codec_context.name == "aac"
        frames = list(container.decode(video=0))
    assert len(frames) == 3 * FPS
    # The code strip survives compression and downscaling.
    for k, frame in enumerate(frames):
        assert read_frame_index(frame_to_rgb(frame)) == k
        assert read_frame_index(frame_to_rgb(frame, max_size=64)) == k
    # The picture moves.
    a, b = frame_to_rgb(frames[0]), frame_to_rgb(frames[8])
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5


# ----- file replay -----
def test_replay_fast_gives_exact_media_times_and_16k_mono(clip: Path) -> None:
    info = probe_file(clip)
    assert (info.has_video, info.has_audio, info.duration, info.fps) == (True, True, 3.0, FPS)
    assert (info.width, info.height, info.audio_rate, info.audio_channels) == (320, 240, 44100, 2)
    assert FileReplay(clip).kinds() == ("video", "audio")
    assert FileReplay(clip, video=False).kinds() == ("audio",)
    # A tiny queue and a slow consumer: offline replay must block, not drop.
    with FileReplay(clip, realtime=False, queue_size=2) as src:
        chunks = []
        for chunk in src:
            chunks.append(chunk)
            if len(chunks) % 10 == 0:
                time.sleep(0.01)
    assert src.ended and src.error is None
    video, audio = video_and_audio(chunks)
    assert len(video) == 3 * FPS
    for chunk in video:
        k = read_frame_index(chunk.data[0])
        assert chunk.start == pytest.approx(k / FPS, abs=1e-9)
        assert chunk.data.shape == (1, 240, 320, 3) and chunk.data.dtype == np.uint8
    assert [read_frame_index(c.data[0]) for c in video] == list(range(3 * FPS))
    # Audio: 16 kHz mono float32, contiguous stamps from 0, exactly the file's 3 s.
    assert all(c.rate == 16000 and c.data.dtype == np.float32 for c in audio)
    assert audio[0].start == 0.0
    for prev, nxt in zip(audio, audio[1:], strict=False):
        assert nxt.start == pytest.approx(prev.end, abs=1e-9)
    sound = np.concatenate([c.data for c in audio])
    assert len(sound) == 3 * 16000
    # Stamps match content: the tone of each 0.5 s bin sits inside that bin (a 50 ms shift fails).
    for b in range(6):
        window = sound[int((b * 0.5 + 0.05) * 16000) : int((b * 0.5 + 0.45) * 16000)]
        assert dominant_hz(window) == pytest.approx(clip_tone_hz(b * 0.5), abs=5)
    # The mono mix keeps the level of a tone on both channels (mean, not a -3 dB pan law).
    assert 0.28 < np.abs(sound).max() < 0.36
    counters = src.counters
    assert set(COUNTER_KEYS) <= set(counters)
    assert counters["frames"] == 48 and counters["samples"] == 48000
    assert counters["dropped_chunks"] == counters["corrupt_frames"] == counters["errors"] == 0


def test_replay_realtime_paces_and_stamps_like_offline(clip: Path) -> None:
    with FileReplay(clip, realtime=False, max_size=96) as fast:
        offline = list(fast)
    clock = StreamClock()
    started = time.monotonic()
    with FileReplay(clip, clock=clock, realtime=True, max_size=96) as src:
        live = collect(src, 0.0)
        assert src.join(6.0)
        live += src.poll()
    elapsed = time.monotonic() - started
    assert 2.9 < elapsed < 5.5  # paced (a 3 s clip); generous above for a busy machine
    assert sorted((c.kind, c.start, c.end) for c in live) == sorted(
        (c.kind, c.start, c.end) for c in offline
    )
    # Released when the clock reached the frame's time / the audio chunk's end, not before.
    for chunk in live:
        due = chunk.start if chunk.kind == "video" else chunk.end
        assert due - 1e-3 <= chunk.capture_time < due + 0.25
    assert next(c for c in live if c.kind == "video").data.shape[1:3] == (96, 128)


def test_replay_audio_only_mixes_channels_and_resamples(tmp_path: Path) -> None:
    # Stereo 44.1 kHz WAV: 700 Hz left, 1300 Hz right.
    path = tmp_path / "stereo.wav"
    rate, n = 44100, 44100
    t = np.arange(n) / rate
    left, right = 0.4 * np.sin(2 * np.pi * 700 * t), 0.4 * np.sin(2 * np.pi * 1300 * t)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate)
        stream.layout = "stereo"
        pcm = (np.stack([left, right], axis=1) * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
        frame.rate = rate
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    assert FileReplay(path).kinds() == ("audio",)
    with FileReplay(path, realtime=False, video=True) as src:
        chunks = list(src)
    assert {c.kind for c in chunks} == {"audio"}
    sound = np.concatenate([c.data for c in chunks])
    assert len(sound) == 16000
    spectrum = np.abs(np.fft.rfft(sound)) / (len(sound) / 2)
    assert spectrum[700] == pytest.approx(0.2, rel=0.05)  # each tone at half level: the mean
    assert spectrum[1300] == pytest.approx(0.2, rel=0.05)


def test_replay_loop_continues_the_stamps(short_clip: Path) -> None:
    src = FileReplay(short_clip, realtime=False, loop=True).start()
    video, audio = [], []
    for chunk in src:
        (video if chunk.kind == "video" else audio).append(chunk)
        if len(video) >= 2 * FPS + 4:
            break
    src.stop()
    starts = np.array([c.start for c in video])
    np.testing.assert_allclose(starts, np.arange(len(starts)) / FPS, atol=1e-9)
    assert [read_frame_index(c.data[0]) for c in video[FPS : FPS + 3]] == [0, 1, 2]
    audio_starts = [c.start for c in audio]
    assert audio_starts == sorted(audio_starts) and audio[-1].end > 2.0
    assert src.counters["loops"] >= 2 and src.ended


def test_replay_survives_a_corrupt_packet(tmp_path: Path, clip: Path) -> None:
    bad = tmp_path / "bad.mp4"
    corrupt_video_packet(clip, bad, index=20)  # inside the second 1 s GOP
    with FileReplay(bad, realtime=False) as src:
        chunks = list(src)
    assert src.ended and src.error is None
    counters = src.counters
    assert counters["corrupt_frames"] >= 1
    video, audio = video_and_audio(chunks)
    assert counters["frames"] == len(video) == 48 - counters["corrupt_frames"]
    # Frames before the damage and from the next key frame on are intact and exactly stamped.
    intact = [c for c in video if c.start < 1.0 or c.start >= 2.0]
    assert len(intact) == 32
    for chunk in intact:
        assert read_frame_index(chunk.data[0]) == round(chunk.start * FPS)
    assert video[-1].start == pytest.approx(47 / FPS)
    assert sum(len(c.data) for c in audio) == 48000
    # The camera path (decoding as fast as it can) counts and skips the same packet.
    with open_camera(str(bad), pace=False, reconnect=False, queue_size=100) as cam:
        assert cam.join(5.0)
    assert cam.error is None and cam.counters["corrupt_frames"] == counters["corrupt_frames"]
    assert read_frame_index(cam.poll()[-1].data[0]) == 47


def test_nan_frames_are_counted_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "float.mov"
    levels = exr_movie_with_nan(path)
    with FileReplay(path, realtime=False) as src:
        video = list(src)
    assert src.counters["nan_frames"] == 2 and src.error is None
    assert [round(c.start * FPS) for c in video] == [0, 1, 4, 5]
    for chunk in video:
        expected = round(levels[round(chunk.start * FPS)] * 255)
        assert np.abs(chunk.data.astype(int) - expected).max() <= 1
    # The camera path skips them the same way.
    with open_camera(str(path), reconnect=False) as cam:
        assert cam.join(3.0)
    assert cam.counters["nan_frames"] == 2 and cam.counters["frames"] == 4


def test_frame_conversion() -> None:
    assert target_size(1920, 1080, 292) == (519, 292)
    assert target_size(480, 640, 292) == (292, 389)
    assert target_size(160, 120, 292) == (160, 120)
    nan = np.full((8, 8, 3), 0.5, np.float32)
    nan[0, 0, 0] = np.nan
    with pytest.raises(BadFrame) as info:
        frame_to_rgb(av.VideoFrame.from_ndarray(nan, format="gbrpf32le"))
    assert info.value.reason == "nan"
    gray = av.VideoFrame.from_ndarray(np.full((8, 8), 0.25, np.float32), format="grayf32le")
    assert np.all(frame_to_rgb(gray) == 64)
    big = av.VideoFrame.from_ndarray(np.zeros((480, 640, 3), np.uint8), format="rgb24")
    assert frame_to_rgb(big, max_size=120).shape == (120, 160, 3)


# ----- camera -----
def test_lavfi_camera_runs_like_a_camera() -> None:
    clock = StreamClock()
    with open_camera("lavfi:testsrc=size=320x240:rate=25", clock=clock, max_size=120) as cam:
        chunks = collect(cam, 1.0)
        now = clock.now()
    assert 20 <= len(chunks) <= 28  # paced at 25 fps, not decoded as fast as possible
    assert all(c.kind == "video" and c.data.shape == (1, 120, 160, 3) for c in chunks)
    starts = np.array([c.start for c in chunks])
    np.testing.assert_allclose(np.diff(starts), 0.04, atol=1e-6)
    assert 0 <= starts[0] < 0.3 and starts[-1] <= now
    # read soon after its stamp (generous: a loaded machine delays the reading thread)
    assert all(0 <= c.capture_time - c.start < 1.0 for c in chunks)
    assert cam.ended and cam.error is None
    assert cam.counters["frames"] == len(chunks) and cam.counters["dropped_chunks"] == 0


def test_camera_that_ends_is_reopened_seamlessly() -> None:
    spec = "lavfi:testsrc=size=160x120:rate=25:duration=0.4"
    with open_camera(spec, reconnect=True) as cam:
        chunks = collect(cam, 1.5)
    assert cam.counters["reconnects"] >= 2
    starts = np.array([c.start for c in chunks])
    assert np.all(np.diff(starts) > 0) and np.diff(starts).max() < 0.1
    # Without reconnect the source ends on its own, cleanly.
    with open_camera(spec, reconnect=False) as cam:
        assert cam.join(2.0)
        chunks = cam.poll()
    assert cam.ended and cam.error is None and len(chunks) == 10
    assert cam.counters["reconnects"] == 0


def test_camera_drops_out_and_returns(tmp_path: Path, short_clip: Path) -> None:
    path = tmp_path / "camera.mp4"
    shutil.copy(short_clip, path)
    cam = open_camera(str(path), reconnect=True, backoff=(0.1, 0.2)).start()
    try:
        assert wait_for(lambda: cam.counters["frames"] >= 4, 2.0)
        path.unlink()  # the camera goes away: reopening fails until it is back
        assert wait_for(lambda: cam.counters["reconnect_failures"] >= 2, 4.0)
        before = cam.counters["frames"]
        assert not cam.ended
        shutil.copy(short_clip, path)
        assert wait_for(lambda: cam.counters["reconnects"] >= 1, 2.0)
        assert wait_for(lambda: cam.counters["frames"] >= before + 4, 2.0)
    finally:
        cam.stop()
    chunks = cam.poll()
    assert cam.error is None
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)


def test_camera_queue_drops_oldest_and_counts() -> None:
    with open_camera("lavfi:testsrc=size=64x48:rate=50", queue_size=4) as cam:
        time.sleep(0.6)  # the consumer is busy: capture must go on regardless
        chunks = cam.poll()
        counters = cam.counters
        now = cam.clock.now()
    assert len(chunks) == 4
    assert counters["chunks"] - counters["dropped_chunks"] == 4
    assert (
        counters["dropped_chunks"] >= 20
        and counters["dropped_frames"] == counters["dropped_chunks"]
    )
    assert now - chunks[-1].start < 0.1  # what is kept is the newest


def test_camera_max_fps_thins_frames() -> None:
    with open_camera("lavfi:testsrc=size=64x48:rate=25", max_fps=10) as cam:
        chunks = collect(cam, 1.0)
    assert 8 <= len(chunks) <= 12
    assert cam.counters["skipped_frames"] >= 10
    assert np.diff([c.start for c in chunks]).min() > 0.07


@pytest.mark.parametrize(
    ("spec", "url", "fmt", "paced"),
    [
        ("0", "/dev/video0", "v4l2", False),
        ("/dev/video2", "/dev/video2", "v4l2", False),
        ("v4l2:/dev/video1", "/dev/video1", "v4l2", False),
        ("lavfi:testsrc=rate=16", "testsrc=rate=16", "lavfi", True),
        ("rtsp://10.0.0.2/live", "rtsp://10.0.0.2/live", None, False),
        ("http://host/clip.mp4", "http://host/clip.mp4", None, None),
        ("x11grab::0.0", ":0.0", "x11grab", False),
        ("clip.mp4", "clip.mp4", None, None),
    ],
)
def test_parse_camera_spec(spec: str, url: str, fmt: str | None, paced: bool | None) -> None:
    parsed = parse_camera_spec(spec)
    assert (parsed.url, parsed.format, parsed.paced) == (url, fmt, paced)
    if spec.startswith("rtsp"):
        assert parsed.options == {"rtsp_transport": "tcp"}


def test_camera_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"/dev/video99.*lavfi:testsrc"):
        open_camera("/dev/video99").start()
    with pytest.raises(SourceError, match="nosuchfilter"):
        open_camera("lavfi:nosuchfilter=x").start()
    with pytest.raises(SourceError, match="no such file"):
        open_camera(str(tmp_path / "missing.mp4")).start()
    with pytest.raises(SourceError, match="no such file"):
        FileReplay(tmp_path / "missing.mp4").start()
    wav = tmp_path / "tone.wav"
    with av.open(str(wav), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.int16), format="s16")
        frame.rate = 16000
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with pytest.raises(SourceError, match="no video stream"):
        open_camera(str(wav)).start()
    with pytest.raises(SourceError, match="no video stream"):
        FileReplay(wav, video=True, audio=False).start()
