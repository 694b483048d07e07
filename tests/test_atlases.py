"""Atlases by name, read through the libraries that publish them: each library's own file layout
is built here (small synthetic annotations and volumes, at the places and names nilearn 0.14 and
MNE 1.13 read), the library is pointed at it through our cache, and `roi --atlas NAME` must read
it, cut it to fsaverage5 and keep it in the cache. Nothing downloads: every fetch that would is
sent to a closed local port, and must end in the one-line message saying how to get the atlas."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from tribe_stream import N_VERTICES, N_VERTICES_HEMI
from tribe_stream.errors import InputError
from tribe_stream.regions import FSAVERAGE_HEMI, load_atlas

nib = pytest.importorskip("nibabel")
pytest.importorskip("nilearn")

OFFLINE = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
"""Any download goes to the discard port, closed here: refused at once, as offline."""


def annot(path: Path, n_vertices: int, names: list[str], seed: int) -> np.ndarray:
    from nibabel.freesurfer import write_annot

    path.parent.mkdir(parents=True, exist_ok=True)
    labels = np.random.default_rng(seed).integers(0, len(names), n_vertices).astype(np.int32)
    ctab = np.zeros((len(names), 5), np.int32)
    ctab[:, 0] = np.arange(len(names)) * 7 % 256
    ctab[:, 1] = np.arange(len(names)) // 36 + 1
    write_annot(str(path), labels, ctab, [n.encode() for n in names], fill_ctab=True)
    return labels


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    """Our cache, every library's data folders and the network: here, empty, closed."""
    root = tmp_path / "cache"
    monkeypatch.setenv("TRIBE_STREAM_CACHE", str(root))
    for var in ("NILEARN_DATA", "NILEARN_SHARED_DATA", "MNE_DATA"):
        monkeypatch.setenv(var, str(tmp_path / "elsewhere"))
    monkeypatch.setenv("_MNE_FAKE_HOME_DIR", str(tmp_path / "home"))  # MNE's config: not ours
    monkeypatch.delenv("SUBJECTS_DIR", raising=False)
    for var, value in OFFLINE.items():
        monkeypatch.setenv(var, value)
    return root / "atlases"


DESTRIEUX = ["Unknown", "G_and_S_frontomargin", "G_temp_sup-Lateral", "G_temp_sup-Plan_tempo",
             "S_temporal_sup", "Medial_wall"]  # fmt: skip


def test_roi_atlas_destrieux_reads_nilearns_files_and_caches_them(tmp_path, cache):
    """nilearn's layout: `destrieux_surface/{left,right}.aparc.a2009s.annot`, fsaverage5."""
    from tribe_stream.atlases import atlas_files

    folder = cache / "nilearn" / "destrieux_surface"
    left = annot(folder / "left.aparc.a2009s.annot", N_VERTICES_HEMI, DESTRIEUX, 1)
    right = annot(folder / "right.aparc.a2009s.annot", N_VERTICES_HEMI, DESTRIEUX, 2)
    values = np.random.default_rng(3).standard_normal((3, N_VERTICES)).astype(np.float32)
    np.save(tmp_path / "pred.npy", values)
    out = tmp_path / "means.csv"
    r = run_cli("roi", str(tmp_path / "pred.npy"), "--atlas", "destrieux", "--out", str(out),
                "--region", "G_temp_sup-Lateral", "--region", "lh.S_temporal")  # fmt: skip
    assert r.returncode == 0, r.stderr
    with open(out) as f:
        rows = list(csv.reader(f))
    names = ["lh.G_temp_sup-Lateral", "lh.S_temporal_sup", "rh.G_temp_sup-Lateral"]
    assert rows[0] == ["second", *names]
    want = [values[:, :N_VERTICES_HEMI][:, left == 2].mean(1),
            values[:, :N_VERTICES_HEMI][:, left == 4].mean(1),
            values[:, N_VERTICES_HEMI:][:, right == 2].mean(1)]  # fmt: skip
    np.testing.assert_allclose(np.array(rows[1:], float)[:, 1:], np.stack(want, 1), atol=1e-7)
    # kept in the cache: the library's copy gone, the atlas still reads (no fetch, no network)
    cached = atlas_files("destrieux")
    assert cached == (cache / "lh.destrieux.annot", cache / "rh.destrieux.annot")
    shutil.rmtree(cache / "nilearn")
    atlas = load_atlas(*atlas_files("destrieux"))
    assert len(atlas.names) == 8  # Unknown and Medial_wall are no regions
    np.testing.assert_array_equal(atlas.labels[:N_VERTICES_HEMI] >= 0, (left > 0) & (left < 5))


def mne_fsaverage(subjects: Path) -> None:
    """Every file of MNE's fsaverage manifests (empty: MNE checks they are there), so that
    `fetch_fsaverage` finds nothing missing."""
    import mne.datasets._fsaverage as manifests

    root = Path(manifests.__file__).parent
    for manifest, base in (("root.txt", subjects), ("bem.txt", subjects / "fsaverage")):
        for name in (root / manifest).read_text().split():
            (base / name).parent.mkdir(parents=True, exist_ok=True)
            (base / name).touch()


@pytest.mark.parametrize(
    ("name", "parc", "names"),
    [
        ("desikan", "aparc", ["unknown", "bankssts", "superiortemporal", "middletemporal"]),
        ("hcp-mmp1", "HCPMMP1", ["???", "L_V1_ROI", "L_VMV1_ROI", "L_MT_ROI"]),
    ],
)
def test_atlases_through_mne_are_cut_from_fsaverage(cache, name, parc, names):
    """MNE's layout: `SUBJECTS_DIR/fsaverage/label/{lh,rh}.PARC.annot`, full fsaverage (163,842
    vertices a hemisphere): cut to the first 10,242 (fsaverage5's) in our cache."""
    pytest.importorskip("mne")
    from tribe_stream.atlases import atlas_files, open_atlas

    subjects = cache / "mne"
    if name == "desikan":
        mne_fsaverage(subjects)
    label = subjects / "fsaverage" / "label"
    left = annot(label / f"lh.{parc}.annot", FSAVERAGE_HEMI, names, 4)
    right = [n.replace("L_", "R_") for n in names]
    annot(label / f"rh.{parc}.annot", FSAVERAGE_HEMI, right, 5)
    lh, rh = atlas_files(name)
    from nibabel.freesurfer import read_annot

    assert len(read_annot(str(lh))[0]) == len(read_annot(str(rh))[0]) == N_VERTICES_HEMI
    atlas = load_atlas(lh, rh)
    assert not atlas.notes  # cut once, when cached
    np.testing.assert_array_equal(atlas.labels[:N_VERTICES_HEMI] >= 0, left[:N_VERTICES_HEMI] > 0)
    shutil.rmtree(subjects)
    if name == "hcp-mmp1":  # a region by part of its name: V1 is not VMV1
        assert open_atlas(name, regions=["v1"]).names == ("lh.L_V1_ROI", "rh.R_V1_ROI")
        assert open_atlas(name, regions=["rh.r_v1"]).names == ("rh.R_V1_ROI",)
        with pytest.raises(
            InputError, match=r"'MT_RIO' names no region of the atlas; close: MT_ROI"
        ):
            open_atlas(name, regions=["MT_RIO"])


@pytest.mark.filterwarnings("ignore:.*not present in the atlas:UserWarning")
def test_schaefer_is_projected_from_nilearns_volume(cache):
    """nilearn's layout: `schaefer_2018/Schaefer2018_100Parcels_7Networks_order.txt` and the
    MNI volume beside it. Each vertex gets the parcel of the volume where it lies, of its own
    hemisphere only."""
    from nilearn import datasets

    from tribe_stream.atlases import atlas_files

    folder = cache / "nilearn" / "schaefer_2018"
    folder.mkdir(parents=True)
    rows = [
        f"{k}\t7Networks_{'LH' if k <= 50 else 'RH'}_Net_{k}\t1\t2\t3\t0" for k in range(1, 101)
    ]
    (folder / "Schaefer2018_100Parcels_7Networks_order.txt").write_text("\n".join(rows) + "\n")
    step, shape, origin = 4.0, (46, 55, 46), np.array([-90.0, -126.0, -72.0])
    centres = origin + step * np.stack(np.indices(shape), -1)
    band = np.clip(((centres[..., 1] + 110) // 40).astype(int), 0, 4)  # 5 bands front to back
    labels = np.where(centres[..., 0] < 0, 1 + band, 51 + band).astype(np.int32)
    affine = np.diag([step, step, step, 1.0])
    affine[:3, 3] = origin
    nib.save(nib.Nifti1Image(labels, affine),
             str(folder / "Schaefer2018_100Parcels_7Networks_order_FSLMNI152_1mm.nii.gz"))  # fmt: skip
    atlas = load_atlas(*atlas_files("schaefer-100"))
    assert all(n.startswith("lh.7Networks_LH_") for n in atlas.names[:5])
    assert all(n.startswith("rh.7Networks_RH_") for n in atlas.names[5:]) and len(atlas.names) == 10
    pial = datasets.load_fsaverage("fsaverage5")["pial"].parts["left"].coordinates
    want = np.clip(((np.asarray(pial)[:, 1] + 110) // 40).astype(int), 0, 4)
    got = atlas.labels[:N_VERTICES_HEMI]
    assert (got[got >= 0] == want[got >= 0]).mean() > 0.9


def test_offline_with_nothing_cached_says_how_to_get_it(tmp_path, cache):
    np.save(tmp_path / "pred.npy", np.zeros((1, N_VERTICES), np.float32))
    r = run_cli("roi", str(tmp_path / "pred.npy"), "--atlas", "destrieux")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "atlas destrieux is not in" in line and "nilearn could not fetch it" in line
    assert f"data_dir='{cache / 'nilearn'}'" in line and "lh.destrieux.annot" in line
    from tribe_stream.atlases import atlas_files

    if pytest.importorskip("mne"):
        with pytest.raises(InputError, match=r"MNE-Python could not fetch it .*accept=True"):
            atlas_files("hcp-mmp1")
    with pytest.raises(InputError, match="unknown atlas 'schaefer-150': give one of"):
        atlas_files("schaefer-150")
    assert not (cache / "lh.destrieux.annot").exists()
