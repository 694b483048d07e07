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


def test_regions_by_name_whole_part_pattern_ambiguous_unknown():
    from tribe_stream.regions import find_regions

    names = ("lh.G_temp_sup-Lateral", "lh.G_temp_sup-Plan_tempo", "lh.S_temporal_sup",
             "rh.G_temp_sup-Lateral", "lh.L_V1_ROI", "lh.L_VMV1_ROI", "rh.R_V1_ROI",
             "lh.7Networks_LH_Vis_1", "rh.7Networks_RH_Vis_1")  # fmt: skip
    assert find_regions(names, "g_TEMP_sup-lateral") == [0, 3]  # any case, both hemispheres
    assert find_regions(names, "rh.G_temp_sup-Lateral") == [3]
    assert find_regions(names, "Plan_tem") == [1]  # a part naming one region
    assert find_regions(names, "V1") == [4, 6]  # bounded by `_`: not VMV1; L_/R_ are hemispheres
    assert find_regions(names, "Vis_1") == [7, 8]  # Schaefer's _LH_/_RH_ too
    assert find_regions(names, "*temp*") == [0, 1, 2, 3]
    with pytest.raises(
        InputError,
        match=r"'temp_sup' is ambiguous: G_temp_sup-Lateral, "
        r"G_temp_sup-Plan_tempo; give one of them, .* or '\*temp_sup\*' for all",
    ):
        find_regions(names, "temp_sup")  # fmt: skip
    with pytest.raises(
        InputError,
        match=r"'G_temp_sup-Lateal' names no region .*close: "
        r"G_temp_sup-Lateral",
    ):
        find_regions(names, "G_temp_sup-Lateal")  # fmt: skip


def test_selected_regions_keep_their_means_and_mask_the_rest(atlas_files):
    (lh, _), (rh, _) = atlas_files
    atlas = load_atlas(lh, rh)
    some = atlas.select(["R1", "lh.R3"])
    assert some.names == ("lh.R1", "lh.R3", "rh.R1")
    values = np.random.default_rng(7).standard_normal((3, N_VERTICES)).astype(np.float32)
    full = atlas.means(values)
    cols = [atlas.names.index(n) for n in some.names]
    np.testing.assert_allclose(some.means(values), full[:, cols], rtol=1e-5, atol=1e-6)
    assert (some.sizes == atlas.sizes[cols]).all()
    masked = some.mask(values)
    inside = np.isin(atlas.labels, cols)
    assert np.isnan(masked[:, ~inside]).all() and (masked[:, inside] == values[:, inside]).all()
    assert atlas.select(None) is atlas


def test_render_region_draws_only_it_on_bare_cortex(tmp_path, atlas_files):
    """`render --region` is the map with NaN (bare cortex) outside the region, pixel for pixel;
    with every value positive and no threshold, only the masking leaves grey cortex."""
    from PIL import Image

    (lh, (llab, _)), (rh, (rlab, _)) = atlas_files
    values = np.random.default_rng(8).uniform(1, 2, N_VERTICES).astype(np.float32)
    np.save(tmp_path / "pred.npy", values)
    masked = values.copy()
    masked[np.concatenate([llab, rlab]) != 2] = np.nan  # R1 is label 2 (after unknown, R0)
    np.save(tmp_path / "masked.npy", masked)
    common = ("--threshold", "0", "--size", "320x240", "--title", "t", "--cmap", "hot")
    r = run_cli("render", str(tmp_path / "pred.npy"), "--out", str(tmp_path / "a.png"),
                "--annot", str(lh), str(rh), "--region", "R1", *common)  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = run_cli("render", str(tmp_path / "masked.npy"), "--out", str(tmp_path / "b.png"), *common)
    assert r.returncode == 0, r.stderr
    a = np.asarray(Image.open(tmp_path / "a.png"))
    np.testing.assert_array_equal(a, np.asarray(Image.open(tmp_path / "b.png")))
    rgb = a[..., :3].astype(int)
    grey = (np.ptp(rgb, axis=-1) < 12) & (rgb.sum(-1) > 200)
    assert grey.mean() > 0.05, grey.mean()
    r = run_cli("render", str(tmp_path / "pred.npy"), "--out", str(tmp_path / "c.png"),
                "--annot", str(lh), str(rh), "--region", "R9")  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().endswith(
        "--region 'R9' names no region of the atlas; close: R0, R1, R2, R3, R4"
    )
