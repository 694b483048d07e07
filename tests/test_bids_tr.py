"""Predictions at a scan's TR (`predict --tr/--onset`, `scan_timing.py`) and BIDS derivative
names (`predict --bids-name`): the times, the interpolation, every format's round trip, the
sidecar's BIDS fields, and the command's refusals before any model loads."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from conftest import run_cli

from tribe_stream import N_VERTICES
from tribe_stream.errors import InputError
from tribe_stream.offline_outputs import (
    bids_output,
    file_names,
    pair_name,
    read_prediction_file,
    save_predictions,
)
from tribe_stream.prediction import Predictions
from tribe_stream.scan_timing import resample, resample_predictions, scan_volumes
from tribe_stream.untrained import UNTRAINED_LABEL


def ramp(n: int, square: bool = False, untrained: bool = True) -> Predictions:
    """Row k holds k (or k squared) at every vertex: interpolated values are checkable."""
    k = np.arange(n, dtype=np.float32)
    values = np.repeat((k**2 if square else k)[:, None], N_VERTICES, axis=1)
    values += np.linspace(0, 1, N_VERTICES, dtype=np.float32)  # vertices differ
    meta = {"model": {"untrained": untrained}, "stimulus": "clip.mp4"}
    return Predictions(values=values, seconds=np.arange(n), metadata=meta)


def test_tr_2_on_30_seconds_gives_15_volumes_at_their_acquisition_times():
    preds = resample_predictions(ramp(30), 2.0)  # BOLD at 5..34 s; volumes at 0, 2, 4, ...
    assert len(preds) == 15
    m = preds.metadata
    assert m["volumes"] == list(range(3, 18)) and m["times_s"] == [
        float(t) for t in range(6, 35, 2)
    ]
    assert m["tr_s"] == 2.0 and m["onset_s"] == 0.0 and m["hemodynamic_offset_s"] == 5.0
    assert m["predicted_seconds"] == 30 and "linear interpolation" in m["resampling"]
    np.testing.assert_allclose(preds.bold_times, m["times_s"])
    np.testing.assert_allclose(preds.values[:, 0], np.arange(6, 35, 2) - 5.0)  # rows k = t - 5


def test_linear_interpolation_between_the_bracketing_rows():
    preds = resample_predictions(ramp(10, square=True), 2.0, onset=0.5)  # 5.5, 7.5, ... 13.5
    assert preds.metadata["times_s"] == [6.5, 8.5, 10.5, 12.5]  # 4.5 is before 5 s: left out
    k = np.array(preds.metadata["times_s"]) - 5.0  # 1.5 -> halfway between 1 and 4, ...
    expected = (np.floor(k) ** 2 + np.ceil(k) ** 2) / 2
    np.testing.assert_allclose(preds.values[:, 0], expected)
    np.testing.assert_allclose(preds.values[:, -1] - preds.values[:, 0], 1.0, atol=1e-5)
    same = resample_predictions(ramp(10), 1.0)  # a 1 s scan from the BOLD's start: the rows
    np.testing.assert_array_equal(same.values, ramp(10).values)
    assert same.metadata["volumes"] == list(range(5, 15))


def test_times_outside_the_predicted_span_are_refused():
    with pytest.raises(InputError, match="no volume of a TR 2 s scan starting at 100 s"):
        resample_predictions(ramp(10), 2.0, onset=100.0)
    with pytest.raises(InputError, match="outside the predicted BOLD 5..14 s"):
        resample(ramp(10).values, np.arange(10), [4.0])
    assert scan_volumes(np.arange(10), 3.0, onset=-1.0)[1].tolist() == [5.0, 8.0, 11.0, 14.0]


@pytest.mark.parametrize("name", ["r.npy", "r.h5", "r.func.gii", "r.mgz"])
def test_every_format_keeps_the_scan_times(tmp_path, name):
    preds = resample_predictions(ramp(12), 2.0, onset=1.0)  # volumes 2..7 at 5, 7, ... 15
    save_predictions(preds, tmp_path / name)
    got = read_prediction_file(tmp_path / name)
    np.testing.assert_array_equal(got.values, preds.values)
    np.testing.assert_allclose(got.times, [5.0, 7.0, 9.0, 11.0, 13.0, 15.0])
    np.testing.assert_allclose(got.seconds, got.times - 5.0)
    assert got.tr == 2.0 and got.metadata["volumes"] == [2, 3, 4, 5, 6, 7]
    if name.endswith(".func.gii"):
        lh = nib.load(str(tmp_path / "r.lh.func.gii"))
        assert lh.darrays[0].meta["TimeStep"] == "2000.000000"
    if name.endswith(".mgz"):
        assert float(nib.load(str(tmp_path / "r.lh.mgz")).header["tr"]) == 2000.0
    if name.endswith(".h5"):
        from tribe_stream.recording import read_recording

        rec = read_recording(tmp_path / name)
        assert rec.seconds.tolist() == [2, 3, 4, 5, 6, 7]  # the volumes
        assert rec.bold_time.tolist() == [5.0, 7.0, 9.0, 11.0, 13.0, 15.0]


def test_bids_names_pairs_and_sidecar(tmp_path):
    out = bids_output(tmp_path, "sub-01_task-movie_run-2")
    assert out.name == "sub-01_task-movie_run-2_space-fsaverage5_desc-tribe_bold.func.gii"
    names = [f.name for f in file_names(out)]
    assert names == [
        "sub-01_task-movie_run-2_hemi-L_space-fsaverage5_desc-tribe_bold.func.gii",
        "sub-01_task-movie_run-2_hemi-R_space-fsaverage5_desc-tribe_bold.func.gii",
        "sub-01_task-movie_run-2_space-fsaverage5_desc-tribe_bold.json",
        "sub-01_task-movie_run-2_space-fsaverage5_desc-tribe_bold.words.tsv",
    ]
    assert pair_name(tmp_path / names[1]) == out
    save_predictions(resample_predictions(ramp(8), 1.5), out)
    side = json.loads((tmp_path / names[2]).read_text())
    assert side["RepetitionTime"] == 1.5 and side["StartTime"] == 6.0  # volume 4 at 6 s
    assert side["HemodynamicOffset"] == 5.0 and side["TaskName"] == "movie"
    assert side["Untrained"] == UNTRAINED_LABEL and side["model"]["untrained"] is True
    for f in (names[0], names[1], out.name):  # either hemisphere or the pair's name
        assert read_prediction_file(tmp_path / f).values.shape == (5, N_VERTICES)  # 6..12 s
    mgh = bids_output(tmp_path, "sub-02", "mgz")
    save_predictions(ramp(3, untrained=False), mgh)
    side = json.loads(mgh.with_name(mgh.name.replace(".mgz", ".json")).read_text())
    assert side["RepetitionTime"] == 1.0 and side["StartTime"] == 5.0 and "Untrained" not in side
    assert (tmp_path / "sub-02_hemi-R_space-fsaverage5_desc-tribe_bold.mgz").is_file()
    for bad in ("01_task-movie", "sub-01_task-mo vie", "sub-01_space-x", "sub-01__run-1", ""):
        with pytest.raises(InputError, match="give BIDS entities like sub-01_task-movie"):
            bids_output(tmp_path, bad)


def test_predict_refuses_bad_scan_and_bids_options_before_loading(tmp_path):
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"")  # never read: every refusal comes first
    cases = [
        (["--bids-name", "task-movie"], "give BIDS entities"),
        (["--bids-name", "sub-01", "--out", str(tmp_path / "x.func.gii")], "--out is the folder"),
        (["--onset", "2"], "give the scan's --tr too"),
        (["--tr", "0"], "must be above 0"),
    ]
    for extra, message in cases:
        args = ["predict", str(clip), "--out", str(tmp_path / "o.npy"), "--checkpoint", "demo"]
        r = run_cli(*args, *extra)
        assert r.returncode == 2 and message in r.stderr, r.stderr
        assert "Traceback" not in r.stderr


def test_predict_writes_bids_files_at_the_scan_tr(tmp_path):
    """The command end to end: a 7 s clip at TR 1.5 s from 0.5 s: BOLD 5..11 s holds volumes
    3..7 (5, 6.5, 8, 9.5, 11 s), in BIDS GIfTI files with their sidecar."""
    from tribe_stream.cli import main
    from tribe_stream.sources.clip import make_clip

    clip = make_clip(tmp_path / "clip.mp4", 7.0, width=64, height=48)
    folder = tmp_path / "derivatives" / "sub-01" / "func"
    args = ["predict", str(clip), "--checkpoint", "demo", "--no-asr", "--out", str(folder)]
    args += ["--cache", str(tmp_path / "cache"), "--bids-name", "sub-01_task-movie"]
    assert main([*args, "--tr", "1.5", "--onset", "0.5"]) == 0
    stem = "sub-01_task-movie_space-fsaverage5_desc-tribe_bold"
    side = json.loads((folder / f"{stem}.json").read_text())
    assert side["RepetitionTime"] == 1.5 and side["StartTime"] == 5.0
    got = read_prediction_file(
        folder / "sub-01_task-movie_hemi-L_space-fsaverage5_desc-tribe_bold.func.gii"
    )
    assert got.metadata["volumes"] == [3, 4, 5, 6, 7] and got.times.tolist() == side["times_s"]
    assert got.times.tolist() == [5.0, 6.5, 8.0, 9.5, 11.0]


def test_python_api_checks_the_scan_options():
    from tribe_stream.options import PredictOptions

    assert PredictOptions(tr="2", onset="-1.5").validate().onset == -1.5
    for kw, message in [
        ({"tr": 2, "onset": "x"}, "--onset must be a number of seconds, not 'x'"),
        ({"onset": 1.0}, "give the scan's --tr too"),
        ({"tr": float("inf")}, "--tr must be a finite number of seconds above 0"),
    ]:
        with pytest.raises(InputError, match=message):
            PredictOptions(**kw).validate()
