"""Offline prediction of whole media files, with the official TRIBE v2 semantics.

    from tribe_stream import predict
    preds = predict("clip.mp4", checkpoint="facebook/tribev2")
    preds.values          # (T, 20484) float32: row i = stimulus [i, i+1) s = predicted BOLD at i + 5 s
    preds.save("clip.func.gii")          # or .npy, .h5, .mgh/.mgz

The file's pictures, sound and words (speech recognition, or a given transcript) become 2 Hz
features (`tribe_stream.extractors.offline.extract_media`); those are cut into non-overlapping
100 s windows from the start, the last one zero-padded to 100 s, each run on its own (the
official `predict`); the rows of the padding are dropped, so there is one row per second of
stimulus. A `Predictor` keeps the models loaded for many files; features are cached per file
(content hash + extractor identity), so predicting again with another brain model skips
extraction. Outputs: `tribe_stream.offline_outputs`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tribe_stream import BIN_SECONDS, HEMODYNAMIC_OFFSET_S, __version__
from tribe_stream.errors import InputError
from tribe_stream.manifest import (  # noqa: F401 - media kinds, re-exported
    AUDIO_SUFFIXES,
    MEDIA_SUFFIXES,
    TEXT_SUFFIXES,
    VIDEO_SUFFIXES,
    collect_media,
    media_kind,
)
from tribe_stream.options import PredictOptions
from tribe_stream.types import MODALITIES, Word

FEATURES_VERSION = 2
"""Raised whenever the features' computation changes, so older cache entries are not reused
(2: the official audio layer groups, resampling and word contexts; docs/PARITY.md)."""

log = logging.getLogger("tribe_stream.predict")


@dataclass
class Predictions:
    """Predicted fMRI for one stimulus: `values (T, n_outputs)` float32, row i the stimulus
    second `seconds[i]` (`[i, i+1)` s), predicted BOLD at `bold_times[i]` (+5 s), per-run
    z-score units; `metadata` says which model, stimulus and features made them."""

    values: np.ndarray
    seconds: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    words: list[Word] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    contributions: dict[str, Predictions] = field(default_factory=dict)
    """With `contributions=True`: `{modality: Predictions}` of each present modality alone (the
    others absent, as the model treats absence); an absent modality has no entry."""
    heads: dict[str, Predictions] = field(default_factory=dict)
    """With `subcortical=`: `{space name: Predictions}` of each further brain model on the same
    features and windows (`subcortical`: `(T, n_voxels)`, saved beside as NAME.subcortical.nii.gz)."""

    @property
    def bold_times(self) -> np.ndarray:
        return self.seconds.astype(np.float64) + HEMODYNAMIC_OFFSET_S

    def __len__(self) -> int:
        return len(self.seconds)

    def save(self, path: str | os.PathLike) -> list[Path]:
        """Write by extension (.npy, .h5, .func.gii, .mgh/.mgz); returns the files written.
        Contributions go beside it, in the same format: `clip.text.npy`, `clip.audio.npy`, ..."""
        from tribe_stream.offline_outputs import output_stem, save_predictions
        from tribe_stream.volume_outputs import head_path, holds_heads

        stem = output_stem(Path(path).expanduser())
        heads = [  # first: the output's own files, renamed last, mark the set finished
            f
            for h in ({} if holds_heads(path) else self.heads).values()
            for f in save_predictions(h, head_path(path, stem, h.metadata["space"]), words=False)
        ]
        return heads + save_predictions(self, path)


def window_rows(n_bins: int) -> list[tuple[int, int]]:
    """The official windows over `n_bins` bins: `[(start, stop), ...]` of at most 200 bins."""
    from tribe_stream import MAX_TOKENS

    return [(s, min(s + MAX_TOKENS, n_bins)) for s in range(0, n_bins, MAX_TOKENS)]


def _features_digest(feats: dict[str, np.ndarray]) -> str:
    """SHA-256 of features' names, shapes, dtypes and bytes (a cache entry's checksum)."""
    h = hashlib.sha256()
    for name in sorted(feats):
        a = np.ascontiguousarray(feats[name])
        h.update(f"{name}{a.shape}{a.dtype.str}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _entry_problem(feats: dict, info: Any, digest: str, dims: dict) -> str | None:
    """Why a feature-cache entry does not fit its input, or None."""
    if not isinstance(info, dict) or info.get("input_sha256") != digest:
        return "was made from another input"
    if info.get("features_sha256") != _features_digest(feats):
        return "does not hold the features it was written with"
    n = info.get("n_bins")
    for m, a in feats.items():
        want = dims.get(m)
        if a.ndim != 3 or a.shape[-1] != n or (want and tuple(a.shape[:2]) != tuple(want)):
            return f"has {m} features of shape {a.shape}, not ({want}, {n})"
        if not np.isfinite(a).all():
            return f"has {m} features that are not finite"
    return None


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of the file's bytes (read in 1 MiB pieces)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class Predictor:
    """The models, loaded once, for predicting many files (`predict(path)` each)."""

    def __init__(self, options: PredictOptions | None = None, **overrides: Any):
        from dataclasses import replace

        from tribe_stream.models import Models

        self.options = o = replace(options or PredictOptions(), **overrides).validate()
        self.models = Models(o, live=False)
        self.loaded, self.engine, self.config = (
            self.models.loaded,
            self.models.engine,
            self.models.config,
        )
        self.device, self.dtype = self.models.device, self.models.dtype
        self.heads = [self.models.head(o.subcortical)] if o.subcortical else []
        for head in self.heads:  # its voxels' atlas: said once, before any file is read
            if head.space.volume:
                from tribe_stream.spaces import mask_for

                mask_for(head.space)
        self.modalities = tuple(m for m in MODALITIES if m in (o.modalities or self.models.usable))
        self._asr = None
        self.cache_dir = None
        if o.use_cache:
            from tribe_stream.paths import cache_dir

            self.cache_dir = Path(o.cache).expanduser() if o.cache else cache_dir("features")
        self.words = None
        if o.transcript is not None:
            from tribe_stream.transcripts import read_transcript

            self.words = read_transcript(o.transcript)

    @property
    def extractors(self) -> dict:
        """`{modality: extractor}` of this predictor's modalities, loaded when first needed (a
        cached run needs none)."""
        return self.models.extractors(self.modalities)

    def _speech_recogniser(self):
        if self._asr is None and self.options.asr and "text" in self.modalities:
            from tribe_stream.extractors.asr import WhisperASR, asr_available

            reason = asr_available(self.asr_settings.model)
            if reason:
                log.warning("text features off: %s", reason)
                self.options.asr = False
                return None
            import torch

            # as many decoding threads as torch has; the words do not depend on the count
            self._asr = WhisperASR(
                settings=self.asr_settings,
                device=self.device,
                cpu_threads=torch.get_num_threads(),
            )
        return self._asr

    @property
    def asr_settings(self):
        """The recogniser's settings (`tribe_stream.extractors.asr.ASRSettings`)."""
        from tribe_stream.extractors.asr import DEFAULT_MODEL, ASRSettings

        return ASRSettings(model=self.options.whisper_model or DEFAULT_MODEL)

    def recogniser_identity(self) -> dict[str, Any] | None:
        """What recognised words depend on (model, its weights, VAD and segment checks,
        precision, decoder versions); None when no speech is recognised."""
        o = self.options
        if o.transcript or not o.asr or "text" not in self.modalities:
            return None
        from tribe_stream.errors import CheckpointError
        from tribe_stream.extractors.asr import asr_available, compute_type_for

        if reason := asr_available(self.asr_settings.model):
            return {"unavailable": reason}
        try:
            return self.asr_settings.identity(compute_type_for(self.device))
        except CheckpointError as exc:
            return {"unavailable": str(exc)}

    def extractor_identity(self) -> dict[str, Any]:
        """What the features depend on besides the file: settings and each model's weights."""
        ident: dict[str, Any] = {
            "tribe_stream": __version__,
            "features_version": FEATURES_VERSION,
            "modalities": list(self.modalities),
        }
        for m in self.modalities:
            s = self.config[m]
            weights = Path(s.model_name) / "model.safetensors"
            stamp = (
                [weights.stat().st_size, int(weights.stat().st_mtime)]
                if weights.is_file()
                else None
            )
            ident[m] = {**asdict(s), "weights": stamp}
            if m == "video" and self.options.video_fp8:  # FP8 changes the features
                ident[m]["fp8"] = self.options.video_fp8.value
        ident["words"] = (
            {"transcript": file_digest(Path(self.options.transcript))}
            if self.options.transcript
            else {"asr": self.recogniser_identity()}
        )
        return ident

    def words_metadata(self, n_words: int) -> dict[str, Any]:
        """Where a prediction's words came from (its metadata's `words`): a transcript (path and
        SHA-256), speech recognition (the recogniser's identity), or none; how many."""
        o = self.options
        if "text" not in self.modalities:
            return {"source": "none (text not used)", "count": 0}
        if o.transcript:
            digest = file_digest(Path(o.transcript))
            return {"source": "transcript", "transcript": o.transcript, "sha256": digest,
                    "count": n_words}  # fmt: skip
        if not o.asr:
            return {"source": "none (speech recognition off)", "count": 0}
        return {"source": "speech recognition", "recogniser": self.recogniser_identity(),
                "count": n_words}  # fmt: skip

    # ----- one file -----

    def features(
        self, path: str | os.PathLike, progress: Callable[[str, int, int], None] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The file's features `{modality: (L, D, T)}` (from the cache when there) and what was
        done: `{"cached": bool, "n_bins", "duration", "missing", "words", "seconds": {...}}`."""
        path = Path(path)
        kind = existing_kind(path)
        key = digest = None
        if self.cache_dir is not None:
            try:
                digest = file_digest(path)
            except OSError as exc:  # this file fails, not the batch, and names itself
                raise InputError(f"{path}: cannot be read ({exc.strerror or exc})") from None
            ident = json.dumps(self.extractor_identity(), sort_keys=True, default=str)
            key = hashlib.sha256((digest + ident).encode()).hexdigest()[:32]
            hit = self._cache_read(key, digest)
            if hit is not None:
                return hit[0], {**hit[1], "cached": True, "extract_s": 0.0}
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="tribe-predict-") as tmp:
            media = path
            if kind == "text":
                from tribe_stream.speech import speak_text

                media = speak_text(path, Path(tmp) / f"{path.stem}.wav")
            from tribe_stream.extractors.offline import extract_media

            if progress:
                progress("loading models", 0, 1)
            extractors = self.extractors
            asr = None if self.words is not None else self._speech_recogniser()
            result = extract_media(media, extractors, asr=asr, words=self.words, progress=progress)
        if not result.features:
            raise InputError(
                f"{path}: no features could be made ({'; '.join(result.missing.values())})"
            )
        info = {
            "cached": False,
            "n_bins": result.n_bins,
            "duration": result.duration,
            "missing": result.missing,
            "words": [[w.text, w.onset, w.duration] for w in result.words or []],
            "decode_errors": result.decoding.total,
            "extract_s": time.perf_counter() - t0,
        }
        if key is not None:
            self._cache_write(key, result.features, {**info, "input_sha256": digest})
        return result.features, info

    def _cache_read(self, key: str, digest: str):
        """The entry `key`, if it is whole and fits this input (made from bytes of this
        digest, its features the ones written: a checksum, shapes and finite values); else
        None, said in one line, and the features are made again."""
        npz, meta = self.cache_dir / f"{key}.npz", self.cache_dir / f"{key}.json"
        if not (npz.is_file() and meta.is_file()):
            return None
        try:
            with np.load(npz, allow_pickle=False) as z:
                feats = {k: np.asarray(z[k]) for k in z.files}
            info = json.loads(meta.read_text())
            why = _entry_problem(feats, info, digest, self.loaded.config.feature_dims)
        except Exception as exc:  # noqa: BLE001 - whatever the damage, the entry is not used
            why = f"unreadable ({type(exc).__name__}: {exc})"
        if why is None:
            return feats, info
        log.warning("feature cache entry %s %s; extracting again", key, why)
        return None

    def _cache_write(self, key: str, feats: dict[str, np.ndarray], info: dict) -> None:
        from tribe_stream.outputs import atomic_write, save_npz

        info = {**info, "features_sha256": _features_digest(feats)}
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            save_npz(self.cache_dir / f"{key}.npz", **feats)
            atomic_write(
                self.cache_dir / f"{key}.json",
                lambda tmp: tmp.write_text(json.dumps(info, default=str)),
            )
        except (OSError, InputError) as exc:  # a cache that cannot be written costs a rerun only
            log.warning("could not write the feature cache in %s (%s)", self.cache_dir, exc)

    def predict(
        self, path: str | os.PathLike, progress: Callable[[str, int, int], None] | None = None
    ) -> Predictions:
        """One file -> `Predictions`; `progress(stage, done, total)` hears each stage."""
        from tribe_stream.offline import predict_windows
        from tribe_stream.spaces import space_metadata

        path = Path(path)
        feats, info = self.features(path, progress)
        if progress:
            progress("brain model", 0, 1)
        t0 = time.perf_counter()
        values = predict_windows(self.engine, feats, pad_last=True)
        info["windows"] = len(window_rows(next(iter(feats.values())).shape[-1]))
        info["predict_s"] = time.perf_counter() - t0
        seconds = np.arange(len(values), dtype=np.int64)
        words = [Word(t, float(o), float(d)) for t, o, d in info.get("words", [])]
        meta = {
            "stimulus": str(path),
            "stimulus_sha256": file_digest(path),
            "model": self.loaded.identity,
            "space": space_metadata(self.loaded.space),
            "modalities": sorted(feats),
            "missing": info.get("missing", {}),
            "tr_s": 2 * BIN_SECONDS,
            "hemodynamic_offset_s": HEMODYNAMIC_OFFSET_S,
            "windows_s": 100,
            "duration_s": info.get("duration"),
            "software": {"tribe_stream": __version__},
            "rows": "row i = stimulus [i, i+1) s = predicted BOLD at i + 5 s",
            "words": self.words_metadata(len(words)),
        }
        timings = {k: float(info[k]) for k in ("extract_s", "predict_s", "windows") if k in info}
        timings["cached"] = float(bool(info.get("cached")))
        preds = Predictions(
            values=values, seconds=seconds, metadata=meta, words=words, timings=timings
        )
        if self.options.contributions:
            self._add_contributions(preds, feats)
        for head in self.heads:  # the same features and windows, one more brain-model call each
            space = head.space
            preds.heads[space.name] = Predictions(
                values=predict_windows(head.engine, feats, pad_last=True),
                seconds=seconds,
                metadata={**meta, "model": head.loaded.identity, "space": space_metadata(space)},
                words=words,
            )
        if self.options.tr is not None:  # to a scan's volumes (contributions and heads too)
            from tribe_stream.scan_timing import resample_predictions

            preds = resample_predictions(preds, self.options.tr, self.options.onset)
        return preds

    def _add_contributions(self, preds: Predictions, feats: dict[str, np.ndarray]) -> None:
        """Each present modality alone, on the same features and windows as `preds` (the others
        absent: zeros after their projectors, exactly as the model treats a missing modality).
        A modality absent from the stimulus gets no entry, only its reason in the metadata."""
        from tribe_stream.offline import predict_windows

        t0 = time.perf_counter()
        for m in [m for m in MODALITIES if m in feats]:
            meta = {
                **preds.metadata,
                "contribution": m,
                "modalities": [m],
                "contribution_of": f"the prediction with {m} alone (the other modalities absent)",
            }
            preds.contributions[m] = Predictions(
                values=predict_windows(self.engine, {m: feats[m]}, pad_last=True),
                seconds=preds.seconds,
                metadata=meta,
                words=preds.words,
            )
        missing = preds.metadata.get("missing", {})
        preds.metadata["contributions"] = {
            m: "present" if m in feats else f"absent: {missing.get(m, 'not asked for')}"
            for m in MODALITIES
        }
        preds.timings["contributions_s"] = time.perf_counter() - t0


def predict(media: str | os.PathLike, checkpoint: str = "demo", **options: Any) -> Predictions:
    """Predict one media file (video, audio or .txt) with the official semantics; options are
    `PredictOptions` fields (engine, device, transcript, cache, ...). A missing or unreadable
    file is an `InputError` before any model loads."""
    options = PredictOptions(checkpoint=checkpoint, **options).validate()
    check_media(media)
    return Predictor(options).predict(media)


def existing_kind(path: Path) -> str:
    """The kind of a file to predict (`media_kind`), once it is known to be a file there."""
    kind = media_kind(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    return kind


def check_media(media: str | os.PathLike) -> None:
    """One file to predict, checked before any model loads: its kind, that it exists, and (sound
    or video) that FFmpeg reads its header and finds sound or pictures (`InputError`)."""
    from tribe_stream.media import probe_stimulus

    if existing_kind(Path(media)) != "text":
        probe_stimulus(media)
