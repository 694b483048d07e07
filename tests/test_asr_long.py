"""Speech recognition over whole recordings, for real (espeak-ng speaks, faster-whisper listens):
word times right at the end of a long recording as at its start, and no words from non-speech."""

from __future__ import annotations

import difflib
import shutil
import subprocess

import numpy as np
import pytest

from tribe_stream import AUDIO_RATE
from tribe_stream.extractors.asr import (
    WhisperASR,
    asr_available,
    merge_regions,
    normalise,
    pad_regions,
    place_words,
    words_text,
)
from tribe_stream.media import read_audio
from tribe_stream.sources.clip import clip_audio

REASON = asr_available() or (
    None if shutil.which("espeak-ng") else "espeak-ng is not installed (apt-get install espeak-ng)"
)
needs_asr = pytest.mark.skipif(REASON is not None, reason=str(REASON))

SENTENCES = [
    "The morning train left the station on time.",
    "A small bird sang outside the kitchen window.",
    "Please bring the blue folder to the meeting.",
    "Rain fell softly on the roof all night.",
    "She painted the old fence a bright yellow.",
    "Seven children played football in the park.",
    "My brother bought fresh bread at the market.",
    "Heavy snow closed the mountain road again.",
    "The doctor smiled and opened the door.",
    "Our teacher read a story about a dragon.",
    "Green apples grow on the tree behind the house.",
    "Nobody answered the phone in the office.",
    "Tomorrow we will visit my grandmother.",
    "Large ships sailed slowly into the harbour.",
    "The cat slept all afternoon in the sun.",
    "Music played quietly in the empty hall.",
    "We walked home slowly under the summer stars.",
    "His old car would not start this morning.",
    "The baker sold every cake before noon.",
    "Bright lights filled the city at night.",
    "They planted roses along the garden wall.",
    "The last bus leaves at eleven tonight.",
]
EVERY_S = 7.0  # a sentence (about 2.5 s) every 7 s from 3 s: the last one starts at 150 s
FIRST_S = 3.0
OFFSET = 12.5  # the recording starts 12.5 s into the stream: added once to every word


@pytest.fixture(scope="module")
def asr() -> WhisperASR:
    return WhisperASR(cpu_threads=2)


def sound_span(x: np.ndarray) -> tuple[float, float]:
    """First and last sample (s) where a 10 ms mean of |x| exceeds 1% of full scale."""
    on = np.flatnonzero(np.convolve(np.abs(x), np.ones(160) / 160, mode="same") > 0.01)
    return on[0] / AUDIO_RATE, on[-1] / AUDIO_RATE


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory):
    """156 s: each sentence placed at a known time, silence between; the known start and end of
    each sentence's sound (where it was placed plus the leading silence of its WAV)."""
    folder = tmp_path_factory.mktemp("long")
    starts = [FIRST_S + EVERY_S * i for i in range(len(SENTENCES))]
    audio = np.zeros(round((starts[-1] + 6.0) * AUDIO_RATE), np.float32)
    known = []
    for i, (sentence, t0) in enumerate(zip(SENTENCES, starts, strict=True)):
        wav = folder / f"s{i}.wav"
        subprocess.run(["espeak-ng", "-s", "160", "-w", str(wav), sentence], check=True)
        x = read_audio(wav)  # espeak-ng's 22.05 kHz resampled to 16 kHz
        a = round(t0 * AUDIO_RATE)
        audio[a : a + len(x)] += x
        lead, tail = sound_span(x)
        known.append((t0 + lead, t0 + tail))
    return audio, starts, known


@needs_asr
def test_word_times_hold_over_a_long_recording(asr, long_speech):
    audio, starts, known = long_speech
    assert len(audio) / AUDIO_RATE >= 150
    words = asr.transcribe(audio, offset=OFFSET)  # VAD on: the default
    text = " ".join(normalise(w) for s in SENTENCES for w in s.split())
    assert difflib.SequenceMatcher(None, words_text(words).split(), text.split()).ratio() > 0.85
    onset_errors, end_errors = [], []
    for i, (k0, k1) in enumerate(known):
        # the words heard from 2 s before this sentence's start to 2 s before the next one's
        slot = [w for w in words if starts[i] - 2 <= w.onset - OFFSET < starts[i] - 2 + EVERY_S]
        assert len(slot) >= 5, (i, slot)
        onset_errors.append(slot[0].onset - OFFSET - k0)
        end_errors.append(slot[-1].onset + slot[-1].duration - OFFSET - k1)
    onset_errors, end_errors = np.array(onset_errors), np.array(end_errors)
    report = f"onset errors {np.round(onset_errors, 2)}, end errors {np.round(end_errors, 2)}"
    print(report)
    # every sentence's first word starts with its sound and its last word ends with it, at
    # 150 s as at 3 s (measured: onsets within 0.07 s, ends within 0.25 s; faster-whisper's own
    # VAD restore was up to 0.9 s off, and put one first word 7 s early)
    assert np.abs(onset_errors).max() < 0.3, report
    assert np.abs(end_errors).max() < 0.35, report
    assert abs(onset_errors[-5:].mean() - onset_errors[:5].mean()) < 0.1, report  # no drift
    # and no word lies in the silences between the sentences
    for w in words:
        t0, t1 = w.onset - OFFSET, w.onset + w.duration - OFFSET
        assert any(k0 - 0.3 <= t0 and t1 <= k1 + 0.3 for k0, k1 in known), w
        assert w.duration >= 0


@needs_asr
def test_tones_and_noise_give_no_words(asr):
    """The demo clip's stepped tones with its noise over 240 s, plus a loud 2 s noise burst every
    20 s: nothing is speech, so nothing is a word (without VAD, Whisper fills such stretches)."""
    x = clip_audio(240 * AUDIO_RATE, AUDIO_RATE)
    rng = np.random.default_rng(7)
    for k in range(12):
        a = (20 * k + 9) * AUDIO_RATE
        x[a : a + 2 * AUDIO_RATE] += 0.2 * rng.standard_normal(2 * AUDIO_RATE).astype(np.float32)
    assert asr.vad is True  # on by default
    assert asr.transcribe(x) == []


def test_words_are_placed_on_speech():
    """`place_words` on a made-up joined timeline: two chunks of the recording, 2-6 s and
    12-16 s, each with speech 0.4 s inside its edges."""
    speech = [(2.4, 5.6), (12.4, 15.6)]
    chunks = pad_regions(merge_regions(speech, 2.0), 0.4, 20.0)
    assert chunks == [(2.0, 6.0), (12.0, 16.0)]
    joined = [
        ("one", 0.1, 0.9),  # starts in the padding: moves to where speech starts
        ("two", 3.0, 3.9),  # ends in the padding: ends where speech ends
        ("three", 3.5, 4.6),  # across the join, speech only after it: in the second chunk
        ("four", 4.7, 5.0),  # inside speech: just shifted
        ("five", 7.7, 7.9),  # in the last padding with no speech under it: left as it is
    ]
    placed = place_words(joined, chunks, speech)
    expected = [
        ("one", 2.4, 2.9),
        ("two", 5.0, 5.6),
        ("three", 12.4, 12.6),
        ("four", 12.7, 13.0),
        ("five", 15.7, 15.9),
    ]
    assert [w[0] for w in placed] == [w[0] for w in expected]
    for got, want in zip(placed, expected, strict=True):
        assert got[1:] == pytest.approx(want[1:], abs=1e-9), got
    # regions closer than two pads meet halfway; merging joins gaps under the given length
    assert pad_regions([(1.0, 2.0), (2.5, 3.0)], 0.4, 3.2) == [(0.6, 2.25), (2.25, 3.2)]
    assert merge_regions([(1.0, 2.0), (3.0, 4.0), (7.0, 8.0)], 2.0) == [(1.0, 4.0), (7.0, 8.0)]
