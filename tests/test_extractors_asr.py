"""Speech recognition for real: espeak-ng speaks, faster-whisper (Whisper base from PyPI) listens.
Also text to speech (`tribe_stream.speech`): a story as text becomes speech the recogniser hears."""

from __future__ import annotations

import difflib
import hashlib
import shutil
import subprocess
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from tribe_stream.errors import CheckpointError, InputError
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
from tribe_stream.speech import speak_text

SENTENCE = "The quick brown fox jumps over the lazy dog. Then the dog went home and slept until the morning."
REASON = asr_available() or (
    None if shutil.which("espeak-ng") else "espeak-ng is not installed (apt-get install espeak-ng)"
)
needs_asr = pytest.mark.skipif(REASON is not None, reason=str(REASON))


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


@pytest.fixture(scope="module")
def offline(asr, speech) -> list:
    return asr.transcribe(speech, offset=2.0)


def sounding(speech: np.ndarray) -> np.ndarray:
    """Per sample: inside speech (a 50 ms mean of |x| above 1% of full scale)."""
    return np.convolve(np.abs(speech), np.ones(800) / 800, mode="same") > 0.01


def sentence_pause(speech: np.ndarray) -> tuple[float, float]:
    """Start and end (s) of the longest silence between the first and last sound: espeak-ng's
    pause between the two sentences."""
    on = np.flatnonzero(sounding(speech))
    gaps = np.diff(on)
    i = int(np.argmax(gaps))
    assert gaps[i] > 0.2 * 16000, "espeak-ng made no pause between the sentences"
    return on[i] / 16000, on[i + 1] / 16000


@needs_asr
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
    data = [
        Path(next(iter(find_spec(n).submodule_search_locations))) / "data" for n in PART_PACKAGES
    ]
    pieces = [data[0] / "model.bin.part1", data[1] / "model.bin.part2"]
    # The bytes of part 1 then part 2 (same size in the other order would still be garbage).
    joined = hashlib.sha256()
    for piece in pieces:
        joined.update(piece.read_bytes())
    assert hashlib.sha256(model.read_bytes()).digest() == joined.digest()
    assert (first / "config.json").read_bytes() == (data[0] / "config.json").read_bytes()
    # Joined once: a second call finds the model and leaves it alone...
    assert resolve_whisper_model(cache_dir=tmp_path) == first and model.stat().st_mtime_ns == stamp
    # ...but a half-written one (another size) is joined again, whole.
    model.write_bytes(b"truncated")
    assert resolve_whisper_model(cache_dir=tmp_path) == first
    assert model.stat().st_size == sum(p.stat().st_size for p in pieces)
    assert [p.name for p in tmp_path.iterdir()] == ["whisper-base-ct2"]  # no temporary left over
    with pytest.raises(CheckpointError, match="model.bin"):
        resolve_whisper_model(tmp_path / "nowhere")


@needs_asr
def test_offline_words_and_times(offline, speech):
    words = offline
    duration = len(speech) / 16000
    assert similarity(words_text(words), " ".join(normalise(w) for w in SENTENCE.split())) > 0.8
    onsets = np.array([w.onset for w in words])
    assert (np.diff(onsets) > 0).all() and all(w.duration > 0 for w in words)
    # On the recording's clock shifted by the offset: the first word starts with the first sound,
    # the last one ends with the last sound (espeak-ng starts speaking at once).
    on = np.flatnonzero(sounding(speech)) / 16000
    assert abs(words[0].onset - (2.0 + on[0])) < 0.3
    assert abs(words[-1].onset + words[-1].duration - (2.0 + on[-1])) < 0.3
    # The pause between the sentences falls between "dog." and the next word.
    pause_start, pause_end = sentence_pause(speech)
    k = next(i for i, w in enumerate(words) if normalise(w.text) == "dog")
    assert words[k].onset + words[k].duration - 2.0 < (pause_start + pause_end) / 2
    assert words[k + 1].onset - 2.0 > pause_start
    # espeak-ng speaks at an even pace: each word sits near its share of the sentence, on sound
    rms = np.sqrt(np.mean(speech**2))
    for i, w in enumerate(words):
        assert abs((w.onset - 2.0) / duration - i / len(words)) < 0.2, w
        a, b = int((w.onset - 2.0) * 16000), int((w.onset - 2.0 + w.duration) * 16000)
        assert np.sqrt(np.mean(speech[a:b] ** 2)) > 0.2 * rms, w


@needs_asr
def test_live_words_are_stable_prefixes_emitted_once(asr, speech, offline):
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
    assert similarity(words_text(words), words_text(offline)) > 0.8
    onsets = [w.onset for w in words]
    assert onsets == sorted(onsets) and len(set(onsets)) == len(onsets)  # each word once, in order
    # On the stream clock: the same words at the offline times, shifted from offset 2 s to 10 s
    # (a pass's first word may stretch back over a pause, so look at the typical word).
    match = difflib.SequenceMatcher(
        None, [normalise(w.text) for w in words], [normalise(w.text) for w in offline]
    )
    shifts = [
        words[b.a + j].onset - (offline[b.b + j].onset + 8.0)
        for b in match.get_matching_blocks()
        for j in range(b.size)
    ]
    assert len(shifts) >= 0.8 * len(offline)
    assert np.median(np.abs(shifts)) < 0.1 and np.max(np.abs(shifts)) < 0.6, shifts
    # A word is emitted after it was heard, and not much later.
    lags = [t - (w.onset + w.duration) for t, w in emitted[:during]]
    assert min(lags) >= 0.0 and max(lags) < 2.0 + 2.5 + 1.5  # step + max lag + one pass
    assert live.counters.words == len(words) and live.counters.passes >= 3
    assert live.counters.gap_seconds == 0.0 and live.counters.trimmed_seconds == 0.0


@needs_asr
def test_noise_gives_no_words(asr):
    # Whisper base (beam 5) hears a lone " ." in this noise: punctuation alone is not a word.
    noise = (0.003 * np.random.default_rng(0).standard_normal(3 * 16000)).astype(np.float32)
    assert asr.transcribe(noise) == []


STORY = (
    "Once upon a time a young fox lived near the river.\n"
    "Every morning she ran across the green hills to find her breakfast.\n"
    "One day she met an old turtle, who told her a secret about the forest."
)


@needs_asr
def test_a_story_becomes_speech_the_recogniser_hears(asr, tmp_path):
    story = tmp_path / "story.txt"
    story.write_text(STORY, encoding="utf-8")
    wav = speak_text(story, tmp_path / "story.wav")
    assert wav == tmp_path / "story.wav" and sorted(p.name for p in tmp_path.iterdir()) == [
        "story.txt",
        "story.wav",
    ]  # written atomically: nothing else left behind
    audio = read_audio(wav)
    assert 8 < len(audio) / 16000 < 30  # three sentences at 160 words a minute
    heard = [normalise(w.text) for w in asr.transcribe(audio)]
    said = [normalise(w) for w in STORY.split()]
    found = sum(w in heard for w in said)
    assert found >= 0.8 * len(said), (found, len(said), heard)
    # the text itself works too, and a line break inside a sentence is a space
    short = speak_text("The quick brown\nfox jumps.", tmp_path / "short.wav")
    assert {"quick", "brown", "fox"} <= {
        normalise(w.text) for w in asr.transcribe(read_audio(short))
    }


def test_speaking_refuses_bad_input_in_one_line(tmp_path, monkeypatch):
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n\t\n")
    binary = tmp_path / "clip.txt"
    binary.write_bytes(b"\x00\x01RIFF" + bytes(200))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Un café.".encode("latin-1"))
    good = tmp_path / "good.txt"
    good.write_text("Hello there.")
    cases = [
        ((empty, tmp_path / "a.wav"), "is empty: there is no text to speak"),
        ((str(tmp_path / "absent.txt"), tmp_path / "a.wav"), "absent.txt does not exist"),
        ((binary, tmp_path / "a.wav"), "is a binary file, not text"),
        ((latin, tmp_path / "a.wav"), "is not UTF-8 text (byte 6); re-save it as UTF-8"),
        (("   ", tmp_path / "a.wav"), "the text to speak is empty"),
        ((good, tmp_path / "a.mp3"), "speech is written as .wav, not a.mp3"),
        ((good, tmp_path / "nowhere" / "a.wav"), "cannot write"),
    ]
    if shutil.which("espeak-ng"):
        cases.append(((good, tmp_path / "a.wav", "nosuchvoice"), "check the voice name"))
    for args, message in cases:
        text, out, *voice = args
        with pytest.raises(InputError) as info:
            speak_text(text, out, voice=voice[0] if voice else None)
        assert message in str(info.value) and "\n" not in str(info.value), (args, info.value)
    assert not (tmp_path / "a.wav").exists()
    # without espeak-ng: what to install, in one line
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InputError) as info:
        speak_text(good, tmp_path / "a.wav")
    assert "apt-get install espeak-ng, or brew install espeak-ng" in str(info.value)
