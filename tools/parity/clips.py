"""The harness's stimuli: speech by espeak-ng (one word at a time, so every word's time is known
exactly), at 44.1 or 48 kHz stereo, lengths off the 0.5 s grid, a moving picture made with PyAV,
one clip past the 100 s window edge; each with its word TSV in the official format
(`text start duration sequence_id sentence`, `<stem>.tsv` beside the clip, where tribev2's
ExtractWordsFromAudio reads it instead of running WhisperX)."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SENTENCES = [
    "Mr. Smith asked the doctor a question?",
    "Dr. Jones said yes!",
    "The quick brown fox jumps over the lazy dog.",
    "Where is the train to the city?",
    "It leaves at nine, Mrs. Brown.",
]
LONG_STORY = [
    "The harbour town woke slowly.",
    "A baker opened his shutters and the smell of bread drifted over the stones.",
    "Two fishermen argued about the weather while they mended a net.",
    "Did the ferry arrive on time?",
    "No, it was late again!",
    "A girl with a red suitcase asked Mr. Green for the road to the lighthouse.",
    "He pointed up the hill and told her it was a long walk.",
    "Dr. Gray, the keeper, did not like visitors.",
    "She walked anyway, past sheep and walls of yellow moss.",
    "How many boats were in the bay?",
    "Seven, then eight, then nine!",
]
WORD_GAP = 0.06
SENTENCE_GAP = 0.35


@dataclass
class ClipSpec:
    """One stimulus: its kind (`audio` file or `video` file), length, sound rate and channels."""

    name: str
    kind: str
    seconds: float
    rate: int
    sentences: list[str]
    suffix: str = ".wav"
    start: float = 0.3
    edge_word_at: float | None = None
    """Place the speech so that a word spans this time (a window edge)."""
    size: tuple[int, int] = (96, 72)
    fps: int = 24
    notes: str = ""
    modalities: tuple[str, ...] = field(default=("text", "audio"))


CLIPS: dict[str, ClipSpec] = {
    "speech44k": ClipSpec(
        "speech44k",
        "audio",
        5.3,
        44100,
        SENTENCES[:3],
        notes="5.3 s, 44.1 kHz stereo WAV, ?, !, Mr., Dr.",
    ),
    "video48k": ClipSpec(
        "video48k",
        "video",
        4.3,
        48000,
        SENTENCES[3:5],
        suffix=".mp4",
        notes="4.3 s MP4, moving picture 96x72 at 24 fps, 48 kHz stereo AAC, speech",
        modalities=("text", "audio", "video"),
    ),
    "long103": ClipSpec(
        "long103",
        "audio",
        103.7,
        48000,
        LONG_STORY * 3,
        start=0.5,
        edge_word_at=100.0,
        notes="103.7 s, 48 kHz stereo WAV, a word across the 100 s window edge",
    ),
}
CI_CLIP = ClipSpec(
    "ci_video",
    "video",
    3.3,
    48000,
    ["Mr. Smith, are you there?", "Yes!"],
    suffix=".mp4",
    size=(64, 48),
    fps=16,
    notes="3.3 s MP4, moving picture 64x48 at 16 fps, 48 kHz stereo AAC, speech",
    modalities=("text", "audio", "video"),
)


def _espeak_word(word: str) -> tuple[np.ndarray, int]:
    """One word spoken by espeak-ng: mono float32 samples trimmed of silence, and the rate."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    wav = subprocess.run(
        [exe, "-s", "170", "--stdout", word], capture_output=True, check=True
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768
    loud = np.flatnonzero(np.abs(x) > 0.01)
    if loud.size:
        x = x[loud[0] : loud[-1] + 1]
    return x, rate


def _resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    n = int(round(len(x) * dst / src))
    return np.interp(np.arange(n) * src / dst, np.arange(len(x)), x).astype(np.float32)


def speech_track(spec: ClipSpec) -> tuple[np.ndarray, list[dict]]:
    """`(channels=2, samples)` float32 at `spec.rate` and the word rows (official TSV fields)."""
    n = int(round(spec.seconds * spec.rate))
    track = np.zeros(n, dtype=np.float32)
    pieces = []
    for i, sentence in enumerate(spec.sentences):
        for word in sentence.split():
            x, rate = _espeak_word(word.strip("?!.,"))
            pieces.append((i, sentence, word, _resample(x, rate, spec.rate)))
    starts, t = [], 0.0
    for k, (i, _, _, x) in enumerate(pieces):
        starts.append(t)
        t += len(x) / spec.rate + WORD_GAP
        if k + 1 < len(pieces) and pieces[k + 1][0] != i:
            t += SENTENCE_GAP
    offset = spec.start
    if spec.edge_word_at is not None:  # shift the speech so one word's middle sits on the edge
        for s, (_, _, _, x) in zip(starts, pieces, strict=False):
            mid = s + len(x) / spec.rate / 2
            if spec.edge_word_at - mid >= spec.start:
                offset = spec.edge_word_at - mid
    rows: list[dict] = []
    for s, (i, sentence, word, x) in zip(starts, pieces, strict=False):
        t, dur = s + offset, len(x) / spec.rate
        if t + dur > spec.seconds - 0.05:
            break
        a = int(round(t * spec.rate))
        track[a : a + len(x)] += x[: n - a]
        rows.append(
            {
                "text": word,
                "start": round(t, 4),
                "duration": round(dur, 4),
                "sequence_id": i,
                "sentence": sentence,
            }
        )
    # stereo: the right channel quieter and 2 ms late, so the mono mix is not either channel
    lag = int(0.002 * spec.rate)
    right = np.concatenate([np.zeros(lag, np.float32), track[:-lag]]) * 0.7
    noise = np.random.default_rng(0).normal(0, 0.003, (2, n)).astype(np.float32)
    return np.stack([track, right]) * 0.8 + noise, rows


def write_tsv(rows: list[dict], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(
            f, ["text", "start", "duration", "sequence_id", "sentence"], delimiter="\t"
        )
        w.writeheader()
        w.writerows(rows)
    return path


def _write_wav(path: Path, sound: np.ndarray, rate: int) -> None:
    pcm = (np.clip(sound.T, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(sound.shape[0])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def _write_video(path: Path, spec: ClipSpec, sound: np.ndarray) -> None:
    import av

    from tribe_stream.sources.clip import clip_frame

    width, height = spec.size
    with av.open(str(path), "w") as out:
        try:
            vs = out.add_stream("libx264", rate=spec.fps)
        except (av.FFmpegError, ValueError):
            vs = out.add_stream("mpeg4", rate=spec.fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        aus = out.add_stream("aac", rate=spec.rate, layout="stereo")
        for i in range(int(round(spec.seconds * spec.fps))):
            frame = av.VideoFrame.from_ndarray(
                clip_frame(i, spec.fps, width, height), format="rgb24"
            )
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        step = 1024
        for a in range(0, sound.shape[1], step):
            chunk = np.ascontiguousarray(sound[:, a : a + step], dtype=np.float32)
            af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            af.sample_rate = spec.rate
            af.pts = a
            for p in aus.encode(af):
                out.mux(p)
        for p in aus.encode():
            out.mux(p)


def make_clip(spec: ClipSpec, folder: Path) -> tuple[Path, Path]:
    """Write the clip and its TSV (`<stem>.tsv` beside it) into `folder` (made fresh); returns
    `(clip, tsv)`."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    sound, rows = speech_track(spec)
    clip = folder / f"{spec.name}{spec.suffix}"
    if spec.kind == "audio":
        _write_wav(clip, sound, spec.rate)
    else:
        _write_video(clip, spec, sound)
    return clip, write_tsv(rows, clip.with_suffix(".tsv"))
