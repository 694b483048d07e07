"""A synthetic audio-visual clip made with PyAV, for the demo and the tests.

Picture: scrolling colour bars, a bouncing disc, and a strip spelling the frame index in binary
(`read_frame_index` reads it back, even after compression and downscaling). Sound: a tone whose
pitch steps every 0.5 s (`clip_tone_hz`) over quiet noise. All a pure function of time, so a
consumer can check what it received against what was written.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from tribe_stream import AUDIO_RATE
from tribe_stream.errors import InputError
from tribe_stream.media import read_audio

CODE_BITS = 16
"""Bits in the frame-index code strip (indices wrap at 65,536 frames)."""

TONE_STEPS_HZ = (300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0, 1000.0)
"""The tone's pitch in successive 0.5 s steps (then it repeats)."""


def clip_tone_hz(t: float) -> float:
    """Pitch of the clip's tone at media time `t` seconds."""
    return TONE_STEPS_HZ[int(np.floor(t * 2)) % len(TONE_STEPS_HZ)]


def clip_frame(index: int, fps: float, width: int, height: int) -> np.ndarray:
    """RGB uint8 `(height, width, 3)` picture of frame `index`."""
    t = index / fps
    strip = max(8, height // 6)
    scene_h = height - strip
    x = np.arange(width)
    # Eight colour bars scrolling right at 40 px/s, hue turning one step every 2 s.
    bar = ((x + int(40 * t)) * 8 // max(width, 1)) % 8
    palette = _bar_palette(int(t // 2))
    img = np.empty((height, width, 3), np.uint8)
    img[:scene_h] = palette[bar][None, :, :]
    # A white disc bouncing left-right (triangle wave) and up-down (sine).
    radius = max(3, min(width, scene_h) // 8)
    span_x = max(1, width - 2 * radius)
    phase = (t * 0.6) % 2.0
    cx = radius + span_x * (phase if phase < 1 else 2 - phase)
    cy = scene_h / 2 + (scene_h / 2 - radius) * np.sin(2 * np.pi * 0.4 * t)
    yy, xx = np.ogrid[:scene_h, :width]
    img[:scene_h][(xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2] = 255
    # Code strip: CODE_BITS cells, most significant first, white = 1.
    img[scene_h:] = 0
    cell = width / CODE_BITS
    for bit in range(CODE_BITS):
        if (index >> (CODE_BITS - 1 - bit)) & 1:
            x0, x1 = round(bit * cell + cell * 0.15), round((bit + 1) * cell - cell * 0.15)
            img[scene_h + strip // 5 : height - strip // 5, x0:x1] = 255
    return img


def read_frame_index(rgb: np.ndarray) -> int:
    """The frame index spelled by the code strip of a (possibly downscaled) clip frame."""
    height, width = rgb.shape[:2]
    row = rgb[height - max(1, height // 12), :, :].mean(axis=1)
    value = 0
    for bit in range(CODE_BITS):
        centre = int((bit + 0.5) * width / CODE_BITS)
        value = (value << 1) | int(row[centre] > 127)
    return value


def clip_audio(n_samples: int, rate: int) -> np.ndarray:
    """Mono float32 sound track of `n_samples` samples at `rate` Hz."""
    t = np.arange(n_samples) / rate
    step = np.floor(t * 2).astype(np.int64)
    freqs = np.asarray(TONE_STEPS_HZ)[step % len(TONE_STEPS_HZ)]
    # Phase-continuous: phase at the start of step b is the integral of the earlier steps.
    n_steps = int(step[-1]) + 1 if n_samples else 0
    step_f = np.asarray(TONE_STEPS_HZ)[np.arange(n_steps) % len(TONE_STEPS_HZ)]
    start_phase = np.concatenate([[0.0], np.cumsum(step_f * 0.5)])[:n_steps]
    phase = start_phase[step] + freqs * (t - step * 0.5) if n_samples else t
    noise = np.random.default_rng(0).standard_normal(n_samples) * 0.01
    return (0.3 * np.sin(2 * np.pi * phase) + noise).astype(np.float32)


SPEECH_FILE = Path(__file__).resolve().parent.parent / "data" / "demo-speech.flac"
"""espeak-ng saying "The quick brown fox jumps over the lazy dog. Every second, the model
predicts the brain." (16 kHz mono FLAC, kept in the package)."""
SPEECH_START_S = 1.0
SPEECH_EVERY_S = 9.0


def speech_track(n_samples: int, rate: int) -> np.ndarray:
    """The demo sentence at `rate` Hz from `SPEECH_START_S`, repeated every `SPEECH_EVERY_S`."""
    voice = read_audio(SPEECH_FILE)
    if rate != AUDIO_RATE:  # linear interpolation is plenty for a spoken sentence
        t = np.arange(round(len(voice) * rate / AUDIO_RATE)) * (AUDIO_RATE / rate)
        voice = np.interp(t, np.arange(len(voice)), voice).astype(np.float32)
    out = np.zeros(n_samples, np.float32)
    start = SPEECH_START_S
    while round(start * rate) < n_samples:
        i = round(start * rate)
        piece = voice[: n_samples - i]
        out[i : i + len(piece)] += piece
        start += SPEECH_EVERY_S
    return out


def make_clip(
    path: str | Path,
    seconds: float = 8.0,
    *,
    fps: int = 16,
    width: int = 320,
    height: int = 240,
    audio_rate: int = 44100,
    channels: int = 2,
    video_codec: str | None = None,
    speech: bool = False,
) -> Path:
    """Write the clip as an mp4 (H.264 or MPEG-4 video, AAC audio) and return its path.

    `speech=True` (the demo's clip) lays a spoken sentence over the tone, from 1 s and again
    every `SPEECH_EVERY_S`: so speech recognition and the text features have something to hear. About 0.1 s of work per second of 320x240 clip
    on one core; the result depends only on the arguments (and the FFmpeg build).
    """
    if seconds <= 0 or fps <= 0 or width < 32 or height < 32:
        raise InputError(
            f"cannot make a {seconds} s, {fps} fps, {width}x{height} clip: "
            "use seconds > 0, fps > 0 and at least 32x32 pixels"
        )
    if channels not in (1, 2):
        raise InputError(f"clip audio has 1 or 2 channels, not {channels}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = video_codec or ("libx264" if "libx264" in av.codecs_available else "mpeg4")
    width, height = width - width % 2, height - height % 2
    n_frames = round(seconds * fps)
    n_samples = round(seconds * audio_rate)
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        # One thread and no macroblock-tree rate control: x264 then gives the same bytes each run.
        video.codec_context.thread_count = 1
        if "264" in codec:
            video.options = {
                "g": str(fps),
                "crf": "18",
                "preset": "veryfast",
                "x264-params": "mbtree=0",
            }
        else:
            video.bit_rate = 2_000_000
            video.codec_context.gop_size = fps
        audio = out.add_stream("aac", rate=audio_rate)
        audio.layout = "mono" if channels == 1 else "stereo"
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(clip_frame(i, fps, width, height), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        sound = clip_audio(n_samples, audio_rate)
        if speech:
            sound = 0.4 * sound + speech_track(n_samples, audio_rate)
        block = 1024
        for start in range(0, n_samples, block):
            part = sound[start : start + block]
            planes = np.repeat(part[None, :], channels, axis=0)
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(planes), format="fltp", layout=audio.layout.name
            )
            frame.rate, frame.pts = audio_rate, start
            out.mux(audio.encode(frame))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    return path


def _bar_palette(turn: int) -> np.ndarray:
    base = np.array(
        [
            [235, 235, 235],
            [235, 235, 16],
            [16, 235, 235],
            [16, 235, 16],
            [235, 16, 235],
            [235, 16, 16],
            [16, 16, 235],
            [60, 60, 60],
        ],
        np.uint8,
    )
    return np.roll(base, turn % 8, axis=0)
