"""A whole media file -> features `{modality: (L, D, T)}` at 2 Hz, the input of the brain model.

A modality the file cannot give (no video stream, no audio stream, no recognised word) is left
out, which the brain model treats as absent (zeros after its projector). The reason is returned.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tribe_stream.errors import InputError
from tribe_stream.extractors.media import probe, read_audio
from tribe_stream.extractors.timing import n_bins_for
from tribe_stream.types import Word

log = logging.getLogger(__name__)


@dataclass
class FileFeatures:
    """Features of one file, the words they came from, and why any modality is missing."""

    features: dict[str, np.ndarray]
    n_bins: int
    duration: float
    words: list[Word] | None = None
    missing: dict[str, str] = field(default_factory=dict)


def extract_media(
    path: str | os.PathLike,
    extractors: dict,
    *,
    asr=None,
    words: Sequence[Word] | None = None,
) -> FileFeatures:
    """Run the given extractors (`{modality: extractor}`) over a media file.

    Text needs words: `words` when given, else speech recognised by `asr` from the file's audio.
    """
    info = probe(path)
    if not (info.has_audio or info.has_video):
        raise InputError(f"{path} holds neither audio nor video")
    total = n_bins_for(info.duration)
    result = FileFeatures({}, total, info.duration, list(words) if words is not None else None)
    if "video" in extractors:
        if info.has_video:
            log.info("video features of %s (%d bins)", path, total)
            result.features["video"] = extractors["video"].extract_file(path, total)
        else:
            result.missing["video"] = "the file has no video stream"
    need_audio = "audio" in extractors or ("text" in extractors and words is None)
    audio = read_audio(path) if need_audio and info.has_audio else None
    if "audio" in extractors:
        if audio is not None:
            log.info("audio features of %s", path)
            result.features["audio"] = extractors["audio"].extract_samples(audio, total)
        else:
            result.missing["audio"] = "the file has no audio stream"
    if "text" in extractors:
        if result.words is None:
            if audio is None:
                result.missing["text"] = "the file has no audio stream to recognise words in"
            elif asr is None:
                result.missing["text"] = "no speech recognition (see `tribe-stream extract --help`)"
            else:
                log.info("recognising speech in %s", path)
                result.words = asr.transcribe(audio)
        if result.words is not None and "text" not in result.missing:
            kept = [w for w in result.words if w.text.strip()]
            if kept:
                result.features["text"] = extractors["text"].extract(kept, total)
            else:
                result.missing["text"] = "no word was recognised"
    return result


def write_words(path: str | os.PathLike, words: Sequence[Word]) -> None:
    """Words as a tab-separated file: onset, duration, text."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["onset", "duration", "text"])
        for word in words:
            w.writerow([f"{word.onset:.3f}", f"{word.duration:.3f}", word.text])


def read_words(path: str | os.PathLike) -> list[Word]:
    """Words from a tab-separated file with columns onset, duration, text (a header row)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p} does not exist; pass a .tsv with columns onset, duration, text")
    words = []
    with open(p, newline="") as f:
        rows = csv.DictReader(f, delimiter="\t")
        if not rows.fieldnames or not {"onset", "duration", "text"} <= set(rows.fieldnames):
            raise InputError(f"{p} needs a header row with onset, duration and text columns")
        for i, row in enumerate(rows, start=2):
            try:
                words.append(
                    Word(
                        text=row["text"], onset=float(row["onset"]), duration=float(row["duration"])
                    )
                )
            except (TypeError, ValueError):
                raise InputError(f"{p} line {i}: onset and duration must be numbers") from None
    words.sort(key=lambda w: w.onset)
    return words
