"""CIFTI-2 dense time series (`.dtseries.nii`) on fsaverage5, read and written with nibabel's
`cifti2` axes API.

A dense time series is a matrix: rows are time points (a `SeriesAxis` in seconds: `start`,
`step` = the TR), columns are brain models (a `BrainModelAxis`). Ours are the two cortical
surfaces, `CIFTI_STRUCTURE_CORTEX_LEFT` and `..._RIGHT`, of 10,242 vertices each (fsaverage5);
a surface model may leave vertices out (the medial wall, as HCP files do): they read as NaN and
`DenseSeries.present` says which are there. Volume models (subcortical voxels) are refused here
in one line; `_STRUCTURE_READERS` is where a reader of another kind of model plugs in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tribe_stream import N_VERTICES, N_VERTICES_HEMI
from tribe_stream.errors import InputError
from tribe_stream.outputs import atomic_write, check_output

SUFFIX = ".dtseries.nii"
SURFACES = {
    "CIFTI_STRUCTURE_CORTEX_LEFT": ("CortexLeft", slice(0, N_VERTICES_HEMI)),
    "CIFTI_STRUCTURE_CORTEX_RIGHT": ("CortexRight", slice(N_VERTICES_HEMI, N_VERTICES)),
}
"""The fsaverage5 surfaces as CIFTI structures: their nibabel names and their columns of ours."""


@dataclass
class DenseSeries:
    """A dense time series on fsaverage5: `values (T, 20484)` float32 (left hemisphere first,
    NaN where the file has no vertex), time point i at `start + i * tr` seconds."""

    values: np.ndarray
    tr: float
    start: float = 0.0
    present: np.ndarray | None = None  # (20484,) bool; None: every vertex

    @property
    def times(self) -> np.ndarray:
        return self.start + self.tr * np.arange(len(self.values))


def is_cifti(path: str | os.PathLike) -> bool:
    """Whether `path` names a CIFTI-2 dense time series (by its name)."""
    return str(path).lower().endswith(SUFFIX)


def _surface_columns(name: str, model, path: Path) -> np.ndarray:
    """Our columns (0..20483) of one surface brain model's vertices."""
    n = model.nvertices.get(name)
    if n != N_VERTICES_HEMI:
        raise InputError(
            f"{path}: {name} is a surface of {n} vertices, not fsaverage5's {N_VERTICES_HEMI}; "
            "resample the data to fsaverage5 (e.g. fMRIPrep --output-spaces fsaverage5)"
        )
    return SURFACES[name][1].start + np.asarray(model.vertex, dtype=np.int64)


def _structure_columns(name: str, model, path: Path) -> np.ndarray:
    if name in SURFACES and not model.volume_mask.any():
        return _surface_columns(name, model, path)
    kind = "volume" if model.volume_mask.any() else "surface"
    raise InputError(
        f"{path}: holds the {kind} model {name}; only the fsaverage5 cortex (left and right "
        "surfaces) is read: drop the other structures (wb_command -cifti-separate)"
    )


def read_dtseries(path: str | os.PathLike) -> DenseSeries:
    """The fsaverage5 cortex of a CIFTI-2 dense time series, or one line saying what is wrong."""
    import nibabel as nib
    from nibabel import cifti2

    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"{p} does not exist")
    try:
        img = nib.load(str(p))
        if not isinstance(img, cifti2.Cifti2Image):
            raise InputError(f"{p} is not a CIFTI-2 file; pass a .dtseries.nii")
        axes = [img.header.get_axis(i) for i in range(img.ndim)]
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - nibabel raises many kinds for a broken file
        raise InputError(f"cannot read {p} as CIFTI-2 ({type(exc).__name__}: {exc})") from None
    kinds = [type(a).__name__ for a in axes]
    if kinds != ["SeriesAxis", "BrainModelAxis"]:
        raise InputError(
            f"{p} has axes {kinds}; a dense time series (.dtseries.nii) has a series of time "
            "points by brain models"
        )
    series, models = axes
    if series.unit != "SECOND" or not series.step > 0:
        raise InputError(
            f"{p}: its series is in {series.unit} steps of {series.step}; need seconds"
        )
    values = np.full((len(data), N_VERTICES), np.nan, np.float32)
    present = np.zeros(N_VERTICES, bool)
    for name, columns, model in models.iter_structures():
        ours = _structure_columns(name, model, p)
        values[:, ours] = data[:, columns]
        present[ours] = True
    return DenseSeries(values, float(series.step), float(series.start), present)


def write_dtseries(
    path: str | os.PathLike,
    values: np.ndarray,
    tr: float = 1.0,
    start: float = 0.0,
    present: np.ndarray | None = None,
) -> Path:
    """Write `values (T, 20484)` as a CIFTI-2 dense time series of the fsaverage5 cortex (the
    vertices in `present` only, when given), atomically; returns the path."""
    from nibabel import cifti2

    p = check_output(path, (".nii",))
    if not is_cifti(p):
        raise InputError(f"{path}: a dense time series is named NAME{SUFFIX}")
    v = np.asarray(values, np.float32)
    if v.ndim != 2 or v.shape[1] != N_VERTICES:
        raise InputError(f"values of shape {v.shape}; expected (T, {N_VERTICES})")
    keep = np.ones(N_VERTICES, bool) if present is None else np.asarray(present, bool)
    models = [
        cifti2.BrainModelAxis.from_mask(keep[rows], name=name) for name, rows in SURFACES.values()
    ]
    series = cifti2.SeriesAxis(start=float(start), step=float(tr), size=len(v), unit="SECOND")
    img = cifti2.Cifti2Image(v[:, keep], header=(series, models[0] + models[1]))
    img.nifti_header.set_intent("ConnDenseSeries")
    return atomic_write(p, lambda tmp: img.to_filename(str(tmp)))
