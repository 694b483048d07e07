"""Output spaces: what a brain model's outputs are, read from its checkpoint's config.

A TRIBE v2 checkpoint says where its outputs live in `data.neuro.projection` of its config.yaml
(neuralset's projection classes): `SurfaceProjector` with `mesh: fsaverage5` -> the cortex, 20,484
fsaverage5 vertices (left then right); `MaskProjector` with `mask: subcortical` -> the voxels of
the Harvard-Oxford `sub-maxprob-thr50-2mm` atlas (MNI152, 2 mm) less its Cortex, White Matter,
Brain-Stem and Background labels, in the order of `data[data > 0]` on the atlas as nilearn reads
it (axes flipped to a positive diagonal); 8,802 for the released atlas. Any other space is
refused in one line. A config without a projection (ours: `demo`, converted files) is the cortex.

The atlas is read from our cache (nilearn's layout, `<cache>/nilearn/fsl/data/atlases/...`,
where `fetch_atlas` puts it when online) or an FSL installation (`$FSLDIR/data/atlases/...`).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tribe_stream import N_VERTICES
from tribe_stream.errors import CheckpointError, InputError

ATLAS_NAME = "sub-maxprob-thr50-2mm"
ATLAS_FILE = Path("data", "atlases", "HarvardOxford", f"HarvardOxford-{ATLAS_NAME}.nii.gz")
LABEL_FILE = Path("data", "atlases", "HarvardOxford-Subcortical.xml")
EXCLUDED = ("cortex", "white", "stem", "background")
"""Labels whose name holds one of these are not subcortical outputs (as the official mask)."""
SUBCORTICAL_VOXELS = 8802
"""The released atlas's subcortical voxel count (the released subcortical model's outputs)."""


@dataclass(frozen=True)
class OutputSpace:
    """Where a model's outputs live: `surface` (fsaverage5 vertices) or `volume` (mask voxels)."""

    name: str
    n_outputs: int
    kind: str

    @property
    def volume(self) -> bool:
        return self.kind == "volume"

    def check(self, n_outputs: int, where: str = "the checkpoint") -> OutputSpace:
        if n_outputs != self.n_outputs:
            raise CheckpointError(
                f"{where} has {n_outputs:,} outputs but its space {self.name} has "
                f"{self.n_outputs:,}; use the config.yaml that came with the checkpoint"
            )
        return self


CORTEX = OutputSpace("fsaverage5", N_VERTICES, "surface")
KNOWN = "fsaverage5 cortex (SurfaceProjector, mesh fsaverage5) or the subcortical mask (MaskProjector, mask subcortical)"


def space_of(experiment: dict | None, n_outputs: int) -> OutputSpace:
    """The output space a checkpoint's config names (`data.neuro.projection`); a volume space
    takes `n_outputs` (its voxels are counted when the atlas is read: `mask_for`)."""
    data = (experiment or {}).get("data")
    neuro = data.get("neuro") if isinstance(data, dict) else None
    proj = neuro.get("projection") if isinstance(neuro, dict) else None
    if proj is None:
        return CORTEX if n_outputs == N_VERTICES else OutputSpace("unknown", n_outputs, "surface")
    if not isinstance(proj, dict):
        raise CheckpointError(f"data.neuro.projection is {proj!r}, not a mapping; known: {KNOWN}")
    name = proj.get("name") or (  # a dump without the class name: its fields say which
        "SurfaceProjector" if "mesh" in proj else "MaskProjector" if "mask" in proj else None
    )
    if name == "SurfaceProjector" and proj.get("mesh") == "fsaverage5":
        return CORTEX
    if name == "MaskProjector" and proj.get("mask") == "subcortical":
        if proj.get("resolution", 2) != 2:
            raise CheckpointError(
                f"the checkpoint's subcortical mask is at {proj.get('resolution')} mm; only 2 mm "
                "(the released model's) is known"
            )
        return OutputSpace("subcortical", n_outputs, "volume")
    what = ", ".join(
        f"{k}={v!r}" for k, v in proj.items() if k in ("name", "mesh", "mask", "atlas")
    )
    raise CheckpointError(
        f"the checkpoint predicts an unknown output space ({what}); known: {KNOWN}"
    )


# ----- the subcortical mask -----


@dataclass(frozen=True)
class VolumeMask:
    """The voxels of a volume space in output order: `ijk (N, 3)` indices into `shape`, the
    `affine` (voxel -> MNI mm), each voxel's atlas value `label (N,)` and the atlas `names`."""

    ijk: np.ndarray
    shape: tuple[int, int, int]
    affine: np.ndarray
    label: np.ndarray
    names: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.ijk)

    @property
    def structures(self) -> list[str]:
        """Each output's Harvard-Oxford structure name (`Left Thalamus`, ...)."""
        return [self.names[v] for v in self.label.tolist()]

    def to_volume(self, values: np.ndarray) -> np.ndarray:
        """`(T, N)` outputs -> `(X, Y, Z, T)` float32 (zeros outside the mask)."""
        values = np.asarray(values, np.float32)
        out = np.zeros((*self.shape, values.shape[0]), np.float32)
        out[tuple(self.ijk.T)] = values.T
        return out

    def from_volume(self, volume: np.ndarray) -> np.ndarray:
        """`(X, Y, Z, T)` -> `(T, N)` (the inverse of `to_volume` on the mask)."""
        return np.asarray(volume)[tuple(self.ijk.T)].T


def atlas_roots() -> list[Path]:
    """Where the atlas is looked for: our cache (nilearn's layout), then `$FSLDIR`."""
    from tribe_stream.paths import cache_dir

    roots = [cache_dir("nilearn", "fsl")]
    if os.environ.get("FSLDIR"):
        roots.append(Path(os.environ["FSLDIR"]).expanduser())
    return roots


def _how_to_get() -> str:
    where = " or ".join(str(r / ATLAS_FILE) for r in atlas_roots())
    return (
        f"the Harvard-Oxford {ATLAS_NAME} atlas is not at {where}: run once online "
        "(`python -c 'from tribe_stream.spaces import fetch_atlas; fetch_atlas()'`), or install "
        "FSL and set $FSLDIR"
    )


def fetch_atlas() -> Path:
    """Download the atlas through nilearn into our cache (online); returns its folder."""
    from tribe_stream.paths import cache_dir

    try:
        from nilearn import datasets
    except ImportError:
        from tribe_stream.errors import install_hint

        raise InputError(f"fetching the atlas needs nilearn: {install_hint('viewer')}") from None
    try:
        datasets.fetch_atlas_harvard_oxford(
            ATLAS_NAME, data_dir=str(cache_dir("nilearn", create=True)), verbose=0
        )
    except Exception as exc:  # noqa: BLE001 - no network, a refused download: one line
        raise InputError(f"{_how_to_get()} (downloading failed: {exc})") from None
    return cache_dir("nilearn", "fsl")


def _read_labels(path: Path) -> tuple[str, ...]:
    """Atlas names by image value (0: Background), as nilearn reads FSL's XML (typos fixed)."""
    import xml.etree.ElementTree as ET

    try:
        found = ET.parse(path).findall(".//label")
        names = {int(e.get("index")) + 1: (e.text or "").strip() for e in found}
    except (OSError, ET.ParseError, TypeError, ValueError) as exc:
        raise InputError(
            f"cannot read the atlas labels {path}: {exc}; fetch the atlas again"
        ) from None
    if sorted(names) != list(range(1, len(names) + 1)):
        raise InputError(f"{path}: label indices are not 0..{len(names) - 1}; fetch it again")
    fixed = [re.sub("Ventrical", "Ventricle", names[i]) for i in sorted(names)]
    return ("Background", *(n.replace("Operculum", "Opercular") for n in fixed))


@functools.lru_cache(maxsize=4)
def _read_mask(root: str) -> VolumeMask:
    import nibabel as nib

    path, labels = Path(root) / ATLAS_FILE, Path(root) / LABEL_FILE
    try:
        img = nib.load(str(path))
        affine = img.affine
        if not np.allclose(affine[:3, :3], np.diag(np.diag(affine[:3, :3]))):
            raise ValueError("its affine is not diagonal (not the FSL MNI152 file)")
        img = nib.as_closest_canonical(img)  # axes flipped to a positive diagonal, as nilearn
        data = np.asarray(img.dataobj)
    except (OSError, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise InputError(f"cannot read the atlas {path}: {exc}; fetch it again") from None
    names = _read_labels(labels)
    data = np.rint(data).astype(np.int64)
    if data.ndim != 3 or data.min() < 0 or data.max() >= len(names):
        raise InputError(f"{path} is not a {len(names)}-label 3-D atlas; fetch it again")
    dropped = [i for i, n in enumerate(names) if any(x in n.lower() for x in EXCLUDED)]
    keep = (data > 0) & ~np.isin(data, dropped)
    ijk = np.stack(np.nonzero(keep), axis=1)  # C order: the order of data[data > 0]
    return VolumeMask(
        ijk=ijk.astype(np.int32),
        shape=tuple(int(s) for s in data.shape),
        affine=np.asarray(img.affine, np.float64),
        label=data[keep].astype(np.int32),
        names=names,
        source=str(path),
    )


def subcortical_mask(root: str | os.PathLike | None = None) -> VolumeMask:
    """The subcortical mask from `root` (a folder holding `data/atlases/...`), else the first
    of `atlas_roots()` that holds the atlas; one line saying how to get it when none does."""
    roots = [Path(root)] if root is not None else atlas_roots()
    for r in roots:
        if (r / ATLAS_FILE).is_file() and (r / LABEL_FILE).is_file():
            return _read_mask(str(r.resolve()))
    raise InputError(_how_to_get())


def mask_for(space: OutputSpace, root: str | os.PathLike | None = None) -> VolumeMask:
    """The voxels of a volume space, checked against its output count."""
    if not space.volume:
        raise InputError(f"the {space.name} space is a surface; it has no voxels")
    mask = subcortical_mask(root)
    if len(mask) != space.n_outputs:
        raise InputError(
            f"the atlas {mask.source} has {len(mask):,} subcortical voxels but the model predicts "
            f"{space.n_outputs:,}; use the atlas the model was trained on (FSL's / nilearn's)"
        )
    return mask


def structure_labels(space: OutputSpace, root: str | os.PathLike | None = None) -> list[str]:
    """Each output's structure name (`Left Thalamus`, ...) for a volume space (for `roi`)."""
    return mask_for(space, root).structures


def structure_means(
    values: np.ndarray, space: OutputSpace, root: str | os.PathLike | None = None
) -> dict[str, np.ndarray]:
    """`{structure: (T,) mean over its voxels}` of `(T, N)` outputs, in atlas order."""
    mask = mask_for(space, root)
    values = np.asarray(values, np.float32).reshape(-1, len(mask))
    return {
        mask.names[v]: values[:, mask.label == v].mean(axis=1)
        for v in sorted(set(mask.label.tolist()))
    }


def space_metadata(space: OutputSpace) -> dict[str, Any]:
    return {"name": space.name, "n_outputs": space.n_outputs, "kind": space.kind}
