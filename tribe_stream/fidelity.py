"""How faithful the live stream is: its predictions at each lag against the offline prediction.

    result = measure("clip.mp4", FidelityOptions(checkpoint="facebook/tribev2", lags=(0, 2, 5)))
    result.report.rows()                  # one dict per lag: every statistic (the CSV's rows)
    result.write("fidelity/")             # fidelity.csv, fidelity_seconds.csv, PNGs, r maps

Offline sees up to 100 s on both sides of a second; live, second k comes from the window ending
`lag` s after it. `measure` replays the file live at each lag on the Predictor's models and
compares: `total` (live against offline), and the loss split through the offline windows run on
the live features: `context` (live against those: the brain model's missing right-hand context)
and `features` (those against offline: the live extractors); per modality, the features.
The statistics are plain functions of arrays (docs/FIDELITY.md), testable without media.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tribe_stream import N_VERTICES
from tribe_stream.errors import InputError, install_hint
from tribe_stream.options import (
    FeatureOptions,
    LiveOptions,
    ModelOptions,
    PredictOptions,
    StreamOptions,
    check_lag,
    from_args,
    number,
    option,
)
from tribe_stream.types import MODALITIES

DEFAULT_LAGS = (0.0, 2.0, 5.0, 10.0)

OUTPUT_FILES = {
    "csv": "fidelity.csv",
    "seconds": "fidelity_seconds.csv",
    "plot": "fidelity.png",
    "map": "fidelity_r_map.png",
    "r": "r_by_vertex.npy",
}
"""What `FidelityResult.write` puts in the output folder (the r map only when it can render)."""

CSV_COLUMNS = (
    ["lag_s", "seconds", "r_mean", "r_median", "r_p05", "mad", "max_abs_diff", "r_second_mean"]
    + ["undefined_vertices", "r_context_mean", "mad_context", "r_features_mean", "mad_features"]
    + [f"{m}_{k}" for m in MODALITIES for k in ("feature_r", "feature_rel_error")]
    + ["words_live", "late_words", "words_offline", "dropped_seconds", "dropped_bins"]
    + ["extractor_errors", "engine_errors", "wall_s"]
)
"""The columns of `fidelity.csv`, one row per lag (empty where a modality is absent)."""


def check_lags(lags: Sequence[float]) -> tuple[float, ...]:
    """Sorted distinct lags, each following the lag rule (`options.check_lag`)."""
    out = sorted({check_lag(lag, "lag") for lag in lags})
    if not out:
        raise InputError("no lag given: pass at least one, e.g. --lags 0,2,5,10")
    return tuple(out)


def _lags_type(text: str) -> tuple[float, ...]:
    """argparse type for --lags ('0,2,5,10'): the checked lags; one line for a bad list."""
    import argparse

    parts = [p for p in str(text).split(",") if p.strip()]
    try:
        if not parts:
            raise InputError("--lags is empty: give seconds separated by commas, e.g. 0,2,5,10")
        return check_lags([float(p) for p in parts])
    except ValueError:
        why = f"--lags {text!r}: give seconds separated by commas, e.g. --lags 0,2,5,10"
        raise argparse.ArgumentTypeError(why) from None
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass
class FidelityOptions(ModelOptions, LiveOptions, FeatureOptions):
    """What `measure` compares and on what (checked by `validate`, before any model loads).
    Live runs replay the file as fast as possible unless `realtime` (`--realtime`)."""

    lags: tuple[float, ...] = option(
        DEFAULT_LAGS, "live lags in seconds, e.g. 0,2,5,10", type=_lags_type
    )
    realtime: bool = option(  # LiveOptions' field, fast by default here
        False,
        "replay at the file's pace (speech recognition then lags as live); default: fast",
        flags={"--realtime": True},
    )
    map_lag: float | None = option(
        None, "lag of the r map (default: the smallest)", type=number(minimum=0)
    )

    CLI_SKIP = ("lag", "seconds", "modalities", "transcript", "asr", "asr_model",
                "video_batch", "subcortical")  # fmt: skip
    """Fields of the shared groups `fidelity` has no option for."""

    def validate(self) -> FidelityOptions:
        self.lags = check_lags(self.lags)
        if self.map_lag is not None:
            (self.map_lag,) = check_lags([self.map_lag])
            if self.map_lag not in self.lags:
                lags = ", ".join(f"{x:g}" for x in self.lags)
                raise InputError(f"--map-lag {self.map_lag:g} is not one of the lags ({lags})")
        self.stream_options(self.lags[-1]).validate()
        self.predict_options().validate()
        return self

    @property
    def drawn_lag(self) -> float:
        return self.lags[0] if self.map_lag is None else self.map_lag

    def stream_options(self, lag: float) -> StreamOptions:
        """The live runs' options: every model and live option given (a hand-made list once
        dropped `--video-clips`, `--text-batch` and `--video-overlap`), at `lag`."""
        return from_args(StreamOptions, self, lag=lag)

    def predict_options(self, cache: str | None = None) -> PredictOptions:
        return PredictOptions(
            checkpoint=self.checkpoint, engine=self.engine, device=self.device, dtype=self.dtype,
            asr=self.text, cache=cache or self.cache, use_cache=self.use_cache or cache is not None,
            video_fp8=self.video_fp8,
        )  # fmt: skip


def pearson(a: np.ndarray, b: np.ndarray, block: int = 2048) -> np.ndarray:
    """Pearson r between the columns of `a` and `b` (both `(N, M)`) over their N rows: `(M,)`
    float64, NaN where a column is constant on a side; `block` columns at a time (little memory)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"pearson needs two arrays of one (N, M) shape, got {a.shape}, {b.shape}")
    out = np.full(a.shape[1], np.nan)
    if a.shape[0] < 2:
        return out
    for lo in range(0, a.shape[1], block):
        x, y = (m[:, lo : lo + block].astype(np.float64) for m in (a, b))
        ok, spreads = np.ones(x.shape[1], dtype=bool), []
        for v in (x, y):  # centred in place
            # a constant column (to rounding) has no r: its spread is below 1e-10 of its size
            floor = 1e-10 * np.abs(v).max(axis=0) * math.sqrt(len(v))
            v -= v.mean(axis=0)
            spreads.append(np.sqrt((v * v).sum(axis=0)))
            ok &= spreads[-1] > floor
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (x * y).sum(axis=0) / (spreads[0] * spreads[1])
        out[lo : lo + block] = np.where(ok, np.clip(r, -1.0, 1.0), np.nan)
    return out


@dataclass
class Agreement:
    """How closely one prediction `(T, V)` follows another on the same seconds."""

    n_seconds: int
    r_mean: float  # Pearson r over time per vertex, averaged where it is defined
    r_median: float
    r_p05: float  # its 5th percentile: the worst-followed vertices
    mad: float  # mean absolute difference over every second and vertex
    max_abs: float
    undefined: int  # vertices constant on a side: r undefined there, left out
    r_vertex: np.ndarray = field(repr=False)  # (V,) the per-vertex r
    r_second: np.ndarray = field(repr=False)  # (T,) the spatial r of each second
    mad_second: np.ndarray = field(repr=False)  # (T,) the mean absolute difference of each second

    @property
    def r_second_mean(self) -> float:
        return _nanstat(np.nanmean, self.r_second)


def _nanstat(fn, x: np.ndarray, *args) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(fn(x[np.isfinite(x)], *args)) if np.isfinite(x).any() else float("nan")


def agreement(live: np.ndarray, reference: np.ndarray) -> Agreement:
    """Compare two predictions of the same seconds, `(T, V)` each (row k = second k)."""
    live, reference = np.asarray(live), np.asarray(reference)
    if live.shape != reference.shape or live.ndim != 2:
        raise ValueError(f"compare (T, V) arrays of one shape, got {live.shape}, {reference.shape}")
    if live.shape[0] == 0:
        raise InputError("nothing to compare: the live stream and the offline run share no second")
    r_vertex = pearson(live, reference)
    diff = np.abs(live.astype(np.float32) - reference.astype(np.float32))  # sums in float64
    return Agreement(
        n_seconds=int(live.shape[0]),
        r_mean=_nanstat(np.mean, r_vertex),
        r_median=_nanstat(np.median, r_vertex),
        r_p05=_nanstat(np.percentile, r_vertex, 5),
        mad=float(diff.mean(dtype=np.float64)),
        max_abs=float(diff.max()),
        undefined=int(np.isnan(r_vertex).sum()),
        r_vertex=r_vertex.astype(np.float32),
        r_second=pearson(live.T, reference.T).astype(np.float32),
        mad_second=diff.mean(axis=1, dtype=np.float64).astype(np.float32),
    )


@dataclass
class FeatureAgreement:
    """One modality's live features against its offline features, over the bins both have."""

    modality: str
    state: str  # `compared`, or why not: `live only`, `offline only`
    n_bins: int = 0
    r: float = float("nan")  # Pearson r over every value (layer group, dimension, bin)
    rel_error: float = float("nan")  # ‖live − offline‖ / ‖offline‖ over the same bins


def feature_agreement(
    modality: str, live: np.ndarray | None, offline: np.ndarray | None
) -> FeatureAgreement:
    """Compare `(L, D, T)` features of one modality (None: absent on that side)."""
    if live is None or offline is None:
        state = "offline only" if live is None else "live only"
        return FeatureAgreement(modality, "absent" if live is offline else state)
    live, offline = np.asarray(live), np.asarray(offline)
    if live.shape[:2] != offline.shape[:2]:
        raise ValueError(f"{modality} features {live.shape} and {offline.shape} differ in (L, D)")
    n = min(live.shape[-1], offline.shape[-1])
    a = live[..., :n].astype(np.float64).reshape(-1, 1)
    b = offline[..., :n].astype(np.float64).reshape(-1, 1)
    norm = float(np.linalg.norm(b))
    rel = float(np.linalg.norm(a - b)) / norm if norm > 0 else float("nan")
    return FeatureAgreement(modality, "compared", n, float(pearson(a, b)[0]), rel)


@dataclass
class LagReport:
    """Everything measured for one lag."""

    lag: float
    total: Agreement  # live against offline
    context: Agreement | None  # live against the offline windows on the live features
    features: Agreement | None  # the offline windows on the live features against offline
    modalities: dict[str, FeatureAgreement]
    counters: dict[str, float] = field(default_factory=dict)
    words_offline: int = 0
    wall_s: float = 0.0

    def row(self) -> dict[str, Any]:
        """This lag's row of `fidelity.csv` (keys: CSV_COLUMNS)."""
        t, k = self.total, self.counters
        row: dict[str, Any] = {
            "lag_s": self.lag,
            "seconds": t.n_seconds,
            "r_mean": t.r_mean,
            "r_median": t.r_median,
            "r_p05": t.r_p05,
            "mad": t.mad,
            "max_abs_diff": t.max_abs,
            "r_second_mean": t.r_second_mean,
            "undefined_vertices": t.undefined,
        }
        for name, a in (("context", self.context), ("features", self.features)):
            row[f"r_{name}_mean"], row[f"mad_{name}"] = (a.r_mean, a.mad) if a else (None, None)
        for m in MODALITIES:
            fa = self.modalities.get(m)
            ok = fa is not None and fa.state == "compared"
            row[f"{m}_feature_r"] = fa.r if ok else None
            row[f"{m}_feature_rel_error"] = fa.rel_error if ok else None
        row["words_live"], row["late_words"] = int(k.get("words", 0)), int(k.get("late_words", 0))
        row["words_offline"] = self.words_offline
        for key in ("dropped_seconds", "dropped_bins", "extractor_errors", "engine_errors"):
            row[key] = int(k.get(key, 0))
        row["wall_s"] = round(self.wall_s, 3)
        return row


def lag_report(
    lag: float,
    live_values: np.ndarray,
    live_seconds: Sequence[int],
    offline_values: np.ndarray,
    live_features: dict[str, np.ndarray],
    offline_features: dict[str, np.ndarray],
    offline_on_live: np.ndarray | None = None,
    counters: dict[str, float] | None = None,
    words_offline: int = 0,
    wall_s: float = 0.0,
) -> LagReport:
    """One lag's statistics: live predictions `(n, V)` for `live_seconds` (matched by number: a
    stream behind skips seconds), offline rows `(R, V)` (row i = second i), both sides' features
    `{modality: (L, D, T)}`, optionally the offline windows on the live features (`(R', V)`)."""
    s = np.asarray(live_seconds, dtype=np.int64)
    li = np.nonzero((s >= 0) & (s < len(offline_values)))[0]
    oi, live = s[li], np.asarray(live_values)[li]
    total = agreement(live, np.asarray(offline_values)[oi])
    context = features = None
    if offline_on_live is not None:
        both = oi < len(offline_on_live)
        ref = np.asarray(offline_on_live)[oi[both]]
        context = agreement(live[both], ref)
        features = agreement(ref, np.asarray(offline_values)[oi[both]])
    mods = {
        m: feature_agreement(m, live_features.get(m), offline_features.get(m))
        for m in MODALITIES
        if m in live_features or m in offline_features
    }
    return LagReport(
        float(lag), total, context, features, mods, dict(counters or {}), words_offline, wall_s
    )


@dataclass
class FidelityReport:
    """Every lag's statistics, for one media file and one model."""

    media: str
    model: dict
    lags: list[LagReport]
    offline_seconds: int
    offline_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return [lag.row() for lag in self.lags]

    def csv(self) -> str:
        """`fidelity.csv`: a row per lag, every statistic (CSV_COLUMNS; empty = absent)."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows({k: _cell(v) for k, v in row.items()} for row in self.rows())
        return buf.getvalue()

    def seconds_csv(self) -> str:
        """`fidelity_seconds.csv`: the spatial r of each second since the start, a column a lag."""
        n = max(lag.total.n_seconds for lag in self.lags)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["second", *(f"r_lag_{lag.lag:g}" for lag in self.lags)])
        for k in range(n):
            w.writerow([k, *(_cell(_at(lag.total.r_second, k)) for lag in self.lags)])
        return buf.getvalue()

    def lag(self, lag: float) -> LagReport:
        for item in self.lags:
            if abs(item.lag - lag) < 1e-9:
                return item
        names = ", ".join(f"{x.lag:g}" for x in self.lags)
        raise InputError(f"lag {lag:g} was not measured ({names})")

    @property
    def untrained(self) -> bool:
        return bool(self.model.get("untrained"))


def _at(x: np.ndarray, k: int) -> float | None:
    return float(x[k]) if k < len(x) else None


def _cell(v: Any) -> Any:
    """A CSV cell: empty for None, a float to 6 significant digits (`nan` as such)."""
    return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)


@dataclass
class FidelityResult:
    """A report and what the pictures are drawn from."""

    report: FidelityReport
    options: FidelityOptions

    def write(self, folder: str | Path, *, overwrite: bool = False, map_image: bool = True):
        """Write every output file into `folder` (the r map only with `map_image`); returns
        `(written, problems)` as `write_outputs`."""
        return write_outputs(self.report, folder, self.options.drawn_lag, overwrite, map_image)


def live_extractors(shared: dict, modalities: Sequence[str], asr=None):
    """`Extractors` for one live run on the Predictor's extractors (`shared`: modality ->
    extractor), limited to `modalities`; text only with `asr` (a WhisperASR, fresh live state)."""
    from tribe_stream.extractors.asr import LiveASR
    from tribe_stream.models import Extractors

    video, audio = shared.get("video"), shared.get("audio")
    text, live_asr = (None, None) if asr is None else (shared.get("text"), LiveASR(asr))
    return Extractors(video, audio, text, live_asr).for_stream(modalities)


def measure(
    media: str | Path,
    options: FidelityOptions | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    **overrides: Any,
) -> FidelityResult:
    """Predict `media` offline, replay it live at each lag, and compare (see the module docs).
    `progress(stage, done, total)` hears the offline stages and each lag's seconds."""
    from tribe_stream import Stream
    from tribe_stream.offline import predict_windows
    from tribe_stream.prediction import Predictor

    o = replace(options or FidelityOptions(), **overrides).validate()
    media = Path(media)
    source = check_media(media)
    tmp = None if o.use_cache else tempfile.TemporaryDirectory(prefix="tribe-fidelity-")
    try:
        t0 = time.perf_counter()
        predictor = Predictor(o.predict_options(cache=tmp.name if tmp else None))
        if not o.text:  # no words on either side: the text model is not even loaded
            predictor.modalities = tuple(m for m in predictor.modalities if m != "text")
        offline = predictor.predict(media, progress=progress)
        off_feats, info = predictor.features(media)  # the cache entry predict() just wrote
        offline_s = time.perf_counter() - t0
        mods = list(off_feats)
        notes = [f"{m} absent on both sides: {why}" for m, why in info.get("missing", {}).items()]
        asr = predictor._speech_recogniser() if "text" in mods else None
        reports = []
        for lag in o.lags:
            stage = f"live, lag {lag:g} s"
            t1 = time.perf_counter()
            stream = Stream(source, o.stream_options(lag))
            stream.use_models(predictor.models, live_extractors(predictor.extractors, mods, asr))
            count = itertools.count(1)

            def tick(_p, stage=stage, count=count) -> None:
                if progress:
                    progress(stage, next(count), len(offline))

            preds = stream.run(on_prediction=tick)
            if not preds:
                raise InputError(
                    f"{media}: the live stream predicted nothing at lag {lag:g} s "
                    "(shorter than one second?); give a longer file"
                )
            pipe = stream.pipeline
            live_feats = {m: pipe.features(m) for m in pipe.modalities}
            on_live = predict_windows(predictor.engine, live_feats, pad_last=True)
            values, seconds = np.stack([p.values for p in preds]), [p.second for p in preds]
            reports.append(lag_report(
                lag, values, seconds, offline.values, live_feats, off_feats, on_live,
                stream.counters, len(offline.words or []), time.perf_counter() - t1,
            ))  # fmt: skip
        notes += recognition_notes(reports, o.realtime)
        identity = predictor.loaded.identity
        report = FidelityReport(str(media), identity, reports, len(offline), offline_s, notes)
        return FidelityResult(report, o)
    finally:
        if tmp is not None:
            tmp.cleanup()


def recognition_notes(reports: Sequence[LagReport], realtime: bool) -> list[str]:
    """What live speech recognition did that the numbers depend on: words that came after their
    second was predicted (their text missing there), a recogniser still busy at the end."""
    notes = []
    for r in reports:
        words, late = int(r.counters.get("words", 0)), int(r.counters.get("late_words", 0))
        if words and late:
            line = f"lag {r.lag:g} s: {late} of {words} live words came after their second was "
            line += "predicted (their text is missing there)"
            if not realtime and late > words / 2:
                line += "; the recogniser is slower than this fast replay: --realtime measures "
                line += "what a live stream gets"
            notes.append(line)
        if r.counters.get("asr_unfinished"):
            notes.append(f"lag {r.lag:g} s: speech recognition was still busy at the end")
    return notes


def check_media(media: str | Path):
    """The file as a stream's `Media`, checked (it exists, FFmpeg reads pictures or sound)
    before any model loads; a text is refused: there is nothing to replay."""
    from tribe_stream.prediction import media_kind
    from tribe_stream.stream.producer import Media

    media = Path(media)
    if not media.exists():
        raise InputError(f"{media} does not exist")
    if media.is_file() and media_kind(media) == "text":
        raise InputError(
            f"{media} is a text: a live stream replays sound or pictures; speak it first "
            "(espeak-ng -f story.txt -w story.wav) and measure the .wav"
        )
    return Media(file=str(media)).validate()


def check_outputs(folder: str | Path, overwrite: bool = False) -> dict[str, Path]:
    """The output files, checked before any work: the folder is made if its parent exists;
    a file that exists is refused unless `overwrite`."""
    from tribe_stream.outputs import check_output, check_output_folder

    d = check_output_folder(folder, "the report's files (CSV, PNG, NPY)")
    paths = {k: d / name for k, name in OUTPUT_FILES.items()}
    for p in paths.values():
        check_output(p, (p.suffix,), what="report file")
        if p.exists() and not overwrite:
            raise InputError(f"{p} exists; pass --overwrite to replace it (or another --out)")
    return paths


def write_outputs(
    report: FidelityReport,
    folder: str | Path,
    map_lag: float,
    overwrite: bool = False,
    map_image: bool = True,
) -> tuple[list[Path], list[str]]:
    """Write every output (atomically); returns the files written and one line per picture
    that could not be drawn (the other files are written all the same)."""
    from tribe_stream.errors import TribeStreamError
    from tribe_stream.outputs import atomic_write, save_npy

    paths = check_outputs(folder, overwrite)
    written, problems = [], []
    for key, text in (("csv", report.csv()), ("seconds", report.seconds_csv())):
        written.append(atomic_write(paths[key], lambda tmp, t=text: tmp.write_text(t)))
    maps = np.stack([lag.total.r_vertex for lag in report.lags]).astype(np.float32)
    written.append(save_npy(paths["r"], maps))
    pictures = [("plot", lambda p: plot_report(report, p))]
    if map_image:
        pictures.append(("map", lambda p: render_r_map(report, map_lag, p)))
    for key, draw in pictures:
        try:
            written.append(atomic_write(paths[key], draw))
        except TribeStreamError as exc:
            problems.append(f"{paths[key].name} not drawn: {exc}")
    return written, problems


def plot_report(report: FidelityReport, path: str | Path) -> None:
    """Two panels: r against lag (mean, median, 5th percentile; and the brain model's share),
    and the spatial r of each second against seconds since the stream's start, a line a lag."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError(
            f"the plot needs matplotlib: pip install matplotlib (or {install_hint('viewer')})"
        ) from None
    lags = [lag.lag for lag in report.lags]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    a.plot(lags, [x.total.r_mean for x in report.lags], "o-", label="mean r (live vs offline)")
    a.plot(lags, [x.total.r_median for x in report.lags], "s--", label="median")
    a.plot(lags, [x.total.r_p05 for x in report.lags], "v:", label="5th percentile")
    if all(x.context is not None for x in report.lags):
        same = [x.context.r_mean for x in report.lags]
        a.plot(lags, same, "x-", alpha=0.6, label="same features (brain model's context only)")
    a.set(xlabel="lag (s)", ylabel="per-vertex r over time", title="live vs offline, by lag")
    for x in report.lags:
        b.plot(np.arange(len(x.total.r_second)), x.total.r_second, lw=1, label=f"lag {x.lag:g} s")
    b.set(xlabel="seconds since stream start", ylabel="spatial r of each second's map")
    b.set_title("by second")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    who = "UNTRAINED demo weights" if report.untrained else str(report.model.get("source", ""))
    fig.suptitle(f"{Path(report.media).name}: {who}", fontsize=9)
    fig.tight_layout()
    fig.savefig(str(path), format="png")
    plt.close(fig)


def render_r_map(
    report: FidelityReport, lag: float, path: str | Path, size: tuple[int, int] = (1000, 720)
) -> None:
    """The per-vertex r of one lag on the cortex (our offscreen renderer): the colours run from
    the 2nd percentile (down to a multiple of 0.05) to 1, so the worst-followed regions show."""
    from tribe_stream.surface.colors import ColorLimits
    from tribe_stream.viewer.render import render_image

    r = np.asarray(report.lag(lag).total.r_vertex, dtype=np.float32)
    if r.shape != (N_VERTICES,):
        raise InputError(f"the r map has {r.shape[0]} values, not fsaverage5's {N_VERTICES}")
    low = float(np.nan_to_num(_nanstat(np.percentile, r, 2)))  # 0 when no r is defined
    vmin = float(np.clip(np.floor(low / 0.05) * 0.05, -1.0, 0.95))
    who = "untrained demo weights" if report.untrained else str(report.model.get("source", ""))
    image = render_image(
        np.nan_to_num(r, nan=vmin),
        views=("both",),
        cmap="viridis",
        size=size,
        limits=ColorLimits(vmin=vmin, vmax=1.0, threshold=vmin - 1.0),
        title=f"live (lag {lag:g} s) vs offline: r over time per vertex; {who}",
        colorbar_title="r",
    )
    try:
        from PIL import Image
    except ImportError:
        raise InputError("the r map needs Pillow: pip install pillow") from None
    # 256 colours (octree: the colour bar stays smooth): an eighth of the size, nothing lost
    Image.fromarray(np.ascontiguousarray(image[..., :3])).quantize(
        256, method=Image.Quantize.FASTOCTREE
    ).save(str(path), format="PNG", optimize=True)
