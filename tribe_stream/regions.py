"""Cortical regions on fsaverage5: annotations in, one mean per region per second out.

An atlas is a pair of annotations, left then right hemisphere: FreeSurfer `.annot` files or label
GIfTIs (`.label.gii`), with 10,242 labels each (fsaverage5). One made for full fsaverage
(163,842 vertices) is cut to its first 10,242 labels: fsaverage's meshes are nested, so those
are fsaverage5's vertices (said in `Atlas.notes`). Vertices labelled unknown or medial wall
(and FreeSurfer's -1) belong to no region and are left out of every mean. Region names are
hemisphere-prefixed (`lh.V1`, `rh.V1`), left first, in label order. Regions are picked by name
(`Atlas.select`, `--region`); atlases by name (`destrieux`, ...) come from `atlases.py`.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
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
    name: str = ""
    """What the atlas is called (`destrieux`, or its annotation files' names)."""

    @property
    def sizes(self) -> np.ndarray:
        """Vertices per region."""
        return np.bincount(self.labels[self.labels >= 0], minlength=len(self.names))

    def means(self, values: np.ndarray) -> np.ndarray:
        """Region means of `(T, 20484)` (or `(20484,)`) values: `(T, R)` (or `(R,)`) float32."""
        v = np.asarray(values, dtype=np.float32)
        if v.shape[-1] != len(self.labels):
            space = "fsaverage5" if len(self.labels) == N_VERTICES else self.name
            raise InputError(
                f"values of shape {v.shape}; expected (..., {len(self.labels)}) {space}"
            )
        return v @ self._weights

    def top(self, means: np.ndarray, k: int) -> np.ndarray:
        """Indices of the `k` largest region means of each row, largest first: `(T, k)`."""
        m = np.atleast_2d(means)
        k = min(k, m.shape[1])
        idx = np.argpartition(-m, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(m, idx, axis=1), axis=1, kind="stable")
        return np.take_along_axis(idx, order, axis=1)

    def select(self, patterns: tuple[str, ...] | list[str] | None) -> Atlas:
        """This atlas with only the regions `patterns` name (`find_regions`, their union), in
        atlas order; itself when `patterns` is empty."""
        if not patterns:
            return self
        keep = sorted({i for p in patterns for i in find_regions(self.names, p)})
        new = np.full(len(self.names), -1, dtype=np.int64)
        new[keep] = np.arange(len(keep))
        labels = np.where(self.labels >= 0, new[np.maximum(self.labels, 0)], -1)
        return Atlas(tuple(self.names[i] for i in keep), labels, self.notes,
                     self._weights[:, keep], self.name)  # fmt: skip

    def mask(self, values: np.ndarray) -> np.ndarray:
        """`values` (..., 20484) as float32 with NaN on every vertex outside the regions (the
        viewer draws NaN as bare cortex)."""
        v = np.array(values, dtype=np.float32)
        v[..., self.labels < 0] = np.nan
        return v


_HEMI_PREFIX = re.compile(r"^(?:(?:lh|rh)\.)?(?:[lr]_)?", re.IGNORECASE)
_HEMI_INFIX = re.compile(r"_(?:lh|rh)_", re.IGNORECASE)


def _base(name: str) -> str:
    """A region's name without its hemisphere marks (`lh.`, HCP's `L_`, Schaefer's `_LH_`)."""
    return _HEMI_INFIX.sub("_", _HEMI_PREFIX.sub("", name, count=1))


def find_regions(names: tuple[str, ...] | list[str], pattern: str) -> list[int]:
    """Indices of the regions `pattern` names, case-insensitive: a `*`/`?` pattern takes every
    match; else a whole name (with or without `lh.`/`rh.`), else a part of one naming a single
    region (both hemispheres; a part bounded by `_`, `-`, `.` wins over one inside a word).
    Unknown or ambiguous: one `InputError` line with the close or matching names."""
    p = pattern.strip().lower()
    low = [n.lower() for n in names]
    if not p:
        raise InputError("--region needs a name, e.g. --region G_temp_sup-Lateral")
    if "*" in p or "?" in p:
        hits = [i for i, n in enumerate(low) if fnmatch.fnmatchcase(n, p)
                or fnmatch.fnmatchcase(_base(n), p)]  # fmt: skip
    else:
        hits = [i for i, n in enumerate(low) if p in (n, _base(n))]
        if not hits:
            hits = [i for i, n in enumerate(low) if p in n]
            bounded = [i for i in hits if re.search(rf"(^|[^a-z0-9]){re.escape(p)}($|[^a-z0-9])",
                                                    low[i])]  # fmt: skip
            hits = bounded or hits
            found = sorted({_base(names[i]) for i in hits})
            if len(found) > 1:
                shown = ", ".join(found[:8]) + (
                    f" (+{len(found) - 8} more)" if len(found) > 8 else ""
                )
                raise InputError(
                    f"--region {pattern!r} is ambiguous: {shown}; give one of them, repeat "
                    f"--region for several, or '*{pattern}*' for all"
                )
    if not hits:
        bases = sorted({_base(n) for n in names})
        close = difflib.get_close_matches(p, [b.lower() for b in bases], n=6, cutoff=0.5)
        near = [b for b in bases if b.lower() in close] or bases[:6]
        raise InputError(
            f"--region {pattern!r} names no region of the atlas; close: {', '.join(near)}"
        )
    return hits


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


def read_hemisphere(path: str | os.PathLike) -> tuple[np.ndarray, list[str], str | None]:
    """One hemisphere's labels on fsaverage5 (name indices, -1 for none; cut from full fsaverage
    when made for it), its names, and the note saying it was cut (else None)."""
    path = Path(path)
    lab, raw_names = _read_one(path)
    n, note = len(lab), None
    if n == FSAVERAGE_HEMI:
        lab = lab[:N_VERTICES_HEMI]
        note = (
            f"{path.name}: made for fsaverage ({FSAVERAGE_HEMI} vertices); cut to its first "
            f"{N_VERTICES_HEMI}, which are fsaverage5's"
        )
    elif n != N_VERTICES_HEMI:
        raise InputError(
            f"{path} labels {n} vertices; a hemisphere of fsaverage5 has {N_VERTICES_HEMI} "
            f"(or pass one made for full fsaverage, {FSAVERAGE_HEMI})"
        )
    return lab, raw_names, note


def _averaging(labels: np.ndarray, n_regions: int) -> np.ndarray:
    """The `(outputs, regions)` matrix whose product with values gives each region's mean."""
    sizes = np.bincount(labels[labels >= 0], minlength=n_regions).astype(np.float32)
    weights = np.zeros((len(labels), n_regions), np.float32)
    keep = labels >= 0
    weights[np.nonzero(keep)[0], labels[keep]] = 1.0 / sizes[labels[keep]]
    return weights


def structure_atlas(structures: list[str], name: str) -> Atlas:
    """Regions of a volume's outputs from each output's structure name (the subcortical
    model's voxels: `spaces.VolumeMask.structures`), in order of first appearance."""
    names = list(dict.fromkeys(structures))
    index = {n: i for i, n in enumerate(names)}
    labels = np.array([index[s] for s in structures], dtype=np.int64)
    return Atlas(tuple(names), labels, (), _averaging(labels, len(names)), name)


def load_atlas(left: str | os.PathLike, right: str | os.PathLike) -> Atlas:
    """The atlas of a left and a right annotation (see the module docs for the rules)."""
    names: list[str] = []
    labels = np.full(N_VERTICES, -1, dtype=np.int64)
    notes = []
    for hemi, path, offset in (("lh", Path(left), 0), ("rh", Path(right), N_VERTICES_HEMI)):
        lab, raw_names, note = read_hemisphere(path)
        if note:
            notes.append(note)
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
    return Atlas(
        tuple(names), labels, tuple(notes), _averaging(labels, len(names)),
        f"{Path(left).name} {Path(right).name}",
    )  # fmt: skip
