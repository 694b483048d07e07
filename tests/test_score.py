"""`tribe-stream score`: predictions against measured BOLD (real files on disk: CIFTI-2, GIfTI and
MGH pairs written by nibabel), the noise ceiling, the one-line refusals."""

from __future__ import annotations

import numpy as np
import pytest

from tribe_stream import N_VERTICES, N_VERTICES_HEMI
from tribe_stream.errors import InputError

# -- CIFTI-2 ------------------------------------------------------------------------------------


def test_cifti_dense_series_round_trips_with_a_medial_wall(tmp_path):
    import nibabel as nib

    from tribe_stream.cifti import read_dtseries, write_dtseries

    rng = np.random.default_rng(0)
    values = rng.standard_normal((6, N_VERTICES)).astype(np.float32)
    present = np.ones(N_VERTICES, bool)
    present[10:400] = False  # a left medial wall
    present[N_VERTICES_HEMI + 5 : N_VERTICES_HEMI + 90] = False
    path = write_dtseries(tmp_path / "run.dtseries.nii", values, tr=1.5, start=2.0, present=present)
    img = nib.load(str(path))
    assert img.nifti_header.get_intent()[0] == "ConnDenseSeries"
    assert img.shape == (6, int(present.sum()))
    names = [name for name, _, _ in img.header.get_axis(1).iter_structures()]
    assert names == ["CIFTI_STRUCTURE_CORTEX_LEFT", "CIFTI_STRUCTURE_CORTEX_RIGHT"]
    back = read_dtseries(path)
    assert (back.tr, back.start) == (1.5, 2.0)
    np.testing.assert_array_equal(back.present, present)
    np.testing.assert_array_equal(back.values[:, present], values[:, present])
    assert np.isnan(back.values[:, ~present]).all()
    np.testing.assert_allclose(back.times, 2.0 + 1.5 * np.arange(6))


def _cifti(path, models, n=4):
    from nibabel import cifti2

    axis = models[0]
    for m in models[1:]:
        axis = axis + m
    series = cifti2.SeriesAxis(0.0, 1.0, n, unit="SECOND")
    img = cifti2.Cifti2Image(np.zeros((n, len(axis)), np.float32), header=(series, axis))
    img.to_filename(str(path))
    return path


def test_cifti_refuses_volumes_and_other_meshes_in_one_line(tmp_path):
    from nibabel import cifti2

    from tribe_stream.cifti import read_dtseries

    left = cifti2.BrainModelAxis.from_mask(np.ones(N_VERTICES_HEMI, bool), name="CortexLeft")
    mask = np.zeros((3, 3, 3), bool)
    mask[1, 1, 1] = True
    volume = cifti2.BrainModelAxis.from_mask(mask, affine=np.eye(4), name="ThalamusLeft")
    with pytest.raises(InputError, match="volume model CIFTI_STRUCTURE_THALAMUS_LEFT") as e:
        read_dtseries(_cifti(tmp_path / "sub.dtseries.nii", [left, volume]))
    assert "\n" not in str(e.value)
    big = cifti2.BrainModelAxis.from_mask(np.ones(32492, bool), name="CortexLeft")
    with pytest.raises(InputError, match="32492 vertices, not fsaverage5's 10242"):
        read_dtseries(_cifti(tmp_path / "fslr.dtseries.nii", [big]))
    (tmp_path / "junk.dtseries.nii").write_bytes(b"not a nifti file at all" * 20)
    with pytest.raises(InputError, match="cannot read .* as CIFTI-2"):
        read_dtseries(tmp_path / "junk.dtseries.nii")


# -- the statistics -----------------------------------------------------------------------------

T = 100  # predicted seconds


def _standard(rng, t=T) -> np.ndarray:
    """(t, 20484) predictions, each vertex standardised over time."""
    p = rng.standard_normal((t, N_VERTICES))
    return ((p - p.mean(0)) / p.std(0)).astype(np.float32)


def _scan_of(pred: np.ndarray, rng, sd_signal: float, sd_noise: float) -> np.ndarray:
    """The BOLD of a TR 1 s scan starting with the stimulus: volume i at i s shows the predicted
    BOLD at i s (row i - 5), times sd_signal, plus Gaussian noise; volumes 0-4 noise only."""
    bold = sd_noise * rng.standard_normal((len(pred) + 5, N_VERTICES))
    bold[5:] += sd_signal * pred
    return bold.astype(np.float32)


def test_r_of_bold_made_from_the_predictions_plus_noise_is_the_expected_one(tmp_path):
    from tribe_stream.cifti import write_dtseries
    from tribe_stream.score import score

    rng = np.random.default_rng(1)
    pred = _standard(rng)
    np.save(tmp_path / "pred.npy", pred)
    for sd_signal, sd_noise in ((1.0, 1.3), (1.0, 0.5)):
        bold = write_dtseries(
            tmp_path / "bold.dtseries.nii", _scan_of(pred, rng, sd_signal, sd_noise)
        )
        result = score(tmp_path / "pred.npy", bold)
        expected = sd_signal / np.hypot(sd_signal, sd_noise)
        assert abs(result.summary()["r_mean"] - expected) < 0.02, (result.summary(), expected)
        assert result.n_volumes == T and result.volumes[0] == 5  # 0-4: before any prediction
    # the BOLD's own time axis: the r is that of the aligned rows (a one-volume shift kills it)
    shifted = np.roll(_scan_of(pred, rng, 1.0, 0.1), 1, axis=0)
    assert abs(score(pred, shifted).summary()["r_mean"]) < 0.05


def test_a_tr_and_onset_align_the_predictions_to_the_volumes():
    """Smooth predictions (a sine per vertex) and a TR 1.5 s scan starting 2 s into the stimulus:
    the predictions interpolated to each acquisition time follow the BOLD (noise free, r ~ 1)."""
    from tribe_stream.score import score

    rng = np.random.default_rng(2)
    omega = rng.uniform(0.1, 0.4, N_VERTICES)
    phase = rng.uniform(0, 2 * np.pi, N_VERTICES)

    def wave(t):  # the predicted BOLD at times t (s, stimulus clock)
        return np.sin(np.outer(t, omega) + phase).astype(np.float32)

    pred = wave(np.arange(T) + 5.0)  # row k: BOLD at k + 5 s
    tr, onset = 1.5, 2.0
    n = int(np.floor((T - 1 + 5 - onset) / tr)) + 1  # the scan through the last predicted BOLD
    bold = wave(onset + tr * np.arange(n))
    result = score(pred, bold, tr=tr, onset=onset)
    assert result.volumes[0] == 2 and result.n_volumes == n - 2  # 2 s, 3.5 s: before 5 s
    np.testing.assert_allclose(result.times, onset + tr * result.volumes)
    assert result.summary()["r_median"] > 0.99
    late = wave(onset + tr * np.arange(n) - 2.0)  # a scan 2 s later than said
    assert score(pred, late, tr=tr, onset=onset).summary()["r_median"] < 0.9


def test_noise_ceiling_of_repeated_runs_matches_spearman_brown():
    from tribe_stream.score import noise_ceiling, score

    rng = np.random.default_rng(3)
    signal = _standard(rng, 200)
    sd_noise, runs = 1.5, 4
    bolds = [_scan_of(signal, rng, 1.0, sd_noise) for _ in range(runs)]
    expected = 1.0 / np.sqrt(1.0 + sd_noise**2 / runs)  # a perfect prediction vs the mean of R
    ceiling, rho = noise_ceiling([b[5:] for b in bolds])
    assert abs(np.nanmean(rho) - 1 / (1 + sd_noise**2)) < 0.02  # one run's reliability
    assert abs(np.nanmean(ceiling) - expected) < 0.02
    result = score(signal, bolds)  # the true signal as the prediction reaches the ceiling
    s = result.summary()
    assert result.n_runs == runs and abs(s["ceiling_mean"] - expected) < 0.02
    assert abs(s["r_mean"] - expected) < 0.02 and abs(s["r_over_ceiling_mean"] - 1) < 0.05
    with pytest.raises(InputError, match="two or more runs"):
        noise_ceiling(bolds[:1])


# -- files and refusals -------------------------------------------------------------------------


def _gifti_pair(folder, bold: np.ndarray, tr_ms: float = 1000.0):
    """fMRIPrep's layout: sub-01_task-movie_hemi-{L,R}_space-fsaverage5_bold.func.gii."""
    import nibabel as nib
    from nibabel.gifti import GiftiDataArray, GiftiImage, GiftiMetaData

    files = []
    for side, rows in (("L", slice(0, N_VERTICES_HEMI)), ("R", slice(N_VERTICES_HEMI, None))):
        arrays = [
            GiftiDataArray(row, intent="NIFTI_INTENT_TIME_SERIES", datatype="NIFTI_TYPE_FLOAT32",
                           meta=GiftiMetaData({"TimeStep": f"{tr_ms:f}"}))
            for row in bold[:, rows]
        ]  # fmt: skip
        f = folder / f"sub-01_task-movie_hemi-{side}_space-fsaverage5_bold.func.gii"
        nib.save(GiftiImage(darrays=arrays), str(f))
        files.append(f)
    return files


def _mgh_pair(folder, bold: np.ndarray):
    import nibabel as nib

    for hemi, rows in (("lh", slice(0, N_VERTICES_HEMI)), ("rh", slice(N_VERTICES_HEMI, None))):
        data = np.ascontiguousarray(bold[:, rows].T)[:, None, None, :]
        nib.save(nib.MGHImage(data, np.eye(4)), str(folder / f"bold.{hemi}.mgz"))
    return folder / "bold.lh.mgz"


def test_gifti_and_mgh_bold_pairs_read_as_the_cifti_does(tmp_path):
    from tribe_stream.cifti import write_dtseries
    from tribe_stream.score import read_bold, score

    rng = np.random.default_rng(4)
    pred = _standard(rng, 30)
    bold = _scan_of(pred, rng, 1.0, 1.0)
    cifti = score(pred, write_dtseries(tmp_path / "b.dtseries.nii", bold)).r
    left, right = _gifti_pair(tmp_path, bold)
    for run in (left, right, _mgh_pair(tmp_path, bold)):  # either hemisphere's file names the pair
        np.testing.assert_array_equal(read_bold(run).values, bold)
        np.testing.assert_allclose(score(pred, run).r, cifti, atol=1e-6)


def test_the_scan_timing_comes_from_the_files_when_not_given(tmp_path):
    """fMRIPrep's GIfTI records its TR as TimeStep (ms), MGH in its header: read, not taken as
    1 s; a `predict --tr --onset` file names the scan it was made for (tr and onset)."""
    import json

    import nibabel as nib

    from tribe_stream.offline_outputs import read_prediction_file
    from tribe_stream.score import read_bold, score

    rng = np.random.default_rng(5)
    bold = rng.standard_normal((12, N_VERTICES)).astype(np.float32)
    left, _ = _gifti_pair(tmp_path, bold, tr_ms=1500.0)
    assert read_bold(left).tr == 1.5 and read_prediction_file(left).tr == 1.5
    mgh = _mgh_pair(tmp_path, bold)
    for hemi in ("lh", "rh"):
        img = nib.load(str(tmp_path / f"bold.{hemi}.mgz"))
        img.header["tr"] = 2000.0
        nib.save(img, str(tmp_path / f"bold.{hemi}.mgz"))
    assert read_bold(mgh).tr == 2.0
    pred = _standard(rng, 8)  # 1 Hz: the predicted BOLD at 5..12 s
    times = [0.5 + 1.5 * v for v in range(3, 8)]  # a TR 1.5 s scan from 0.5 s: 5..11 s
    resampled = rng.standard_normal((len(times), N_VERTICES)).astype(np.float32)
    np.save(tmp_path / "scan.npy", resampled)
    (tmp_path / "scan.json").write_text(
        json.dumps({"tr_s": 1.5, "onset_s": 0.5, "times_s": times, "hemodynamic_offset_s": 5.0})
    )
    n = int(round((times[-1] - 0.5) / 1.5)) + 1
    result = score(tmp_path / "scan.npy", rng.standard_normal((n, N_VERTICES)))
    assert (result.tr, result.onset) == (1.5, 0.5) and result.n_volumes == len(times)
    assert score(pred, rng.standard_normal((13, N_VERTICES))).tr == 1.0  # nothing recorded


def test_mismatched_lengths_are_one_line_naming_both_and_the_fix(tmp_path):
    from conftest import run_cli

    from tribe_stream.cifti import write_dtseries
    from tribe_stream.score import score

    rng = np.random.default_rng(5)
    pred = _standard(rng, 20)
    bold = _scan_of(pred, rng, 1.0, 1.0)  # 25 volumes: the scan through the last prediction
    with pytest.raises(InputError) as e:
        score(pred, bold[:-3])
    msg = str(e.value)
    assert "has 22 volumes but the predictions reach 25" in msg and "--tr" in msg
    assert "\n" not in msg
    with pytest.raises(InputError, match="cut the BOLD to its first 25 volumes"):
        score(pred, np.concatenate([bold, bold[:4]]))
    with pytest.raises(InputError, match="has 25 volumes but the predictions reach 17"):
        score(pred, bold, tr=1.5)  # the wrong TR
    np.save(tmp_path / "pred.npy", pred)
    write_dtseries(tmp_path / "short.dtseries.nii", bold[:-3])
    write_dtseries(tmp_path / "run2.dtseries.nii", bold[:-1])
    r = run_cli("score", str(tmp_path / "pred.npy"), "--bold", str(tmp_path / "short.dtseries.nii"),
                "--out", str(tmp_path / "r.npy"))  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "has 22 volumes" in r.stderr
    with pytest.raises(InputError, match="different numbers of volumes"):
        score(pred, [bold, tmp_path / "run2.dtseries.nii"])
    assert not (tmp_path / "r.npy").exists()


def _two_region_annots(folder):
    """Per hemisphere: `signal` (its first half of vertices) and `noise` (the rest)."""
    from nibabel.freesurfer import write_annot

    labels = (np.arange(N_VERTICES_HEMI) >= N_VERTICES_HEMI // 2).astype(np.int32)
    ctab = np.array([[200, 0, 0, 0, 0], [0, 0, 200, 0, 1]], np.int32)
    files = [folder / f"{h}.two.annot" for h in ("lh", "rh")]
    for f in files:
        write_annot(str(f), labels, ctab, [b"signal", b"noise"], fill_ctab=True)
    return files


def test_score_command_writes_the_map_ceiling_regions_and_picture(tmp_path):
    import csv

    from conftest import run_cli

    from tribe_stream.cifti import write_dtseries
    from tribe_stream.offline_outputs import read_prediction_file
    from tribe_stream.score import score

    rng = np.random.default_rng(6)
    pred = _standard(rng, 40)
    runs = []
    for i in range(2):
        bold = _scan_of(pred, rng, 1.0, 0.7)
        half = np.r_[N_VERTICES_HEMI // 2 : N_VERTICES_HEMI, N_VERTICES_HEMI * 3 // 2 : N_VERTICES]
        bold[:, half] = rng.standard_normal((len(bold), len(half)))  # `noise` regions: no signal
        runs.append(write_dtseries(tmp_path / f"run{i}.dtseries.nii", bold, tr=1.0))
    np.save(tmp_path / "pred.npy", pred)
    (tmp_path / "pred.json").write_text('{"model": {"untrained": true}}')
    lh, rh = _two_region_annots(tmp_path)
    out = tmp_path / "r.func.gii"
    args = ["score", str(tmp_path / "pred.npy"), "--out", str(out), "--annot", str(lh), str(rh)]
    r = run_cli(*args, *(x for run in runs for x in ("--bold", str(run))))
    assert r.returncode == 0, r.stderr
    assert "UNTRAINED" in r.stdout and "noise ceiling mean" in r.stdout
    expected = score(tmp_path / "pred.npy", runs)
    values, _, meta = read_prediction_file(out)
    np.testing.assert_allclose(values[0], expected.r, atol=1e-6)
    assert meta["map"] == "pearson_r" and meta["scan"]["volumes"][0] == 5
    ceiling = read_prediction_file(tmp_path / "r.ceiling.func.gii").values[0]
    np.testing.assert_allclose(ceiling, expected.ceiling, atol=1e-6)
    with open(tmp_path / "r.regions.csv") as f:
        rows = {row["region"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"lh.signal", "lh.noise", "rh.signal", "rh.noise"}
    expect = 1 / np.sqrt(1 + 0.7**2 / 2)  # the signal regions' r of a vertex, and ceiling
    for hemi in ("lh", "rh"):
        signal, noise = rows[f"{hemi}.signal"], rows[f"{hemi}.noise"]
        assert float(signal["r_region"]) > 0.6  # 40 volumes: the r of one pair of means varies
        assert abs(float(signal["r_vertex_mean"]) - expect) < 0.05
        assert abs(float(signal["ceiling_mean"]) - expect) < 0.05
        assert abs(float(noise["r_vertex_mean"])) < 0.05 and abs(float(noise["r_region"])) < 0.5
        assert int(signal["vertices"]) == N_VERTICES_HEMI // 2
    from PIL import Image

    png = Image.open(tmp_path / "r.png")
    assert "UNTRAINED" in png.text.get("Title", "")
    pixels = np.asarray(png.convert("RGB")).astype(int)
    assert pixels.std() > 20  # the cortex drawn, not a blank picture
