"""Atlases by name: fetched once through the library that publishes them, kept as fsaverage5
annotations in our cache (`paths.atlas_dir`: `lh.NAME.annot`, `rh.NAME.annot`).

| name | regions | published by | licence: shipped here? |
|---|---|---|---|
| `destrieux` | 74 a hemisphere (aparc.a2009s) | nilearn `fetch_atlas_surf_destrieux` (fsaverage5) | FreeSurfer's atlas; nilearn's description: licence unknown. No |
| `desikan` | 34 a hemisphere (aparc) | MNE `fetch_fsaverage` (fsaverage; cut) | FreeSurfer's licence, no redistribution grant. No |
| `hcp-mmp1` | 180 a hemisphere (Glasser 2016) | MNE `fetch_hcp_mmp_parcellation` (fsaverage; cut) | the HCP-MMP terms of use, which MNE asks each user to accept. No |
| `schaefer-N` | N, N = 100..1000 by 100 (`-17`: 17 networks, else 7) | nilearn `fetch_atlas_schaefer_2018` (MNI volume, projected onto fsaverage5) | MIT (CBIG; nilearn's description). Redistributable, but no copy can be made here offline: none |

Schaefer's parcels are published as a volume; each fsaverage5 vertex takes the parcel most of
its pial-to-white line samples fall in (nilearn's `vol_to_surf`, `nearest_most_frequent`),
keeping only its own hemisphere's parcels. Offline with nothing cached, the library raises and
the user gets one line: the exact call to run once online, or where to put the two files.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from tribe_stream import N_VERTICES_HEMI
from tribe_stream.errors import InputError, install_hint
from tribe_stream.paths import atlas_dir
from tribe_stream.regions import Atlas, load_atlas, read_hemisphere

FIXED = ("destrieux", "desikan", "hcp-mmp1")
SCHAEFER = re.compile(r"^schaefer-(\d+)(?:-(7|17))?$")
NAMES_HELP = "destrieux, desikan, hcp-mmp1, schaefer-N (N = 100..1000 by 100; schaefer-N-17)"

Hemisphere = tuple[np.ndarray, list[str]]  # labels (index into names, -1 for none), names


def check_name(name: str) -> str:
    """The atlas name, lower-cased, or one line listing the names there are."""
    key = str(name).strip().lower()
    m = SCHAEFER.match(key)
    if key in FIXED or (m and int(m[1]) in range(100, 1001, 100)):
        return key
    raise InputError(f"unknown atlas {name!r}: give one of {NAMES_HELP}, or --annot LH RH files")


def atlas_files(name: str) -> tuple[Path, Path]:
    """The cached left and right fsaverage5 annotations of atlas `name`, fetched and cut first
    when they are not there yet."""
    key = check_name(name)
    folder = atlas_dir()
    files = (folder / f"lh.{key}.annot", folder / f"rh.{key}.annot")
    if all(f.is_file() for f in files):
        return files
    fetch, library, call = _source(key)
    try:
        hemis = fetch()
    except ImportError as exc:
        raise InputError(
            f"atlas {key} comes through {library}, which is not installed ({exc}); install it: "
            f"{install_hint('atlases')}"
        ) from None
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - offline, refused licence: the library's own kinds
        why = (str(exc).strip().splitlines() or [""])[0]
        why = why if len(why) <= 100 else why[:100] + "..."
        raise InputError(
            f"atlas {key} is not in {folder} and {library} could not fetch it "
            f'({type(exc).__name__}: {why}); once online run: python -c "{call}" (or put '
            f"lh.{key}.annot and rh.{key}.annot, fsaverage5 or fsaverage, in {folder})"
        ) from None
    atlas_dir(create=True)
    for path, (labels, names) in zip(files, hemis, strict=True):
        _write_annot(path, labels, names)
    return files


def open_atlas(
    atlas: str | None = None,
    annot: tuple[str, str] | list[str] | None = None,
    regions: tuple[str, ...] | list[str] | None = None,
) -> Atlas:
    """The regions asked for: atlas `name` or the `annot` pair (exactly one), limited to
    `regions` by name (`Atlas.select`)."""
    if (atlas is None) == (annot is None):
        raise InputError(
            "give the regions' atlas: --atlas NAME (" + NAMES_HELP + ") or --annot LH RH"
            if atlas is None
            else "give --atlas or --annot, not both"
        )
    if annot is not None and len(annot) != 2:
        raise InputError("--annot takes two annotations: the left, then the right hemisphere")
    found = load_atlas(*(annot if annot is not None else atlas_files(atlas)))
    if atlas is not None:
        found = replace(found, name=check_name(atlas))
    return found.select(regions)


# ----- the libraries -----


def _source(key: str) -> tuple[Callable[[], tuple[Hemisphere, Hemisphere]], str, str]:
    """(fetch, library, the equivalent call a user can run) for atlas `key`."""
    nl, mne_dir = atlas_dir("nilearn"), atlas_dir("mne")
    if key == "destrieux":
        call = f"from nilearn import datasets; datasets.fetch_atlas_surf_destrieux(data_dir='{nl}')"
        return _destrieux, "nilearn", call
    if key == "desikan":
        call = f"import mne; mne.datasets.fetch_fsaverage(subjects_dir='{mne_dir}')"
        return lambda: _mne_annots("aparc"), "MNE-Python", call
    if key == "hcp-mmp1":
        call = (
            f"import mne; mne.datasets.fetch_hcp_mmp_parcellation(subjects_dir='{mne_dir}', "
            "combine=False, accept=True)"
        )  # accept=True: the HCP terms (https://balsa.wustl.edu/WN56), the user's to accept
        return lambda: _mne_annots("HCPMMP1"), "MNE-Python", call
    m = SCHAEFER.match(key)
    n, networks = int(m[1]), int(m[2] or 7)
    call = (
        f"from nilearn import datasets; datasets.fetch_atlas_schaefer_2018(n_rois={n}, "
        f"yeo_networks={networks}, data_dir='{nl}')"
    )
    return lambda: _schaefer(n, networks), "nilearn", call


def _destrieux() -> tuple[Hemisphere, Hemisphere]:
    from nilearn import datasets

    folder = atlas_dir("nilearn", create=True)
    b = datasets.fetch_atlas_surf_destrieux(data_dir=str(folder), verbose=0)
    return _cut(b["map_left"], b["labels"]), _cut(b["map_right"], b["labels"])


@contextmanager
def _subjects_dir_env(folder: Path):
    """MNE reads `SUBJECTS_DIR` from the environment before its config, and writes its config
    when neither has one: set here for the call, so the user's MNE config is left alone."""
    old = os.environ.get("SUBJECTS_DIR")
    os.environ["SUBJECTS_DIR"] = str(folder)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("SUBJECTS_DIR", None)
        else:
            os.environ["SUBJECTS_DIR"] = old


def _mne_annots(parc: str) -> tuple[Hemisphere, Hemisphere]:
    """`fsaverage/label/{lh,rh}.PARC.annot` of our MNE subjects folder, fetched by MNE."""
    import mne

    subjects = atlas_dir("mne", create=True)
    with _subjects_dir_env(subjects):
        if parc == "HCPMMP1":
            mne.datasets.fetch_hcp_mmp_parcellation(
                subjects_dir=subjects, combine=False, verbose="error"
            )
        else:
            mne.datasets.fetch_fsaverage(subjects_dir=subjects, verbose="error")
    out = []
    for hemi in ("lh", "rh"):
        labels, names, _ = read_hemisphere(
            subjects / "fsaverage" / "label" / f"{hemi}.{parc}.annot"
        )
        out.append((labels, names))
    return out[0], out[1]


def _schaefer(n: int, networks: int) -> tuple[Hemisphere, Hemisphere]:
    from nilearn import datasets, surface

    folder = atlas_dir("nilearn", create=True)
    a = datasets.fetch_atlas_schaefer_2018(
        n_rois=n, yeo_networks=networks, data_dir=str(folder), verbose=0
    )
    table = dict(zip(a.lut["index"].astype(int), a.lut["name"].astype(str), strict=True))
    mesh = datasets.load_fsaverage("fsaverage5")
    out = []
    for hemi, tag in (("left", "_LH_"), ("right", "_RH_")):
        sampled = surface.vol_to_surf(
            a.maps, mesh["pial"].parts[hemi], inner_mesh=mesh["white_matter"].parts[hemi],
            interpolation="nearest_most_frequent",
        )  # fmt: skip
        keys = sorted(k for k, name in table.items() if tag in name)
        index = {k: i for i, k in enumerate(keys)}
        values = np.rint(np.asarray(sampled)).astype(np.int64).ravel()
        labels = np.array([index.get(int(v), -1) for v in values], dtype=np.int64)
        out.append((labels, [table[k] for k in keys]))
    return out[0], out[1]


def _cut(labels: np.ndarray, names: list) -> Hemisphere:
    """A library's per-vertex labels on fsaverage5 (cut from fsaverage when made for it)."""
    lab = np.asarray(labels, dtype=np.int64).ravel()
    if len(lab) > N_VERTICES_HEMI:
        lab = lab[:N_VERTICES_HEMI]
    if len(lab) != N_VERTICES_HEMI:
        raise InputError(f"the fetched atlas labels {len(lab)} vertices, not fsaverage5's")
    return lab, [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _write_annot(path: Path, labels: np.ndarray, names: list[str]) -> None:
    """A FreeSurfer annotation of fsaverage5 labels, written atomically; entry 0 `unknown`
    (vertices of no region), each entry its own colour (FreeSurfer keys entries by colour)."""
    from nibabel.freesurfer import write_annot

    from tribe_stream.outputs import atomic_write

    table = ["unknown", *names]
    lab = np.where(np.asarray(labels) >= 0, np.asarray(labels) + 1, 0).astype(np.int32)
    i = np.arange(len(table))
    ctab = np.stack([i % 256, 20 + 40 * (i // 256), (i * 97) % 256, 0 * i, 0 * i], 1)
    write = lambda tmp: write_annot(  # noqa: E731
        str(tmp), lab, ctab.astype(np.int32), [n.encode() for n in table], fill_ctab=True
    )
    atomic_write(path, write)
