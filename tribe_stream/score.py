"""Predictions against measured fMRI: per-vertex Pearson r over the scan's time points.

    from tribe_stream.score import score
    result = score("clip.npy", "sub-01_run-1.dtseries.nii", tr=1.49, onset=0.0)
    result.r                # (20484,) r over time per vertex (NaN where either side is constant)
    result.save("clip.r.func.gii", atlas=atlas)   # the map, its region table and its picture

Measured BOLD is on fsaverage5: a CIFTI-2 dense time series (`.dtseries.nii`, `cifti.py`), a
GIfTI pair or an MGH pair (read by `offline_outputs.read_prediction_file`, BIDS `hemi-L`/`hemi-R`
names too). Its volume i was acquired at stimulus time `onset + i * tr` s; the prediction there
is the 1 Hz predicted BOLD (row k at `k + 5` s) interpolated to that time by `scan_timing` (as
`predict --tr --onset`). The BOLD must be the scan from its first volume through the last one
the predictions reach (`scan_timing.scan_volumes`); any other length is refused in one line that
names both and the fix. Its first volumes, acquired before the first predicted BOLD (5 s after
the stimulus starts), have no prediction and are left out of the r.

Several runs of the same stimulus (`bold=[run1, run2, ...]`) are averaged before the r, and give
a noise ceiling: the mean of every pair of runs' per-vertex r estimates one run's reliability
rho, Spearman-Brown lifts it to the mean of R runs, `R rho / (1 + (R - 1) rho)`, and its square
root is the r a perfect prediction would reach against that mean (for runs = signal + independent
noise of one size, `sd_signal / sqrt(sd_signal^2 + sd_noise^2 / R)`); a vertex whose runs do
not agree (rho <= 0) has a ceiling of 0.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tribe_stream import HEMODYNAMIC_OFFSET_S, N_VERTICES
from tribe_stream.errors import InputError
from tribe_stream.fidelity import pearson
from tribe_stream.scan_timing import resample, scan_volumes

BoldInput = str | os.PathLike | np.ndarray
"""One run: an array `(T, 20484)`, a CIFTI-2 dense time series, or a GIfTI or MGH pair (its
common name or either hemisphere's file, fMRIPrep's `hemi-L`/`hemi-R` names too)."""


@dataclass
class Bold:
    """Measured BOLD of one run: `values (T, 20484)` float32 (NaN: no data), volume i acquired
    at `onset + i * tr` s of the stimulus; `tr` None when the file does not say."""

    values: np.ndarray
    tr: float | None
    source: str


def read_bold(run: BoldInput) -> Bold:
    """One run of measured BOLD (see `BoldInput`), with the TR its file records."""
    from tribe_stream.cifti import is_cifti, read_dtseries

    if isinstance(run, np.ndarray):
        return Bold(_checked(run, "the BOLD array"), None, "array")
    if is_cifti(run):
        series = read_dtseries(run)
        return Bold(_checked(series.values, str(run)), series.tr, str(run))
    from tribe_stream.offline_outputs import read_prediction_file

    values, _, meta = read_prediction_file(run)
    tr = meta.get("tr_s", meta.get("RepetitionTime"))
    tr = float(tr) if isinstance(tr, (int, float)) and not isinstance(tr, bool) else None
    return Bold(_checked(values, str(run)), tr, str(run))


def _checked(values: np.ndarray, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float32)
    if v.ndim != 2 or v.shape[1] != N_VERTICES:
        raise InputError(f"{what} has shape {v.shape}; expected (time points, {N_VERTICES})")
    if len(v) < 3:
        raise InputError(f"{what} has {len(v)} time points; a correlation over time needs 3+")
    return v


def noise_ceiling(runs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """`(ceiling, rho)` per vertex from R >= 2 runs `(T, V)` of one stimulus: rho the mean
    pairwise r of the runs, ceiling the square root of its Spearman-Brown reliability for the
    mean of R runs (module docs). NaN where no pair has an r."""
    n = len(runs)
    if n < 2:
        raise InputError("a noise ceiling needs two or more runs of the same stimulus")
    pairs = np.stack([pearson(a, b) for a, b in itertools.combinations(runs, 2)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN vertices stay NaN
        rho = np.nanmean(pairs, axis=0)
    reliability = n * rho / (1 + (n - 1) * np.clip(rho, 0, None))
    return np.sqrt(np.clip(reliability, 0, 1)), rho


@dataclass
class ScoreResult:
    """Per-vertex r of predictions against measured BOLD, on the scan's `times` (stimulus s)."""

    r: np.ndarray  # (20484,) float32; NaN where a side is constant or has no data
    predicted: np.ndarray = field(repr=False)  # (T, 20484) the predictions at the scan's times
    measured: np.ndarray = field(repr=False)  # (T, 20484) the BOLD (the mean of the runs)
    times: np.ndarray = field(repr=False)  # (T,) acquisition times, stimulus seconds
    volumes: np.ndarray = field(repr=False)  # (T,) which volumes of the scan they are
    tr: float = 1.0
    onset: float = 0.0
    n_runs: int = 1
    ceiling: np.ndarray | None = None  # (20484,) with two or more runs
    metadata: dict[str, Any] = field(default_factory=dict)  # the prediction's, plus ours

    @property
    def n_volumes(self) -> int:
        return len(self.times)

    def summary(self) -> dict[str, Any]:
        """The numbers a person reads first (NaN-free statistics over defined vertices)."""
        ok = np.isfinite(self.r)
        out: dict[str, Any] = {
            "volumes": self.n_volumes,
            "first_volume": int(self.volumes[0]),
            "tr_s": self.tr,
            "onset_s": self.onset,
            "runs": self.n_runs,
            "r_mean": _stat(np.mean, self.r),
            "r_median": _stat(np.median, self.r),
            "r_p95": _stat(np.percentile, self.r, 95),
            "undefined_vertices": int((~ok).sum()),
        }
        if self.ceiling is not None:
            out["ceiling_mean"] = _stat(np.mean, self.ceiling)
            out["r_over_ceiling_mean"] = _stat(np.mean, self.normalised())
        return out

    def normalised(self) -> np.ndarray:
        """r / noise ceiling where the ceiling is above 0.1 (NaN elsewhere, and without one)."""
        if self.ceiling is None:
            return np.full_like(self.r, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.ceiling > 0.1, self.r / self.ceiling, np.nan).astype(np.float32)

    def region_rows(self, atlas) -> list[dict[str, Any]]:
        """One row per region of `atlas` (`regions.Atlas`): its vertices with data, the mean of
        their r (`r_vertex_mean`), the r of the region's mean time courses (`r_region`: their
        noise averages out), and with runs the mean ceiling."""
        present = np.isfinite(self.measured).all(axis=0)
        labels = np.where(present, atlas.labels, -1)
        n = len(atlas.names)
        sizes = np.bincount(labels[labels >= 0], minlength=n)
        onehot = np.zeros((N_VERTICES, n), np.float32)
        onehot[np.nonzero(labels >= 0)[0], labels[labels >= 0]] = 1.0
        with np.errstate(invalid="ignore", divide="ignore"):
            weights = onehot / sizes
            means = [np.nan_to_num(x) @ weights for x in (self.predicted, self.measured)]
        region_r = pearson(*means)
        rows = []
        for i, name in enumerate(atlas.names):
            inside = labels == i
            row = {
                "region": name,
                "vertices": int(sizes[i]),
                "r_vertex_mean": _stat(np.mean, self.r[inside]),
                "r_region": float(region_r[i]) if sizes[i] else float("nan"),
            }
            if self.ceiling is not None:
                row["ceiling_mean"] = _stat(np.mean, self.ceiling[inside])
            rows.append(row)
        return rows

    def save(self, out: str | os.PathLike, atlas=None, picture: bool = True) -> list[Path]:
        """Write the r map to `out` in its extension's format (`offline_outputs`: .npy, .h5,
        .func.gii, .mgh/.mgz; one row), the ceiling beside it (`NAME.ceiling.EXT`), the region
        table (`NAME.regions.csv`) when `atlas` is given and the picture (`NAME.png`); returns
        the files written. Everything is checked before anything is written."""
        targets = output_paths(out, ceiling=self.ceiling is not None, atlas=atlas is not None)
        written = _save_map(targets["map"], self.r, {**self.metadata, "map": "pearson_r"})
        if self.ceiling is not None:
            meta = {**self.metadata, "map": "noise_ceiling"}
            written += _save_map(targets["ceiling"], self.ceiling, meta)
        if atlas is not None:
            written.append(write_region_table(targets["regions"], self.region_rows(atlas)))
        if picture:
            written.append(render_picture(self, targets["picture"]))
        return written


def _stat(fn, x: np.ndarray, *args) -> float:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(fn(x, *args)) if x.size else float("nan")


def output_paths(out: str | os.PathLike, *, ceiling: bool, atlas: bool) -> dict[str, Path]:
    """What `ScoreResult.save(out)` writes, each checked as an output (before any work)."""
    from tribe_stream.offline_outputs import output_files, output_stem, output_suffix
    from tribe_stream.outputs import check_output

    p = Path(out).expanduser()
    stem = output_stem(p)
    output_files(p, words=False)
    paths = {"map": p, "picture": check_output(stem.with_name(stem.name + ".png"), (".png",))}
    if ceiling:
        paths["ceiling"] = stem.with_name(stem.name + ".ceiling" + p.name[len(stem.name) :])
        output_files(paths["ceiling"], words=False)
        assert output_suffix(paths["ceiling"]) == output_suffix(p)
    if atlas:
        paths["regions"] = check_output(stem.with_name(stem.name + ".regions.csv"), (".csv",))
    return paths


def _save_map(path: Path, values: np.ndarray, meta: dict) -> list[Path]:
    from tribe_stream.offline_outputs import save_predictions
    from tribe_stream.prediction import Predictions

    row = np.nan_to_num(np.asarray(values, np.float32), nan=0.0)[None]
    meta = {**meta, "nan_as_zero": True}
    return save_predictions(Predictions(row, np.zeros(1, np.int64), meta), path, words=False)


def write_region_table(path: str | os.PathLike, rows: list[dict[str, Any]]) -> Path:
    """The region rows as CSV (numbers to 6 significant digits, NaN as empty), atomically."""
    import csv

    from tribe_stream.outputs import atomic_write

    def cell(v: Any) -> Any:
        return ("" if not np.isfinite(v) else f"{v:.6g}") if isinstance(v, float) else v

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["region"])
            w.writeheader()
            w.writerows({k: cell(v) for k, v in row.items()} for row in rows)

    return atomic_write(path, write)


def render_picture(result: ScoreResult, path: str | os.PathLike, size=(1000, 720)) -> Path:
    """The r map on the cortex (viridis, from the 2nd percentile down to a multiple of 0.05, to
    1), captioned with the scan and, for demo weights, the untrained tag."""
    from tribe_stream.surface.colors import ColorLimits
    from tribe_stream.viewer.render import picture_text, render_image, save_png

    r = np.asarray(result.r, np.float32)
    low = np.nan_to_num(_stat(np.percentile, r, 2))
    vmin = float(np.clip(np.floor(low / 0.05) * 0.05, -1.0, 0.95))
    s = result.summary()
    runs = f", {result.n_runs} runs" if result.n_runs > 1 else ""
    title, text = picture_text(
        f"predicted vs measured BOLD: r over {s['volumes']} volumes (TR {s['tr_s']:g} s{runs}),"
        f" mean {s['r_mean']:.3f}",
        result.metadata,
    )
    image = render_image(
        np.nan_to_num(r, nan=vmin),
        cmap="viridis",
        size=size,
        limits=ColorLimits(vmin=vmin, vmax=1.0, threshold=vmin - 1.0),
        title=title,
        colorbar_title="r",
    )
    save_png(path, image, text=text)
    return Path(path)


def score(
    pred: str | os.PathLike | np.ndarray,
    bold: BoldInput | Sequence[BoldInput],
    *,
    tr: float | None = None,
    onset: float = 0.0,
    seconds: np.ndarray | None = None,
) -> ScoreResult:
    """Score predictions against measured BOLD (module docs).

    `pred`: a prediction file (any `offline_outputs` reads) or `(T, 20484)` values, row k the
    stimulus second `seconds[k]` (default 0, 1, ...). `bold`: one run (`BoldInput`) or a list of
    runs of the same stimulus (averaged; a noise ceiling). `tr`: seconds between volumes (default:
    what the BOLD file records, else the scan a `predict --tr` file was made for (its onset
    too, when `onset` is 0), else 1 s); `onset`: the stimulus time of the first volume."""
    values, secs, offset, meta = _predictions(pred, seconds)
    runs = [read_bold(r) for r in _runs(bold)]
    made_for = _scan_of(meta)
    if tr is None and made_for is not None and all(r.tr in (None, made_for[0]) for r in runs):
        tr, onset = made_for[0], onset or made_for[1]  # the scan `predict --tr` resampled to
    tr = _tr(tr, runs)
    if not np.isfinite(onset):
        raise InputError(f"--onset {onset}: give the stimulus time of the first volume, in s")
    lengths = {len(r.values) for r in runs}
    if len(lengths) > 1:
        each = ", ".join(f"{r.source}: {len(r.values)}" for r in runs)
        raise InputError(
            f"the runs have different numbers of volumes ({each}); trim them to one length"
        )
    volumes, times = _scan(secs, offset, tr, float(onset), lengths.pop())
    predicted = resample(values, secs, times, offset)
    measured = [r.values[volumes] for r in runs]
    ceiling = noise_ceiling(measured)[0].astype(np.float32) if len(runs) > 1 else None
    measured = measured[0] if len(runs) == 1 else np.mean(measured, axis=0)
    r = pearson(predicted, measured).astype(np.float32)
    rows = ("times_s", "volumes", "tr_s", "onset_s")  # the prediction's rows: not the map's
    meta = {k: v for k, v in meta.items() if k not in rows}
    meta["scan"] = {
        "bold": [r.source for r in runs],
        "tr_s": tr,
        "onset_s": float(onset),
        "volumes": volumes.tolist(),  # those scored: from the first with a prediction
        "times_s": times.tolist(),
    }
    return ScoreResult(
        r, predicted, measured, times, volumes, tr, float(onset), len(runs), ceiling, meta
    )


def _predictions(pred, seconds) -> tuple[np.ndarray, np.ndarray, float, dict]:
    """`(values, seconds, hemodynamic offset, metadata)` of a file or an array."""
    if isinstance(pred, np.ndarray):
        v = np.asarray(pred, np.float32)
        if v.ndim != 2 or v.shape[1] != N_VERTICES:
            raise InputError(f"predictions of shape {v.shape}; expected (T, {N_VERTICES})")
        secs = np.arange(len(v)) if seconds is None else np.asarray(seconds)
        return v, secs, HEMODYNAMIC_OFFSET_S, {}
    from tribe_stream.offline_outputs import read_prediction_file

    f = read_prediction_file(pred)
    return f.values, f.seconds, f.offset, {**f.metadata, "predictions": str(pred)}


def _runs(bold) -> list:
    """`bold` as a list of runs: an array or a path is one run, a sequence is several."""
    if isinstance(bold, (np.ndarray, str, os.PathLike)):
        return [bold]
    runs = list(bold)
    if not runs:
        raise InputError("no measured BOLD given; pass --bold FILE")
    return runs


def _scan_of(meta: dict) -> tuple[float, float] | None:
    """`(tr, onset)` of the scan a `predict --tr --onset` file was resampled to; None at 1 Hz."""
    tr, onset = meta.get("tr_s"), meta.get("onset_s", 0.0)
    numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (tr, onset))
    if not numbers or "times_s" not in meta or not (np.isfinite(tr) and tr > 0):
        return None
    return float(tr), float(onset) if np.isfinite(onset) else 0.0


def _tr(tr: float | None, runs: list[Bold]) -> float:
    recorded = {r.tr for r in runs if r.tr is not None}
    if tr is None:
        if len(recorded) > 1:
            raise InputError(
                f"the runs record different TRs ({sorted(recorded)} s); pass the scan's --tr"
            )
        tr = recorded.pop() if recorded else 1.0
    if not (np.isfinite(tr) and tr > 0):
        raise InputError(f"--tr {tr}: give the seconds between volumes, above 0")
    return float(tr)


def _scan(seconds, offset: float, tr: float, onset: float, n: int):
    """`(volumes, times)` of the scan the predictions cover, or the one line when the BOLD's `n`
    volumes are not that scan."""
    volumes, times = scan_volumes(seconds, tr, onset, offset)
    need = int(volumes[-1]) + 1 if volumes.size else 0
    if n != need or not volumes.size:
        s = np.asarray(seconds, np.float64)
        span = f"{s.min() + offset:g} to {s.max() + offset:g} s" if s.size else "nothing"
        fix = (
            f"cut the BOLD to its first {need} volumes"
            if 0 < need < n
            else "give the predictions of the whole stimulus the scan saw"
        )
        raise InputError(
            f"the measured BOLD has {n} volumes but the predictions reach {need} (a TR {tr:g} s "
            f"scan from onset {onset:g} s, predicted BOLD {span}): pass the scan's --tr and "
            f"--onset, or {fix}"
        )
    return volumes, times
