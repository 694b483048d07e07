"""The subcortical model beside the cortical one: the output space read from the checkpoint's
config, the Harvard-Oxford voxel order the official code takes, NIfTI outputs read back, and two
brain models on one extraction (tests/fixtures/subcortical: tools/make_subcortical_fixture.py)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tribe_stream.errors import CheckpointError, InputError
from tribe_stream.spaces import CORTEX, OutputSpace, space_of, structure_means, subcortical_mask

FIXTURE = Path(__file__).parent / "fixtures" / "subcortical"
ATLAS = FIXTURE / "fsl"
MODEL = FIXTURE / "model"
N_VOXELS = 658  # the synthetic atlas's subcortical voxels (the released one: 8,802)


@pytest.fixture
def fsl(monkeypatch, tmp_path):
    """The synthetic atlas as an FSL installation; our cache empty."""
    monkeypatch.setenv("FSLDIR", str(ATLAS))
    monkeypatch.setenv("TRIBE_STREAM_CACHE", str(tmp_path / "cache"))
    return ATLAS


def test_voxel_order_equals_the_official_mask():
    """neuralset's MaskProjector(mask="subcortical") on the same atlas (recorded by the tool):
    the same voxels in the same order, the same affine (x flipped to a positive diagonal, as
    nilearn reads FSL's radiological file), labels and names (FSL's "Ventrical" corrected)."""
    official = np.load(FIXTURE / "official_order.npz")
    mask = subcortical_mask(ATLAS)
    assert len(mask) == N_VOXELS == len(official["ijk"])
    np.testing.assert_array_equal(mask.ijk, official["ijk"])
    np.testing.assert_array_equal(mask.label, official["label"])
    np.testing.assert_array_equal(mask.affine, official["affine"])
    assert mask.shape == tuple(official["shape"])
    assert list(mask.names) == official["labels"].tolist()
    assert mask.affine[0, 0] > 0  # the file on disk has x decreasing
    kept = set(mask.structures)
    assert "Left Thalamus" in kept and "Right Lateral Ventricle" in kept
    assert not any(w in s for s in kept for w in ("Cortex", "White", "Stem"))


def test_the_output_space_comes_from_the_config():
    from tribe_stream.model.loading import load_brain_model

    sub = load_brain_model(MODEL)
    assert sub.space == OutputSpace("subcortical", N_VOXELS, "volume")
    assert sub.identity["space"] == "subcortical"
    small = Path(__file__).parent / "fixtures" / "tribev2-small"
    assert load_brain_model(small).space == CORTEX  # SurfaceProjector, mesh fsaverage5
    assert space_of({}, 20484) == CORTEX  # no projection (demo, converted): the cortex
    assert space_of({"data": {"neuro": {"projection": {"mask": "subcortical"}}}}, 5).volume
    for proj in (
        {"name": "AtlasProjector", "atlas": "schaefer_2018"},
        {"name": "MaskProjector", "mask": "mni152_gm"},
        {"name": "SurfaceProjector", "mesh": "fsaverage6"},
    ):
        with pytest.raises(CheckpointError, match="unknown output space") as e:
            space_of({"data": {"neuro": {"projection": proj}}}, 100)
        assert "\n" not in str(e.value) and "known: fsaverage5" in str(e.value)


def test_an_unknown_space_is_refused_before_the_weights_load(tmp_path):
    from tribe_stream.model.loading import load_brain_model

    folder = tmp_path / "model"
    shutil.copytree(MODEL, folder)
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    cfg["data"]["neuro"]["projection"] = {"name": "MaskProjector", "mask": "mni152_brain"}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "best.ckpt").write_bytes(b"not read")  # refused before this is read
    with pytest.raises(CheckpointError, match="mask='mni152_brain'"):
        load_brain_model(folder)


def test_a_second_head_that_cannot_resolve_is_refused_before_any_model_loads(tmp_path):
    from tribe_stream.options import StreamOptions

    with pytest.raises(CheckpointError, match="does not exist"):
        StreamOptions(checkpoint="demo", subcortical=str(tmp_path / "nope")).validate()
    assert StreamOptions(checkpoint="demo", subcortical="random").validate().subcortical
    assert StreamOptions(checkpoint="demo", subcortical=str(MODEL)).validate().subcortical


def test_the_official_subcortical_model_is_reproduced():
    """tribev2's FmriEncoder with the subcortical outputs (random weights, official layout):
    our loader and engine give its outputs."""
    from tribe_stream.engines import make_engine
    from tribe_stream.model.loading import load_brain_model

    engine = make_engine("torch", load_brain_model(MODEL), device="cpu", dtype="float32")
    with np.load(MODEL / "cases.npz") as z:
        window = {m: z[m] for m in ("text", "audio", "video")}
        expected = z["expected"]
    out = engine.run(window, pool=True)
    assert out.shape == (100, N_VOXELS)
    np.testing.assert_allclose(out, expected.T, atol=1e-4, rtol=0)


def _predictions(values, meta_space):
    from tribe_stream.prediction import Predictions

    seconds = np.arange(len(values))
    meta = {"space": meta_space, "model": {"source": "test"}, "stimulus": "clip.mp4"}
    return Predictions(values=values, seconds=seconds, metadata=meta)


def test_nifti_outputs_read_back_equal(tmp_path, fsl):
    import nibabel as nib

    from tribe_stream.offline_outputs import file_names, read_prediction_file
    from tribe_stream.spaces import space_metadata

    space = OutputSpace("subcortical", N_VOXELS, "volume")
    values = np.random.default_rng(0).standard_normal((4, N_VOXELS)).astype(np.float32)
    preds = _predictions(values, space_metadata(space))
    out = tmp_path / "clip.nii.gz"
    files = preds.save(out)
    assert set(files) == set(file_names(out)) and all(f.is_file() for f in files)
    assert not list(tmp_path.glob(".*tmp*"))  # nothing half-written left
    img = nib.load(str(out))
    mask = subcortical_mask(fsl)
    assert img.shape == (*mask.shape, 4) and img.get_data_dtype() == np.float32
    np.testing.assert_array_equal(img.affine, mask.affine)
    assert img.header.get_zooms()[3] == 1.0 and img.header.get_xyzt_units() == ("mm", "sec")
    assert int(img.header["sform_code"]) == 4
    data = img.get_fdata()
    i, j, k = mask.ijk[5]
    assert data[i, j, k, 2] == values[2, 5]
    assert np.count_nonzero(data[..., 0]) == N_VOXELS
    meta = json.loads((tmp_path / "clip.json").read_text())
    assert meta["hemodynamic_offset_s"] == 5.0 and meta["tr_s"] == 1.0
    back = read_prediction_file(out)
    np.testing.assert_array_equal(back.values, values)
    assert back.seconds.tolist() == [0, 1, 2, 3] and back.metadata["space"]["name"] == "subcortical"
    means = structure_means(values, space)
    left = mask.label == mask.names.index("Left Thalamus")
    np.testing.assert_allclose(means["Left Thalamus"], values[:, left].mean(1), rtol=1e-6)
    with pytest.raises(InputError, match="written as NAME.nii.gz"):
        preds.save(tmp_path / "clip.npy")
    # `roi` on the volume: one column per Harvard-Oxford structure, --region picks structures
    from conftest import run_cli

    done = run_cli("roi", str(out), "--out", str(tmp_path / "s.csv"))
    assert done.returncode == 0, done.stderr
    rows = (tmp_path / "s.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "Left Thalamus" in header and len(rows) == 5
    col = header.index("Left Thalamus")
    np.testing.assert_allclose(
        [float(r.split(",")[col]) for r in rows[1:]], means["Left Thalamus"], rtol=1e-5
    )
    done = run_cli("roi", str(out), "--region", "right thal", "--out", str(tmp_path / "r.csv"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r.csv").read_text().splitlines()[0] == "second,Right Thalamus"
    done = run_cli("roi", str(out), "--atlas", "destrieux")
    assert done.returncode == 2 and "Harvard-Oxford structures" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_missing_atlas_is_one_line(monkeypatch, tmp_path):
    monkeypatch.delenv("FSLDIR", raising=False)
    monkeypatch.setenv("TRIBE_STREAM_CACHE", str(tmp_path))
    with pytest.raises(InputError, match="Harvard-Oxford sub-maxprob-thr50-2mm atlas is not") as e:
        subcortical_mask()
    assert "\n" not in str(e.value) and "FSLDIR" in str(e.value)


def test_predict_with_a_head_and_no_atlas_says_so_before_any_file(monkeypatch, tmp_path):
    """`predict --subcortical` without the atlas: one line, exit 2, no file extracted (before,
    each file was extracted and then failed on writing its volume)."""
    from conftest import run_cli

    monkeypatch.delenv("FSLDIR", raising=False)
    monkeypatch.setenv("TRIBE_STREAM_CACHE", str(tmp_path / "cache"))
    from tribe_stream.sources.clip import make_clip

    # a real clip: its header is read (one file alone is probed first), never its features
    missing = make_clip(tmp_path / "not-read.mp4", 2.0, width=64, height=48)
    r = run_cli("predict", str(missing), "--checkpoint", "demo", "--subcortical", "random",
                "--out", str(tmp_path / "p.npy"), "--no-asr")  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "Harvard-Oxford" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "p.npy").exists()


def _demo_head(folder: Path) -> Path:
    """A subcortical brain model on the demo features (random weights), its config.yaml naming
    the demo extractors and the subcortical projection."""
    from test_resolve import RELEASED_STYLE

    from tribe_stream.extractors.demo import demo_extractors_path
    from tribe_stream.model.convert import save_safetensors
    from tribe_stream.model.demo import demo_config
    from tribe_stream.model.fmri_encoder import FmriEncoder

    torch.manual_seed(3)
    model = FmriEncoder(replace(demo_config(), n_outputs=N_VOXELS))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    folder.mkdir()
    save_safetensors(model.eval(), folder / "model.safetensors")
    demo = demo_extractors_path()
    config = RELEASED_STYLE.format(text=demo.text, audio=demo.audio, video=demo.video)
    config += "  neuro:\n    projection: {name: MaskProjector, mask: subcortical}\n"
    (folder / "config.yaml").write_text(config)
    return folder


def test_both_heads_from_one_extraction_equal_each_alone(tmp_path, fsl, monkeypatch):
    import tribe_stream.extractors.offline as offline
    from tribe_stream.offline_outputs import read_prediction_file
    from tribe_stream.prediction import Predictor
    from tribe_stream.sources.clip import make_clip

    clip = make_clip(tmp_path / "clip.mp4", 3.0, width=96, height=64)
    head = _demo_head(tmp_path / "sub")
    calls = []
    real = offline.extract_media
    monkeypatch.setattr(offline, "extract_media", lambda *a, **k: calls.append(1) or real(*a, **k))
    cache = str(tmp_path / "cache")
    both = Predictor(checkpoint="demo", subcortical=str(head), asr=False, cache=cache)
    preds = both.predict(clip)
    assert len(calls) == 1  # one extraction for both brain models
    sub = preds.heads["subcortical"]
    assert sub.values.shape == (3, N_VOXELS) and preds.values.shape == (3, 20484)
    assert (
        sub.metadata["space"]["kind"] == "volume"
        and preds.metadata["space"]["name"] == "fsaverage5"
    )
    cortex = Predictor(checkpoint="demo", asr=False, cache=cache).predict(clip)
    alone = Predictor(checkpoint=str(head), asr=False, cache=cache).predict(clip)
    assert cortex.timings["cached"] == alone.timings["cached"] == 1.0  # the same features
    np.testing.assert_allclose(preds.values, cortex.values, atol=1e-5, rtol=0)
    np.testing.assert_allclose(sub.values, alone.values, atol=1e-5, rtol=0)
    files = preds.save(tmp_path / "out.npy")
    assert tmp_path / "out.subcortical.nii.gz" in files
    back = read_prediction_file(tmp_path / "out.subcortical.nii.gz")
    np.testing.assert_array_equal(back.values, sub.values)
    from tribe_stream.cifti import read_dtseries

    files = preds.save(tmp_path / "both.dtseries.nii")  # one file: cortex and voxels
    assert [f.name for f in files] == ["both.dtseries.nii", "both.json", "both.words.tsv"]
    dense = read_dtseries(tmp_path / "both.dtseries.nii", volume=subcortical_mask(fsl))
    np.testing.assert_allclose(dense.values, preds.values, rtol=1e-6)
    np.testing.assert_allclose(dense.volume, sub.values, rtol=1e-6)
    assert dense.tr == 1.0 and dense.start == 5.0  # row 0: the predicted BOLD at 5 s
    np.testing.assert_array_equal(read_prediction_file(files[0]).values, dense.values)
    with pytest.raises(CheckpointError, match="must read the same features"):
        Predictor(checkpoint=str(MODEL), subcortical=str(head))


def test_a_dense_series_holds_the_cortex_and_the_subcortical_voxels(tmp_path):
    """CIFTI-2: the two cortical surfaces, then one volume model per Harvard-Oxford structure
    (the mask's grid and affine); read back equal with nibabel and with `read_dtseries`."""
    import nibabel as nib

    from tribe_stream.cifti import read_dtseries, volume_structure, write_dtseries

    mask = subcortical_mask(ATLAS)
    rng = np.random.default_rng(1)
    cortex = rng.standard_normal((3, 20484)).astype(np.float32)
    sub = rng.standard_normal((3, N_VOXELS)).astype(np.float32)
    out = write_dtseries(tmp_path / "both.dtseries.nii", cortex, tr=1.0, volume=(mask, sub))
    img = nib.load(str(out))
    models = img.header.get_axis(1)
    data = img.get_fdata(dtype=np.float32)
    seen = {}
    for name, columns, model in models.iter_structures():
        seen[name] = model
        if not model.volume_mask.any():
            continue
        np.testing.assert_array_equal(model.affine, mask.affine)
        assert tuple(model.volume_shape) == mask.shape
        cols = np.arange(len(data[0]))[columns]
        for ijk, col in zip(np.asarray(model.voxel), cols, strict=True):
            ours = np.nonzero((mask.ijk == ijk).all(1))[0][0]
            assert data[0, col] == sub[0, ours]
            assert volume_structure(mask.structures[ours]) == name
    assert "CIFTI_STRUCTURE_THALAMUS_LEFT" in seen and "CIFTI_STRUCTURE_ACCUMBENS_RIGHT" in seen
    thalamus = (mask.label == mask.names.index("Left Thalamus")).sum()
    assert seen["CIFTI_STRUCTURE_THALAMUS_LEFT"].volume_mask.sum() == thalamus
    back = read_dtseries(out, volume=mask)
    np.testing.assert_array_equal(back.values, cortex)
    np.testing.assert_array_equal(back.volume, sub)
    with pytest.raises(InputError, match="volume model"):
        read_dtseries(out)  # the cortex alone (score's use): volume models refused as before
