"""Cortical regions on fsaverage5: annotations in, one mean per region per second out.

An atlas is a pair of annotations, left then right hemisphere: FreeSurfer `.annot` files or label
GIfTIs (`.label.gii`), with 10,242 labels each (fsaverage5). One made for full fsaverage
(163,842 vertices) is cut to its first 10,242 labels: fsaverage's meshes are nested, so those
are fsaverage5's vertices (said in `Atlas.notes`). Vertices labelled unknown or medial wall
(and FreeSurfer's -1) belong to no region and are left out of every mean. Region names are
hemisphere-prefixed (`lh.V1`, `rh.V1`), left first, in label order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tribe_stream import N_VERTICES, N_VERTICES_HEMI
from tribe_stream.errors import InputError

FSAVERAGE_HEMI = 163842
"""Vertices of one hemisphere of full fsaverage; its first 10,242 are fsaverage5's."""
EXCLUDED = {"unknown", "???", "medial_wall", "medialwall", "medial wall", "corpuscallosum", ""}
"""Label names that mark vertices outside any region (case-insensitive)."""


@dataclass(frozen=True)
class Atlas:
    """Regions over the 20,484 fsaverage5 vertices: `names (R,)`, `labels (20484,)` (region
    index per vertex, -1 for none) and the averaging matrix behind `means`."""

    names: tuple[str, ...]
    labels: np.ndarray
    notes: tuple[str, ...] = ()
    _weights: np.ndarray = field(repr=False, default=None)  # (20484, R) float32, 1/size columns

    @property
    def sizes(self) -> np.ndarray:
        """Vertices per region."""
        return np.bincount(self.labels[self.labels >= 0], minlength=len(self.names))

    def means(self, values: np.ndarray) -> np.ndarray:
        """Region means of `(T, 20484)` (or `(20484,)`) values: `(T, R)` (or `(R,)`) float32."""
        v = np.asarray(values, dtype=np.float32)
        if v.shape[-1] != N_VERTICES:
            raise InputError(f"values of shape {v.shape}; expected (..., {N_VERTICES}) fsaverage5")
        return v @ self._weights

    def top(self, means: np.ndarray, k: int) -> np.ndarray:
        """Indices of the `k` largest region means of each row, largest first: `(T, k)`."""
        m = np.atleast_2d(means)
        k = min(k, m.shape[1])
        idx = np.argpartition(-m, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(m, idx, axis=1), axis=1, kind="stable")
        return np.take_along_axis(idx, order, axis=1)


def _read_one(path: Path) -> tuple[np.ndarray, list[str]]:
    """(labels per vertex as name indices, -1 for none; names) of one hemisphere's file."""
    if not path.is_file():
        hint = f"is a folder; pass the two files: --annot {path}/lh.NAME.annot {path}/rh.NAME.annot"
        raise InputError(f"annotation {path} {hint if path.is_dir() else 'does not exist'}")
    name = path.name.lower()
    try:
        if name.endswith(".gii"):
            import nibabel as nib

            img = nib.load(str(path))
            if not img.darrays:
                raise InputError(f"{path} holds no data array; pass a label GIfTI (.label.gii)")
            keys = np.asarray(img.darrays[0].data).astype(np.int64).reshape(-1)
            table = img.labeltable.get_labels_as_dict()
            names = [table[k] for k in sorted(table)]
            lookup = {k: i for i, k in enumerate(sorted(table))}
            labels = np.array([lookup.get(int(k), -1) for k in keys], dtype=np.int64)
        else:
            from nibabel.freesurfer import read_annot

            labels, _, raw = read_annot(str(path))
            names = [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in raw]
            labels = np.asarray(labels, dtype=np.int64)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - nibabel raises many kinds for a broken file
        raise InputError(
            f"cannot read {path} as an annotation ({type(exc).__name__}: {exc}); pass a "
            "FreeSurfer .annot or a label GIfTI"
        ) from None
    return labels, names


def load_atlas(left: str | os.PathLike, right: str | os.PathLike) -> Atlas:
    """The atlas of a left and a right annotation (see the module docs for the rules)."""
    names: list[str] = []
    labels = np.full(N_VERTICES, -1, dtype=np.int64)
    notes = []
    for hemi, path, offset in (("lh", Path(left), 0), ("rh", Path(right), N_VERTICES_HEMI)):
        lab, raw_names = _read_one(path)
        n = len(lab)
        if n == FSAVERAGE_HEMI:
            lab = lab[:N_VERTICES_HEMI]
            notes.append(
                f"{path.name}: made for fsaverage ({FSAVERAGE_HEMI} vertices); cut to its first "
                f"{N_VERTICES_HEMI}, which are fsaverage5's"
            )
        elif n != N_VERTICES_HEMI:
            raise InputError(
                f"{path} labels {n} vertices; a hemisphere of fsaverage5 has {N_VERTICES_HEMI} "
                f"(or pass one made for full fsaverage, {FSAVERAGE_HEMI})"
            )
        index = {}
        for i, name in enumerate(raw_names):
            if name.strip().lower() in EXCLUDED:
                continue
            used = lab == i
            if used.any():
                index[i] = len(names)
                names.append(f"{hemi}.{name}")
                labels[offset : offset + N_VERTICES_HEMI][used] = index[i]
    if not names:
        raise InputError(f"{left} and {right} name no region (every vertex is unknown/medial wall)")
    sizes = np.bincount(labels[labels >= 0], minlength=len(names)).astype(np.float32)
    weights = np.zeros((N_VERTICES, len(names)), np.float32)
    keep = labels >= 0
    weights[np.nonzero(keep)[0], labels[keep]] = 1.0 / sizes[labels[keep]]
    return Atlas(tuple(names), labels, tuple(notes), weights)
