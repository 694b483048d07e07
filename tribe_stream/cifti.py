"""CIFTI-2 dense time series (`.dtseries.nii`) on fsaverage5, read and written with nibabel's
`cifti2` axes API.

A dense time series is a matrix: rows are time points (a `SeriesAxis` in seconds: `start`,
`step` = the TR), columns are brain models (a `BrainModelAxis`). Ours are the two cortical
surfaces, `CIFTI_STRUCTURE_CORTEX_LEFT` and `..._RIGHT`, of 10,242 vertices each (fsaverage5);
a surface model may leave vertices out (the medial wall, as HCP files do): they read as NaN and
`DenseSeries.present` says which are there. Volume models (subcortical voxels) are refused in
one line, unless the subcortical mask is given (`read_dtseries(volume=)`): `predict`'s dense
series holds the subcortical model's voxels too (`write_dtseries(volume=)`), one volume model per
Harvard-Oxford structure (`volume_structure`), on the mask's MNI152 2 mm grid.
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
    volume: np.ndarray | None = None  # (T, N) the subcortical voxels, with `read_dtseries(volume=)`

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


def volume_structure(name: str) -> str:
    """A Harvard-Oxford structure's CIFTI-2 name: `Left Thalamus` -> `CIFTI_STRUCTURE_THALAMUS_LEFT`
    (the lateral ventricles, which CIFTI does not name, -> `CIFTI_STRUCTURE_OTHER`)."""
    side, _, part = name.partition(" ")
    if part == "Lateral Ventricle" or side not in ("Left", "Right"):
        return "CIFTI_STRUCTURE_OTHER"
    return f"CIFTI_STRUCTURE_{part.upper()}_{side.upper()}"


def _volume_models(mask) -> list[tuple[object, np.ndarray]]:
    """The subcortical mask (`spaces.VolumeMask`) as volume brain models, one per CIFTI
    structure, each with our output columns of its voxels (in the model's C order)."""
    from nibabel import cifti2

    groups: dict[str, list[int]] = {}
    for v, name in enumerate(mask.names):
        if (mask.label == v).any():
            groups.setdefault(volume_structure(name), []).append(v)
    models = []
    for name, values in groups.items():
        ours = np.nonzero(np.isin(mask.label, values))[0]  # output order is C order: kept
        grid = np.zeros(mask.shape, bool)
        grid[tuple(mask.ijk[ours].T)] = True
        models.append((cifti2.BrainModelAxis.from_mask(grid, name=name, affine=mask.affine), ours))
    return models


def _volume_columns(model, mask, path: Path) -> np.ndarray:
    """Our subcortical columns of one volume model's voxels (each must be one of the mask's)."""
    index = {tuple(ijk): i for i, ijk in enumerate(mask.ijk.tolist())}
    same_grid = tuple(model.volume_shape) == mask.shape and np.allclose(model.affine, mask.affine)
    cols = [index.get(tuple(v)) for v in np.asarray(model.voxel).tolist()] if same_grid else [None]
    if any(c is None for c in cols):
        raise InputError(f"{path}: its volume models are not on the subcortical mask's voxels")
    return np.asarray(cols, np.int64)


def read_dtseries(path: str | os.PathLike, volume=None) -> DenseSeries:
    """The fsaverage5 cortex of a CIFTI-2 dense time series, or one line saying what is wrong;
    with `volume` (a `spaces.VolumeMask`), its volume models too, as `DenseSeries.volume`."""
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
    sub = None if volume is None else np.full((len(data), len(volume)), np.nan, np.float32)
    for name, columns, model in models.iter_structures():
        if sub is not None and model.volume_mask.any():
            sub[:, _volume_columns(model, volume, p)] = data[:, columns]
            continue
        ours = _structure_columns(name, model, p)
        values[:, ours] = data[:, columns]
        present[ours] = True
    return DenseSeries(values, float(series.step), float(series.start), present, sub)


def write_dtseries(
    path: str | os.PathLike,
    values: np.ndarray,
    tr: float = 1.0,
    start: float = 0.0,
    present: np.ndarray | None = None,
    volume: tuple[object, np.ndarray] | None = None,
) -> Path:
    """Write `values (T, 20484)` as a CIFTI-2 dense time series of the fsaverage5 cortex (the
    vertices in `present` only, when given), atomically; returns the path. `volume`: `(mask,
    (T, N) values)`, the subcortical voxels too, as volume models named by structure."""
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
    axis, data = models[0] + models[1], [v[:, keep]]
    if volume is not None:
        mask, sub = volume[0], np.asarray(volume[1], np.float32)
        if sub.shape != (len(v), len(mask)):
            raise InputError(
                f"volume values of shape {sub.shape}; expected ({len(v)}, {len(mask)})"
            )
        for model, ours in _volume_models(mask):
            axis, data = axis + model, [*data, sub[:, ours]]
    img = cifti2.Cifti2Image(np.concatenate(data, axis=1), header=(series, axis))
    img.nifti_header.set_intent("ConnDenseSeries")
    return atomic_write(p, lambda tmp: img.to_filename(str(tmp)))
