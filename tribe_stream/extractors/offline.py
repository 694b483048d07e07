"""A whole media file -> features `{modality: (L, D, T)}` at 2 Hz, the input of the brain model.

A modality the file cannot give (no video stream, no audio stream, no recognised word) is left
out, which the brain model treats as absent (zeros after its projector). The reason is returned.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from tribe_stream import BIN_SECONDS
from tribe_stream.errors import InputError
from tribe_stream.extractors.timing import n_bins_for
from tribe_stream.media import (
    DecodeCounters,
    NothingDecoded,
    media_duration,
    probe_stimulus,
    read_sound,
)
from tribe_stream.transcripts import read_transcript as read_words  # noqa: F401  (re-exported)
from tribe_stream.transcripts import warn_words_past_end
from tribe_stream.transcripts import write_transcript as write_words  # noqa: F401
from tribe_stream.types import Word

log = logging.getLogger(__name__)


@dataclass
class FileFeatures:
    """Features of one file, the words they came from, why any modality is missing, and what
    decoding had to skip (`decoding`: bad packets and frames, silenced samples)."""

    features: dict[str, np.ndarray]
    n_bins: int
    duration: float
    words: list[Word] | None = None
    missing: dict[str, str] = field(default_factory=dict)
    decoding: DecodeCounters = field(default_factory=DecodeCounters)


def _sound_and_features(path, audio_extractor, n_bins: int, counters: DecodeCounters):
    """The file's sound (`media.Sound`) and, when an audio extractor is given and there is
    sound, its `(L, D, n_bins)` features (else None): the sound's half of `extract_media`, in a
    thread."""
    sound = read_sound(path, counters)
    if audio_extractor is None or not len(sound.samples):
        return sound, None
    log.info("audio features of %s (beside the video)", path)
    return sound, audio_extractor.extract_sound(sound, n_bins)


def _video_features(path, video, total: int, counters: DecodeCounters, stage) -> np.ndarray | None:
    """The video's `(L, D, total)` features, or None when no frame decodes."""
    log.info("video features of %s (%d bins)", path, total)
    stage("video", 0, total)
    try:
        return video.extract_file(
            path, total, counters=counters, progress=lambda d, n: stage("video", d, n)
        )
    except NothingDecoded:
        return None


def extract_media(
    path: str | os.PathLike,
    extractors: dict,
    *,
    asr=None,
    words: Sequence[Word] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> FileFeatures:
    """Run the given extractors (`{modality: extractor}`) over a media file.

    Text needs words: `words` when given, else speech recognised by `asr` from the file's audio.
    `progress(stage, done, total)` hears each stage (decoding, video, audio, speech, text) and,
    for video, each batch of bins.
    Packets that fail to decode are skipped and counted (`FileFeatures.decoding`); a file with
    no audio or video stream, or shorter than one 0.5 s bin, is an `InputError`.
    """
    info = probe_stimulus(path)
    counters = DecodeCounters()

    def stage(name: str, done: int = 0, of: int = 1) -> None:
        if progress is not None:
            progress(name, done, of)

    need_audio = info.has_audio and (
        "audio" in extractors or ("text" in extractors and words is None)
    )
    video = extractors.get("video") if info.has_video else None
    stage("decoding sound")
    # The sound is decoded, and its features made, in a thread while the video runs when the
    # header gives the length (the bin count both need); the sound can only lengthen the file,
    # then the video and the sound's features are redone for the longer count.
    overlap = (
        need_audio
        and video is not None
        and info.duration is not None
        and n_bins_for(info.duration) > 0
    )
    pending_audio = None
    audio_feats = None
    if overlap:
        sound_counters = DecodeCounters()
        pending_audio = ThreadPoolExecutor(1, thread_name_prefix="sound")
        audio_future = pending_audio.submit(
            _sound_and_features, path, extractors.get("audio"), n_bins_for(info.duration),
            sound_counters,
        )  # fmt: skip
        audio = None
    else:
        audio = read_sound(path, counters) if need_audio else None
    try:
        duration = (
            (info.duration if overlap else media_duration(path, info))
            if audio is None
            else max(info.duration or 0.0, audio.duration)
        )
        total = n_bins_for(duration)
        if total == 0:
            raise InputError(
                f"{path} lasts {duration:.2f} s: too short for one {BIN_SECONDS} s feature bin; "
                "give at least 0.25 s of media"
            )
        result = FileFeatures({}, total, duration, list(words) if words is not None else None)
        result.decoding = counters
        if "video" in extractors and video is None:
            result.missing["video"] = "the file has no video stream"
        if video is not None:
            video_feats = _video_features(path, video, total, counters, stage)
        if overlap:
            audio, audio_feats = audio_future.result()
            counters.merge(sound_counters)
            duration = max(duration, audio.duration)
            if n_bins_for(duration) > total:  # the sound outlasts the header: more bins
                total = n_bins_for(duration)
                log.info(
                    "%s: sound longer than its header says; video again for %d bins", path, total
                )
                video_feats = _video_features(path, video, total, DecodeCounters(), stage)
                audio_feats = None  # made for the header's count: made again below
            result.n_bins, result.duration = total, duration
    finally:
        if pending_audio is not None:
            pending_audio.shutdown(wait=True, cancel_futures=True)
    if video is not None:
        if video_feats is None:
            result.missing["video"] = "no video frame could be decoded"
        else:
            result.features["video"] = video_feats
    if "audio" in extractors:
        if audio is not None and len(audio.samples):
            stage("audio")
            if audio_feats is None:
                log.info("audio features of %s", path)
                audio_feats = extractors["audio"].extract_sound(audio, total)
            result.features["audio"] = audio_feats
        else:
            result.missing["audio"] = (
                "the file has no audio stream"
                if not info.has_audio
                else "no audio could be decoded"
            )
    if "text" in extractors:
        if result.words is None:
            if audio is None or not len(audio.samples):
                result.missing["text"] = "the file has no audio to recognise words in"
            elif asr is None:
                result.missing["text"] = "no speech recognition (see `tribe-stream extract --help`)"
            else:
                log.info("recognising speech in %s", path)
                stage("speech recognition")
                result.words = asr.transcribe(audio.mono())
        warn_words_past_end(result.words, result.duration, path)
        if result.words is not None and "text" not in result.missing:
            kept = [w for w in result.words if w.text.strip()]
            if kept:
                stage("text", 0, len(kept))
                result.features["text"] = extractors["text"].extract(kept, total)
            else:
                result.missing["text"] = "no word was recognised"
    return result
