"""Region read-outs: annotations the test writes (nibabel), means against NumPy, top-K, the
fsaverage cut, wrong sizes, and `tribe-stream roi` on our prediction files."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import run_cli

from tribe_stream import N_VERTICES, N_VERTICES_HEMI
from tribe_stream.errors import InputError
from tribe_stream.regions import FSAVERAGE_HEMI, load_atlas

nib = pytest.importorskip("nibabel")


def write_annot(path, n_vertices: int, n_regions: int, seed: int, unknown: bool = True):
    """Random labels: region 0 is `unknown` (left out of every mean) when `unknown`."""
    from nibabel.freesurfer import write_annot as write

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_regions, n_vertices).astype(np.int32)
    names = (["unknown"] if unknown else []) + [f"R{i}" for i in range(n_regions - unknown)]
    ctab = np.zeros((n_regions, 5), np.int32)
    ctab[:, :3] = rng.integers(0, 255, (n_regions, 3))
    ctab[:, 4] = np.arange(n_regions)
    write(str(path), labels, ctab, [n.encode() for n in names], fill_ctab=True)
    return labels, names


@pytest.fixture()
def atlas_files(tmp_path):
    lh, rh = tmp_path / "lh.test.annot", tmp_path / "rh.test.annot"
    return (lh, write_annot(lh, N_VERTICES_HEMI, 6, 0)), (
        rh,
        write_annot(rh, N_VERTICES_HEMI, 5, 1),
    )


def numpy_means(values, labels, names, offset, hemi):
    out = {}
    for i, name in enumerate(names):
        if name == "unknown":
            continue
        rows = np.nonzero(labels == i)[0] + offset
        out[f"{hemi}.{name}"] = values[:, rows].mean(axis=1)
    return out


def test_region_means_equal_numpy_and_unknown_is_left_out(atlas_files):
    (lh, (llab, lnames)), (rh, (rlab, rnames)) = atlas_files
    atlas = load_atlas(lh, rh)
    assert atlas.names == tuple(f"lh.R{i}" for i in range(5)) + tuple(f"rh.R{i}" for i in range(4))
    values = np.random.default_rng(2).standard_normal((7, N_VERTICES)).astype(np.float32)
    want = numpy_means(values, llab, lnames, 0, "lh") | numpy_means(
        values, rlab, rnames, N_VERTICES_HEMI, "rh"
    )
    got = atlas.means(values)
    for j, name in enumerate(atlas.names):
        np.testing.assert_allclose(got[:, j], want[name], rtol=1e-5, atol=1e-6)
    # a huge value on `unknown` vertices changes nothing
    values[:, np.nonzero(llab == 0)[0]] = 1e6
    np.testing.assert_allclose(atlas.means(values), got, rtol=1e-5, atol=1e-5)
    top = atlas.top(got, 3)
    for t in range(7):
        assert list(top[t]) == list(np.argsort(-got[t])[:3])


def test_fsaverage_sized_annotations_are_cut_and_wrong_sizes_refused(tmp_path):
    lh, rh = tmp_path / "lh.fs.annot", tmp_path / "rh.fs.annot"
    llab, _ = write_annot(lh, FSAVERAGE_HEMI, 4, 3)
    write_annot(rh, FSAVERAGE_HEMI, 4, 4)
    atlas = load_atlas(lh, rh)
    assert len(atlas.notes) == 2 and "cut to its first 10242" in atlas.notes[0]
    assert (atlas.labels[:N_VERTICES_HEMI] >= 0).sum() == (llab[:N_VERTICES_HEMI] != 0).sum()
    bad = tmp_path / "lh.bad.annot"
    write_annot(bad, 40962, 4, 5)  # fsaverage6
    with pytest.raises(
        InputError, match=r"labels 40962 vertices; a hemisphere of fsaverage5 has 10242"
    ):
        load_atlas(bad, rh)
    (tmp_path / "junk.annot").write_bytes(b"nope")
    with pytest.raises(InputError, match="cannot read .* as an annotation"):
        load_atlas(tmp_path / "junk.annot", rh)


def test_label_gifti_annotations(tmp_path, atlas_files):
    from nibabel.gifti import GiftiDataArray, GiftiImage, GiftiLabel, GiftiLabelTable

    (lh, (llab, lnames)), (rh, _) = atlas_files
    table = GiftiLabelTable()
    for key, name in enumerate(lnames):
        label = GiftiLabel(key=key)
        label.label = name
        table.labels.append(label)
    img = GiftiImage(labeltable=table, darrays=[GiftiDataArray(llab.astype(np.int32))])
    gii = tmp_path / "lh.test.label.gii"
    nib.save(img, str(gii))
    assert load_atlas(gii, rh).names == load_atlas(lh, rh).names


def test_roi_command_on_prediction_files(tmp_path, atlas_files):
    (lh, _), (rh, _) = atlas_files
    values = np.random.default_rng(5).standard_normal((4, N_VERTICES)).astype(np.float32)
    np.save(tmp_path / "pred.npy", values)
    out = tmp_path / "table.csv"
    r = run_cli("roi", str(tmp_path / "pred.npy"), "--annot", str(lh), str(rh), "--out", str(out),
                "--top", "2")  # fmt: skip
    assert r.returncode == 0, r.stderr
    with open(out) as f:
        rows = list(csv.reader(f))
    atlas = load_atlas(lh, rh)
    assert rows[0] == ["second", *atlas.names] and len(rows) == 5
    got = np.array([[float(x) for x in row[1:]] for row in rows[1:]])
    np.testing.assert_allclose(got, atlas.means(values), rtol=1e-5)
    with open(tmp_path / "table.top.csv") as f:
        top = list(csv.reader(f))
    assert top[0] == ["second", "rank", "region", "mean"] and len(top) == 1 + 4 * 2
    best = atlas.names[int(np.argmax(atlas.means(values)[0]))]
    assert top[1][:3] == ["0", "1", best]
    assert "most active regions" in r.stdout
    # `--top 2` prints two regions (before: always ten)
    printed = [name for name in atlas.names if f" {name} " in r.stdout]
    assert len(printed) == 2, r.stdout
    r = run_cli("roi", str(tmp_path / "pred.npy"), "--annot", str(lh))
    assert r.returncode == 2 and "--annot" in r.stderr and "Traceback" not in r.stderr


def test_roi_with_a_folder_for_annot_says_it_is_a_folder(tmp_path, atlas_files):
    """Before: a folder passed as the annotation was said not to exist."""
    (lh, _), _ = atlas_files
    np.save(tmp_path / "pred.npy", np.zeros((1, N_VERTICES), np.float32))
    r = run_cli("roi", str(tmp_path / "pred.npy"), "--annot", str(tmp_path), str(lh))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    line = r.stderr.strip()
    assert f"annotation {tmp_path} is a folder; pass the two files" in line, line
    assert "does not exist" not in line and len(line.splitlines()) == 1
