"""Demo extractor weights, the model-folder resolution (folder / HF cache / hub id), and
`tribe-stream extract` on real media files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import av
import numpy as np
import pytest

from tribe_stream.errors import CheckpointError
from tribe_stream.extractors.asr import asr_available
from tribe_stream.extractors.demo import DEMO_SHAPE, build_demo_extractors, load_demo_extractors
from tribe_stream.extractors.offline import read_words, write_words
from tribe_stream.extractors.video import VideoExtractor
from tribe_stream.resolve import model_dir as resolve_model_dir
from tribe_stream.types import Word


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tribe_stream.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def write_media(path, seconds: float, video: bool = True, audio: np.ndarray | None = None) -> None:
    """An .mp4 (moving bar at 16 fps, AAC audio) or, without video, a .wav."""
    with av.open(str(path), "w") as out:
        vs = None
        if video:
            vs = out.add_stream("libx264", rate=16)
            vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        if audio is not None:
            a_s = out.add_stream("aac" if video else "pcm_s16le", rate=16000, layout="mono")
        if vs is not None:
            for i in range(int(seconds * 16)):
                img = np.zeros((48, 64, 3), np.uint8)
                img[:, (i * 3) % 54 :][:, :10] = 255
                for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(p)
            for p in vs.encode():
                out.mux(p)
        if audio is not None:
            pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
            for i in range(0, len(pcm), 1024):
                frame = av.AudioFrame.from_ndarray(
                    pcm[None, i : i + 1024], format="s16", layout="mono"
                )
                frame.sample_rate = 16000
                for p in a_s.encode(frame):
                    out.mux(p)
            for p in a_s.encode():
                out.mux(p)


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 330 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))).astype(
        np.float32
    )


def test_demo_models_are_deterministic_quick_and_load_like_real_ones(tmp_path):
    t0 = time.perf_counter()
    a = build_demo_extractors(tmp_path / "a")
    elapsed = time.perf_counter() - t0
    b = build_demo_extractors(tmp_path / "b")
    assert elapsed < 10.0
    for m in ("text", "audio", "video"):
        assert (a[m] / "model.safetensors").read_bytes() == (
            b[m] / "model.safetensors"
        ).read_bytes()
    assert (a.text / "tokenizer.json").read_bytes() == (b.text / "tokenizer.json").read_bytes()
    extractors = load_demo_extractors(tmp_path / "a")
    assert {m: e.shape for m, e in extractors.items()} == {
        m: DEMO_SHAPE for m in ("text", "audio", "video")
    }


def test_hf_cache_entries_and_hub_ids(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    demo = build_demo_extractors(tmp_path / "demo")
    snap = tmp_path / "hub" / "models--tribe-test--tiny-video" / "snapshots" / ("0" * 40)
    shutil.copytree(demo.video, snap)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    assert resolve_model_dir("tribe-test/tiny-video") == snap
    assert VideoExtractor.from_pretrained("tribe-test/tiny-video", device="cpu").shape == DEMO_SHAPE
    with pytest.raises(CheckpointError, match="huggingface-cli download tribe-test/absent"):
        resolve_model_dir("tribe-test/absent")
    with pytest.raises(CheckpointError, match="no config.json"):
        resolve_model_dir(tmp_path)
    with pytest.raises(CheckpointError, match="neither an existing folder nor a hub id"):
        resolve_model_dir("./no/such/folder")


def test_words_tsv_round_trip(tmp_path):
    words = [Word("Hello,", 0.25, 0.3), Word("world.", 0.6, 0.45)]
    write_words(tmp_path / "w.tsv", words)
    assert read_words(tmp_path / "w.tsv") == [Word("Hello,", 0.25, 0.3), Word("world.", 0.6, 0.45)]


def test_extract_command_writes_the_brain_models_input(tmp_path):
    media = tmp_path / "clip.mp4"
    write_media(media, 4.0, video=True, audio=tone(4.0))
    write_words(tmp_path / "words.tsv", [Word("hello", 0.5, 0.4), Word("there", 2.6, 0.3)])
    out = tmp_path / "features.npz"
    r = cli(
        "extract",
        str(media),
        "--out",
        str(out),
        "--checkpoint",
        "demo",
        "--transcript",
        str(tmp_path / "words.tsv"),
    )
    assert r.returncode == 0, r.stderr
    with np.load(out) as z:
        feats = {k: z[k] for k in z.files}
    assert set(feats) == {"text", "audio", "video"}
    assert all(v.shape == (*DEMO_SHAPE, 8) and v.dtype == np.float32 for v in feats.values())
    assert np.flatnonzero(np.abs(feats["text"]).sum(axis=(0, 1))).tolist() == [
        1,
        5,
    ]  # empty bins: zeros
    assert feats["video"].std(axis=-1).mean() > 0 and np.isfinite(feats["audio"]).all()
    # --video-fp8: the same file's video features with FP8 matrix products, close to full precision
    out8 = tmp_path / "features-fp8.npz"
    args = ("extract", str(media), "--checkpoint", "demo", "--modalities", "video", "--no-asr")
    r = cli(*args, "--out", str(out8), "--video-fp8")
    assert r.returncode == 0, r.stderr
    with np.load(out8) as z:
        v8 = z["video"]
    err = np.abs(v8 - feats["video"]).max() / np.abs(feats["video"]).max()
    assert 0 < err < 5e-2, err


def test_audio_only_file_leaves_video_absent(tmp_path):
    media = tmp_path / "tone.wav"
    write_media(media, 3.0, video=False, audio=tone(3.0))
    out = tmp_path / "features.npz"
    r = cli("extract", str(media), "--out", str(out), "--checkpoint", "demo", "--no-asr")
    assert r.returncode == 0, r.stderr
    with np.load(out) as z:
        assert z.files == ["audio"] and z["audio"].shape == (*DEMO_SHAPE, 6)
    assert "video features absent: the file has no video stream" in r.stderr
    bad = cli("extract", str(tmp_path / "missing.mp4"), "--out", str(out), "--checkpoint", "demo")
    assert bad.returncode == 2 and "no such file" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.skipif(
    asr_available() is not None or shutil.which("espeak-ng") is None,
    reason=str(asr_available() or "espeak-ng is not installed"),
)
def test_extract_recognises_speech_for_the_text_features(tmp_path):
    wav = tmp_path / "speech.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(wav), "The quick brown fox jumps over the lazy dog."], check=True
    )
    out, words = tmp_path / "f.npz", tmp_path / "words.tsv"
    r = cli(
        "extract", str(wav), "--out", str(out), "--checkpoint", "demo", "--save-words", str(words)
    )
    assert r.returncode == 0, r.stderr
    recognised = read_words(words)
    assert {"quick", "fox", "lazy"} <= {w.text.lower().strip(".,") for w in recognised}
    with np.load(out) as z:
        assert set(z.files) == {"text", "audio"}
        text = z["text"]
    busy = np.flatnonzero(np.abs(text).sum(axis=(0, 1)))
    assert busy.min() == round(2 * recognised[0].onset) and len(busy) >= len(recognised) // 2
