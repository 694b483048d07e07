"""The sound w2v-BERT hears, against what the official pipeline made of the same files
(`tests/fixtures/official/audio.npz`, made by `tools/make_official_fixtures_audio.py` with
neuralset 0.0.2: a video's sound written out by moviepy as a 44.1 kHz 16-bit stereo WAV, an audio
file read at its own 48 kHz; both resampled to 16 kHz by julius, then the channel mean)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tribe_stream import AUDIO_RATE
from tribe_stream.media import (
    VIDEO_SOUND,
    ArrayResampler,
    lay_out,
    read_audio,
    read_sound,
    resample_sound,
)
from tribe_stream.sources.replay import FileReplay

OFFICIAL = Path(__file__).parent / "fixtures" / "official"
WAV_SLICE = slice(9000, 11000)  # as in tools/make_official_fixtures_audio.py
AAC_SLICE = slice(21000, 23500)


@pytest.fixture(scope="module")
def official():
    with np.load(OFFICIAL / "audio.npz") as z:
        return {k: z[k] for k in z.files}


def test_a_videos_sound_is_read_as_moviepy_writes_it(official):
    """The official path writes a video's sound as a 44.1 kHz 16-bit stereo WAV before anything
    hears it; we convert it the same way (libswresample to s16 stereo 44.1 kHz), sample for
    sample, where we used to go straight to 16 kHz."""
    sound = read_sound(OFFICIAL / "sound48k.mkv")
    assert sound.rate == VIDEO_SOUND.rate == 44100
    assert len(sound.samples) == int(official["video_wav_frames"])
    want = (official["video_wav"].astype(np.float32) / 32768.0).mean(axis=1)  # kept mono
    np.testing.assert_array_equal(sound.samples[WAV_SLICE], want)


@pytest.mark.parametrize(
    "name,key", [("sound48k.mkv", "video_16k"), ("sound48k.flac", "audio_16k")]
)
def test_16khz_sound_equals_the_official_julius_resampling(official, name, key):
    """libswresample's low-pass left the waveform 1.2 % away from julius's, nearly all of it
    above 7 kHz (this sound has a chirp up to 12 kHz and a 7.3 kHz tone)."""
    ours = read_audio(OFFICIAL / name)
    want = official[key]
    assert ours.shape == want.shape
    np.testing.assert_allclose(ours, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "name,key", [("sound48k.mkv", "video_16k"), ("sound48k.flac", "audio_16k")]
)
def test_replay_streams_the_same_16khz_samples(official, name, key):
    """File replay resamples block by block (`StreamResampler`): the same samples as offline."""
    with FileReplay(OFFICIAL / name, realtime=False, video=False) as src:
        chunks = [c for c in src if c.kind == "audio"]
    live = lay_out([(c.start, c.data) for c in chunks])
    np.testing.assert_allclose(live, official[key], rtol=0, atol=1e-6)


def test_block_by_block_resampling_equals_one_piece():
    """A microphone's blocks of any size give what the whole recording resampled at once gives."""
    rng = np.random.default_rng(3)
    for rate in (44100, 48000, 22050, 8000):
        x = rng.standard_normal((rate * 2 + 123, 2)).astype(np.float32)
        r = ArrayResampler(rate)
        parts, i = [], 0
        while i < len(x):
            n = int(rng.integers(1, 3000))
            parts.append(r.push(x[i : i + n]))
            i += n
        parts.append(r.flush())
        streamed = np.concatenate(parts)
        whole = resample_sound(x, rate)
        assert len(whole) == (len(x) * AUDIO_RATE) // rate
        np.testing.assert_array_equal(streamed, whole)


def test_an_aac_streams_padding_is_dropped_and_the_reader_length_kept(official):
    """AAC pads past its stream's end; the FFmpeg under the official reader stops at the stream's
    duration and moviepy writes zeros up to int(44100 x its duration): we had 294 samples of
    padding there (1.7e-3 on the harness's clip) and a shorter sound."""
    sound = read_sound(OFFICIAL / "sound48k_aac.mp4")
    assert len(sound.samples) == int(official["aac_wav_frames"])
    want = (official["aac_wav_end"].astype(np.float32) / 32768.0).mean(axis=1)
    np.testing.assert_allclose(sound.samples[AAC_SLICE], want, rtol=0, atol=2e-4)
