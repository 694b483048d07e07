"""Volume predictions (the subcortical model's) as NIfTI-1 files, and the name of a second head's
output beside the first's.

`NAME.nii.gz` (or `.nii`): float32 `(X, Y, Z, T)` in MNI152 2 mm with the atlas mask's affine
(sform and qform, MNI code), zeros outside the mask, `pixdim[4]` = TR 1 s (units mm and s);
`NAME.json` beside it: the metadata (model, stimulus, the 5 s hemodynamic offset: row i is the
stimulus `[i, i+1)` s and the predicted BOLD at `i + 5` s), with each voxel's structure counted.
`NAME.dtseries.nii`: a CIFTI-2 dense series of the cortex and, with `--subcortical`, its voxels
as volume models named by structure (`cifti.write_dtseries`), and `NAME.json`. All are written
atomically (`outputs.atomic_write`). `offline_outputs` dispatches these names here
(`save_predictions`, `read_prediction_file`).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tribe_stream.errors import InputError
from tribe_stream.outputs import atomic_write, check_output

if TYPE_CHECKING:
    from tribe_stream.prediction import Predictions
    from tribe_stream.spaces import OutputSpace, VolumeMask

DENSE = ".dtseries.nii"
"""A CIFTI-2 dense series: the cortex and, beside it, the subcortical model's voxels."""
VOLUME_SUFFIXES = (DENSE, ".nii.gz", ".nii")


def volume_suffix(path: str | os.PathLike) -> str | None:
    """`.dtseries.nii` / `.nii.gz` / `.nii` when `path` names one, else None."""
    name = str(path).lower()
    return next((s for s in VOLUME_SUFFIXES if name.endswith(s)), None)


def volume_files(path: str | os.PathLike) -> list[Path]:
    """The files a volume output consists of: the NIfTI and its JSON sidecar."""
    p = Path(path).expanduser()
    suffix = volume_suffix(p)
    if suffix is None:
        raise InputError(f"output {path}: a volume prediction is written as NAME.nii.gz")
    return [p, p.with_name(p.name[: -len(suffix)] + ".json")]


def head_path(path: str | os.PathLike, stem: Path, space: dict) -> Path:
    """Where a second head's output goes beside the output `path` (`stem`: its name without
    the format's suffix), by its space (metadata's `space`): `out/clip.func.gii` ->
    `out/clip.subcortical.nii.gz` (a volume), `out/clip.fsaverage5.func.gii` (a surface)."""
    name = Path(path).name
    suffix = ".nii.gz" if space["kind"] == "volume" else name[len(stem.name) :]
    return stem.with_name(f"{stem.name}.{space['name']}{suffix}")


def is_volume(preds: Predictions, path: str | os.PathLike) -> bool:
    """Whether `preds` go to a volume file: a NIfTI name, or predictions in a volume space."""
    space = preds.metadata.get("space")
    return volume_suffix(path) is not None or (
        isinstance(space, dict) and space.get("kind") == "volume"
    )


def _space(preds: Predictions) -> OutputSpace:
    from tribe_stream.spaces import OutputSpace

    s = preds.metadata.get("space")
    if not isinstance(s, dict) or s.get("kind") != "volume":
        raise InputError(
            f"these predictions are in the {s.get('name') if isinstance(s, dict) else 'fsaverage5'}"
            " space, not a volume; write them as .npy, .h5, .func.gii or .mgz"
        )
    return OutputSpace(s["name"], int(s["n_outputs"]), "volume")


def save_volume(
    preds: Predictions,
    path: str | os.PathLike,
    words: Path | None = None,
    *,
    mask: VolumeMask | None = None,
) -> list[Path]:
    """Write volume predictions `(T, n_voxels)` as `path` (.nii.gz), its JSON sidecar and the
    `words` file (when given); the NIfTI last, so its rename marks the set finished."""
    from tribe_stream.spaces import mask_for
    from tribe_stream.transcripts import write_official_transcript

    files = volume_files(path) + ([Path(words)] if words is not None else [])
    for f in files:
        check_output(f, (f.suffix,))
    if volume_suffix(path) == DENSE:
        return _save_dense(preds, files)
    mask = mask or mask_for(_space(preds))
    values = np.asarray(preds.values, np.float32)
    if values.ndim != 2 or values.shape[1] != len(mask):
        raise InputError(f"volume predictions of shape {values.shape}; expected (T, {len(mask)})")
    meta = _metadata(preds, mask)
    if words is not None:
        write_official_transcript(files[2], preds.words or [])
    text = json.dumps(meta, indent=2, default=str) + "\n"
    atomic_write(files[1], lambda tmp: tmp.write_text(text))
    atomic_write(files[0], lambda tmp: _write_nifti(tmp, mask.to_volume(values), mask, meta))
    return files


def holds_heads(path: str | os.PathLike) -> bool:
    """Whether the output `path` holds the other heads' predictions itself (a dense series)."""
    return volume_suffix(path) == DENSE


def _save_dense(preds: Predictions, files: list[Path]) -> list[Path]:
    """The cortex (`preds`) and its subcortical head, if any, as one CIFTI-2 dense series
    (`cifti.write_dtseries`: time point i at the predicted-BOLD time of row i)."""
    from tribe_stream import N_VERTICES
    from tribe_stream.cifti import write_dtseries
    from tribe_stream.spaces import mask_for
    from tribe_stream.transcripts import write_official_transcript

    if np.shape(preds.values)[1:] != (N_VERTICES,):
        raise InputError(
            "a dense series (.dtseries.nii) holds the fsaverage5 cortex and the subcortical "
            "voxels beside it: predict with a cortical --checkpoint and --subcortical, or write "
            "subcortical predictions alone as .nii.gz"
        )
    head = next((h for h in preds.heads.values() if h.metadata["space"]["kind"] == "volume"), None)
    mask = mask_for(_space(head)) if head is not None else None
    meta = _metadata(preds, mask)
    if head is not None:
        meta["subcortical"] = {"model": head.metadata.get("model"), "space": _space(head).name}
    if len(files) > 2:
        write_official_transcript(files[2], preds.words or [])
    text = json.dumps(meta, indent=2, default=str) + "\n"
    atomic_write(files[1], lambda tmp: tmp.write_text(text))
    times = meta.get("times_s") or [meta["first_second"] + meta["hemodynamic_offset_s"]]
    volume = (mask, head.values) if head is not None else None
    write_dtseries(files[0], preds.values, float(meta["tr_s"]), float(times[0]), volume=volume)
    return files


def _metadata(preds: Predictions, mask: VolumeMask | None) -> dict:
    meta = dict(preds.metadata)
    meta.setdefault("tr_s", 1.0)
    meta.setdefault("hemodynamic_offset_s", 5.0)
    meta["n_seconds"] = len(preds.values)
    meta["first_second"] = int(preds.seconds[0]) if len(preds.seconds) else 0
    if mask is None:
        return meta
    meta["atlas"] = {
        "name": "Harvard-Oxford sub-maxprob-thr50-2mm, less Cortex, White Matter, Brain-Stem, Background",
        "voxels": len(mask),
        "structures": {
            n: int((mask.label == v).sum())
            for v, n in enumerate(mask.names)
            if (mask.label == v).any()
        },
    }
    return meta


def _write_nifti(tmp: Path, data: np.ndarray, mask: VolumeMask, meta: dict) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(data, mask.affine)
    img.header.set_sform(mask.affine, code=4)  # MNI152
    img.header.set_qform(mask.affine, code=4)
    img.header.set_xyzt_units("mm", "sec")
    zooms = img.header.get_zooms()
    img.header.set_zooms((*zooms[:3], float(meta["tr_s"])))
    img.header["descrip"] = f"tribe-stream predicted BOLD, +{meta['hemodynamic_offset_s']:g} s"[:79]
    raw = img.to_bytes()  # the temporary name is not NAME.nii(.gz): compress here, not by name
    if tmp.suffix == ".gz":
        with gzip.open(tmp, "wb", compresslevel=6) as f:
            f.write(raw)
    else:
        tmp.write_bytes(raw)


def read_volume(path: str | os.PathLike, mask: VolumeMask | None = None) -> tuple[np.ndarray, dict]:
    """Read back what `save_volume` wrote: `(values (T, n_voxels) float32, metadata)`;
    the voxels are the mask's, in output order (the atlas read as `spaces.subcortical_mask`);
    of a dense series, its cortex `(T, 20484)`."""
    import nibabel as nib

    from tribe_stream.spaces import subcortical_mask

    files = volume_files(path)
    if not files[0].is_file():
        raise InputError(f"{files[0]} does not exist")
    try:
        meta = json.loads(files[1].read_text()) if files[1].is_file() else {}
    except ValueError:
        meta = {}
    meta = meta if isinstance(meta, dict) else {}
    if volume_suffix(path) == DENSE:  # the cortex (its voxels: `cifti.read_dtseries(volume=)`)
        from tribe_stream.cifti import read_dtseries

        sub = mask or (subcortical_mask() if "subcortical" in meta else None)
        return read_dtseries(files[0], volume=sub).values, meta
    try:
        img = nib.load(str(files[0]))
        data = np.asarray(img.dataobj, np.float32)
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises: one line
        raise InputError(f"cannot read predictions from {path}: {exc}") from None
    mask = mask or subcortical_mask()
    if data.ndim == 3:
        data = data[..., None]
    if data.shape[:3] != mask.shape or not np.allclose(img.affine, mask.affine):
        raise InputError(
            f"{path} is a {data.shape[:3]} volume not on the subcortical mask's grid {mask.shape}"
        )
    return mask.from_volume(data), meta
