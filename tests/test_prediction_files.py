"""Every command that takes predictions reads every format `predict` and `record` write, through
one reader (`offline_outputs.read_prediction_file`), and gets the same values from each: `.npy`
(+ JSON), `.h5`, GIfTI and MGH pairs named by either hemisphere's file or by their common name.
`render`, `render --rgb`, `movie` (with the stimulus's sound) and `roi` run through the real CLI
on files our writers make; missing and damaged files get one line."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from tribe_stream import N_VERTICES, N_VERTICES_HEMI
from tribe_stream.cli import main
from tribe_stream.offline_outputs import read_prediction_file, save_predictions
from tribe_stream.prediction import Predictions

FORMATS = ["p.npy", "p.h5", "p.func.gii", "p.mgz", "p.mgh"]
NAMES = {  # every name a file of each format is given by
    "p.npy": ["p.npy"],
    "p.h5": ["p.h5"],
    "p.func.gii": ["p.func.gii", "p.lh.func.gii", "p.rh.func.gii"],
    "p.mgz": ["p.mgz", "p.lh.mgz", "p.rh.mgz"],
    "p.mgh": ["p.mgh", "p.rh.mgh"],
}


def predictions(n: int = 3) -> Predictions:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(n, N_VERTICES)).astype(np.float32)
    values[:, :N_VERTICES_HEMI] += 1.0  # the hemispheres differ: a swapped pair shows
    meta = {"model": {"untrained": True}, "stimulus": "clip.mp4"}
    preds = Predictions(values=values, seconds=np.arange(2, 2 + n), metadata=meta)
    preds.contributions = {
        m: Predictions(
            values=values * (i + 1), seconds=preds.seconds, metadata=meta | {"contribution": m}
        )
        for i, m in enumerate(("text", "audio", "video"))
    }
    return preds


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats")
    preds = predictions()
    for name in FORMATS:
        save_predictions(preds, folder / name)
    return folder, preds


def test_one_reader_gives_the_same_rows_for_every_format_and_name(files):
    folder, preds = files
    for names in NAMES.values():
        for name in names:
            got = read_prediction_file(folder / name)
            np.testing.assert_array_equal(got.values, preds.values, err_msg=name)
            assert got.seconds.tolist() == [2, 3, 4] and got.times.tolist() == [7.0, 8.0, 9.0]
            assert got.tr == 1.0 and got.metadata["model"]["untrained"] is True, name
            assert got.metadata["stimulus"] == "clip.mp4", name


def test_missing_and_damaged_files_are_one_line(tmp_path, files, capsys):
    folder, _ = files
    (tmp_path / "half.lh.func.gii").write_bytes((folder / "p.lh.func.gii").read_bytes())
    (tmp_path / "cut.lh.mgz").write_bytes((folder / "p.lh.mgz").read_bytes()[:300])
    (tmp_path / "cut.rh.mgz").write_bytes((folder / "p.rh.mgz").read_bytes())
    (tmp_path / "junk.h5").write_text("not hdf5")
    np.save(tmp_path / "wide.npy", np.zeros((2, 5)))
    (tmp_path / "notes.txt").write_text("x")
    cases = {
        "half.func.gii": "half.rh.func.gii does not exist (a pair: half.lh.func.gii and half",
        "cut.rh.mgz": "cannot read predictions from",
        "junk.h5": "is not a readable HDF5 recording",
        "wide.npy": "holds an array of shape (2, 5); expected (T, 20484)",
        "notes.txt": "not a prediction file; give a .npy, .h5, .func.gii, .mgh or .mgz file",
        "gone.npy": "gone.npy does not exist",
    }
    for name, message in cases.items():
        out = str(tmp_path / f"{name}.png")
        assert main(["render", str(tmp_path / name), "--out", out]) == 2, name
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_render_draws_the_same_picture_from_every_format(files, offscreen, tmp_path, capsys):
    from PIL import Image

    folder, _ = files
    pictures = {}
    for name in ["p.npy", "p.rh.func.gii", "p.lh.mgz"]:  # .h5: test_render.py
        out = tmp_path / f"{name}.png"
        args = ["render", str(folder / name), "--out", str(out), "--second", "3"]
        assert main([*args, "--size", "240x160", "--views", "left", "--title", "t"]) == 0, name
        pictures[name] = np.asarray(Image.open(out))
    first = pictures["p.npy"]
    assert first.std() > 0
    for name, picture in pictures.items():
        np.testing.assert_array_equal(picture, first, err_msg=name)
    assert (
        main(
            [
                "render",
                str(folder / "p.func.gii"),
                "--out",
                str(tmp_path / "x.png"),
                "--second",
                "9",
            ]
        )
        == 2
    )
    assert "has 3 rows; --second 9 is not there (seconds 2..4)" in capsys.readouterr().err


def test_render_rgb_finds_the_contributions_of_every_pair_name(files, offscreen, tmp_path, capsys):
    folder, _ = files
    for name in ["p.lh.func.gii", "p.text.rh.mgz"]:
        out = tmp_path / f"{name}.png"
        assert (
            main(["render", str(folder / name), "--rgb", "--out", str(out), "--size", "160x120"])
            == 0
        )
        assert "RGB of text, audio, video" in capsys.readouterr().out


def test_roi_gives_the_same_means_from_every_format(files, tmp_path):
    from nibabel.freesurfer import write_annot

    folder, preds = files
    annots = []
    for hemi, seed in (("lh", 0), ("rh", 1)):
        labels = np.random.default_rng(seed).integers(0, 4, N_VERTICES_HEMI).astype(np.int32)
        ctab = np.zeros((4, 5), np.int32)
        ctab[:, :3] = np.arange(12).reshape(4, 3) * 20 + seed
        path = tmp_path / f"{hemi}.test.annot"
        write_annot(str(path), labels, ctab, [f"R{i}".encode() for i in range(4)], fill_ctab=True)
        annots.append(str(path))
    tables = {}
    for name in ["p.npy", "p.h5", "p.rh.func.gii", "p.mgz", "p.lh.mgh"]:
        out = tmp_path / f"{name}.csv"
        assert main(["roi", str(folder / name), "--annot", *annots, "--out", str(out)]) == 0
        with open(out) as f:
            tables[name] = list(csv.reader(f))
    first = tables["p.npy"]
    assert [row[0] for row in first[1:]] == ["2", "3", "4"] and len(first[0]) == 9
    for name, table in tables.items():
        assert table == first, name
    from tribe_stream.scan_timing import resample_predictions

    save_predictions(resample_predictions(preds, 0.5), tmp_path / "tr.npy")  # at 7, 7.5, .. 9 s
    out = tmp_path / "tr.csv"
    assert main(["roi", str(tmp_path / "tr.npy"), "--annot", *annots, "--out", str(out)]) == 0
    with open(out) as f:
        rows = list(csv.reader(f))
    assert [row[0] for row in rows[1:]] == ["2", "2.5", "3", "3.5", "4"]  # volume time - 5 s
    assert rows[3][1:] == first[2][1:]  # second 3: the 1 Hz row itself


def test_movie_of_every_format_and_the_stimulus_sound(files, offscreen, tmp_path, capsys):
    import av

    from tribe_stream.sources.clip import make_clip

    folder, _ = files
    frames = {}
    for name in ["p.npy", "p.rh.func.gii"]:
        out = tmp_path / f"{name}.mp4"
        assert main(["movie", str(folder / name), "--out", str(out), "--size", "160x96"]) == 0
        with av.open(str(out)) as c:
            frames[name] = [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]
    assert len(frames["p.npy"]) == 3
    got, want = frames["p.rh.func.gii"], frames["p.npy"]
    assert len(got) == 3 and max(np.abs(a - b).mean() for a, b in zip(got, want, strict=True)) < 1
    # beside the stimulus, its sound kept: seconds 2..5 of the clip's sound, the same span
    clip = make_clip(tmp_path / "clip.mp4", 6.0, width=64, height=48)
    out = tmp_path / "beside.mp4"
    args = ["movie", str(folder / "p.lh.func.gii"), "--out", str(out), "--size", "160x96"]
    assert main([*args, "--stimulus", str(clip)]) == 0
    assert "with the stimulus's sound" in capsys.readouterr().out
    with av.open(str(out)) as c:
        video, audio = c.streams.video[0], c.streams.audio[0]
        assert audio.codec_context.name == "aac"
        rate = audio.codec_context.sample_rate
        sound = np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])
        assert float(video.duration * video.time_base) == pytest.approx(3.0)
    from tribe_stream.media import read_sound

    source = read_sound(clip)
    assert source.rate == rate and len(sound) == pytest.approx(3 * rate, abs=2048)
    want = source.samples[2 * rate : 5 * rate]
    rms = lambda x: float(np.sqrt(np.mean(np.square(x))))  # noqa: E731
    assert rms(sound) == pytest.approx(rms(want), rel=0.2) and rms(want) > 0.01
