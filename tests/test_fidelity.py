"""`tribe-stream fidelity`: the live stream at each lag against the offline prediction.

The statistics are checked on arrays whose answers are known; then the whole tool runs on a clip
built so that the live windows and features equal the offline ones exactly at one lag (the
comparison must say r = 1 and a difference under 1e-5 there) and approach them lag by lag.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import run_cli

from tribe_stream import N_VERTICES
from tribe_stream.fidelity import (
    CSV_COLUMNS,
    FidelityOptions,
    agreement,
    feature_agreement,
    lag_report,
    measure,
    pearson,
)
from tribe_stream.sources.clip import clip_frame, make_clip

# -- the statistics, on arrays ----------------------------------------------------------------


def test_pearson_matches_numpy_and_knows_when_r_is_undefined():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((40, 300)).astype(np.float32)
    b = (0.3 * a + rng.standard_normal((40, 300))).astype(np.float32)
    expected = [np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(300)]
    np.testing.assert_allclose(pearson(a, b, block=64), expected, atol=1e-10)
    np.testing.assert_allclose(pearson(a, 2 * a + 5), 1.0, atol=1e-12)  # scale and offset
    np.testing.assert_allclose(pearson(a, -a), -1.0, atol=1e-12)
    flat = a.copy()
    flat[:, 7] = 3.25  # a constant time course: no r, not 0 and not 1
    r = pearson(flat, a)
    assert np.isnan(r[7]) and np.isfinite(np.delete(r, 7)).all()
    assert np.isnan(pearson(a[:1], b[:1])).all()  # one second: undefined


def test_agreement_statistics_and_second_alignment():
    rng = np.random.default_rng(1)
    offline = rng.standard_normal((12, N_VERTICES)).astype(np.float32)
    # a live stream that skipped second 2 (behind): rows are matched by second, not position
    seconds = [0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    report = lag_report(1.0, offline[seconds], seconds, offline, {}, {})
    assert report.total.n_seconds == 11
    assert report.total.r_mean == pytest.approx(1.0) and report.total.max_abs == 0.0
    # a known difference: live = offline + 0.5 on every vertex of second 4 only
    live = offline.copy()
    live[4] += 0.5
    a = agreement(live, offline)
    assert a.mad == pytest.approx(0.5 / 12) and a.max_abs == pytest.approx(0.5)
    np.testing.assert_allclose(a.mad_second, [0.5 if k == 4 else 0 for k in range(12)], atol=1e-6)
    assert a.r_second[4] == pytest.approx(1.0)  # a uniform shift keeps the map's pattern
    assert a.r_vertex.shape == (N_VERTICES,) and a.r_vertex.max() < 1 - 1e-4
    np.testing.assert_allclose(a.r_second, pearson(live.T, offline.T), atol=1e-6)
    # the 5th percentile and the median are of the per-vertex r
    assert a.r_p05 == pytest.approx(np.percentile(a.r_vertex, 5), abs=1e-6)
    assert a.r_median == pytest.approx(np.median(a.r_vertex), abs=1e-6)


def test_feature_agreement_and_the_csv_row():
    rng = np.random.default_rng(2)
    off = rng.standard_normal((2, 8, 30)).astype(np.float32)
    same = feature_agreement("video", off, off)
    assert (same.state, same.rel_error, same.n_bins) == ("compared", 0.0, 30)
    assert same.r == pytest.approx(1.0, abs=1e-12)
    louder = feature_agreement("audio", 1.1 * off[..., :25], off)  # live has 25 bins so far
    assert louder.n_bins == 25 and louder.r == pytest.approx(1.0)
    assert louder.rel_error == pytest.approx(0.1, rel=1e-5)
    assert feature_agreement("text", None, off).state == "offline only"
    assert feature_agreement("text", off, None).state == "live only"
    values = rng.standard_normal((15, N_VERTICES)).astype(np.float32)
    report = lag_report(
        2.0,
        values,
        range(15),
        values,
        {"video": off, "text": off},
        {"video": off},
        offline_on_live=values,
        counters={"words": 9, "late_words": 2},
    )
    row = report.row()
    assert list(row) == CSV_COLUMNS  # every statistic, in the CSV's order
    assert row["video_feature_r"] == pytest.approx(1.0) and row["audio_feature_r"] is None
    assert row["text_feature_r"] is None  # text on one side only: not compared
    assert (row["words_live"], row["late_words"]) == (9, 2)


# -- the whole tool on a clip where live == offline by construction ---------------------------

FPS = 4
FREEZE = (55.0, 60.0)


def video_clip(path: Path, seconds: float = 100.0, size=(64, 48)) -> Path:
    """A lossless (H.264 at qp 0), picture-only clip of the moving test picture, which stands
    still over FREEZE: the offline video extractor cuts a 100 s file into 30-60 s chunks and
    clamps each bin's 4 s of frames at a chunk's start (60 s here), where live clips reach back
    across it; with the picture still from 55 s to 60 s both see the same frames."""
    with av.open(str(path), "w", format="mp4") as out:
        s = out.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = *size, "yuv420p"
        s.options = {"qp": "0", "preset": "ultrafast"}
        s.codec_context.thread_count = 1
        lo, hi = round(FREEZE[0] * FPS), round(FREEZE[1] * FPS)
        for i in range(round(seconds * FPS)):
            pic = clip_frame(lo if lo <= i <= hi else i, FPS, *size)
            frame = av.VideoFrame.from_ndarray(pic, format="rgb24")
            frame.pts = i
            out.mux(s.encode(frame))
        out.mux(s.encode(None))
    return path


LAGS = (0.0, 50.0, 99.0)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny demo models: one torch thread is several times faster than two on a busy 2-core
    machine (measured: a brain-model call 14 ms against 260 ms); restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def exact(tmp_path_factory, one_thread):
    """100 s of picture: the offline run is one unpadded 200-bin window, and at lag 99 every
    live second waits for the whole clip, so every live window is that same window."""
    if "libx264" not in av.codecs_available:
        pytest.skip("this PyAV build has no libx264 (lossless H.264 makes frames exact)")
    clip = video_clip(tmp_path_factory.mktemp("exact") / "still-at-60s.mp4")
    return measure(clip, FidelityOptions(lags=LAGS, text=False, use_cache=False)).report


def test_live_equal_to_offline_by_construction_gives_r_1(exact):
    same = exact.lag(99.0)
    t = same.total
    assert t.n_seconds == 100 and exact.offline_seconds == 100
    assert t.max_abs < 1e-5 and t.mad < 1e-6
    assert t.r_mean > 1 - 1e-6 and t.r_p05 > 1 - 1e-6 and t.undefined == 0
    assert np.all(t.r_second > 1 - 1e-6)
    video = same.modalities["video"]
    assert (video.state, video.n_bins) == ("compared", 200)
    assert video.r > 1 - 1e-9 and video.rel_error < 1e-6
    assert set(same.modalities) == {"video"}  # a picture-only file: nothing else on either side
    assert same.context.max_abs < 1e-5 and same.features.max_abs < 1e-5


def test_a_larger_lag_moves_the_live_answer_to_the_offline_one(exact):
    """On this clip the live window of second k at lag L is bins [0, min(2k + 2 + 2L, 200)),
    a prefix of the offline window [0, 200) that grows with L, and the features are the same on
    both sides: so second k is exact once k >= 99 - L (L + 1 seconds), and the loss is all the
    brain model's missing right-hand context, none of it the extractors'."""
    r_means, mads = [], []
    for lag in LAGS:
        x = exact.lag(lag)
        exact_from = int(99 - lag)
        assert np.all(x.total.mad_second[exact_from:] < 1e-5), lag  # float32 noise
        assert np.all(x.total.mad_second[:exact_from] > 1e-4), lag
        assert np.all(x.total.r_second[exact_from:] > 1 - 1e-6), lag
        assert x.features.max_abs < 1e-5  # the extractors lose nothing here
        assert x.modalities["video"].rel_error < 1e-6
        r_means.append(x.total.r_mean)
        mads.append(x.total.mad)
    assert r_means[0] < r_means[1] < r_means[2] and mads[0] > mads[1] > mads[2]
    assert r_means[0] < 0.999  # lag 0 is measurably off on this model


# -- the command ------------------------------------------------------------------------------


def offscreen_gl() -> bool:
    from tribe_stream.viewer.backend import DisplayError, use_offscreen_backend

    try:
        use_offscreen_backend()
        from vispy import app

        app.Canvas(show=False).close()
        return True
    except (DisplayError, RuntimeError, OSError):
        return False


def test_command_writes_the_report_for_any_clip(tmp_path, one_thread, capsys):
    """Sound and picture, two lags: a CSV row per lag with every statistic, r by second, the
    plot and the r map on the cortex; the audio features (a trailing context live, a whole
    chunk offline) differ, the video features do not. (In this process: the models are built
    already; the error tests below run the command as a user would.)"""
    from PIL import Image

    from tribe_stream.cli import main

    clip = make_clip(tmp_path / "clip.mp4", 4.0, width=96, height=64)
    out = tmp_path / "report"
    args = ["fidelity", str(clip), "--lags", "2,0", "--out", str(out), "--no-text", "--no-cache"]
    gl = offscreen_gl()
    assert main(args + ([] if gl else ["--no-map"])) == 0
    printed = capsys.readouterr().out
    assert "UNTRAINED" in printed and "lag s" in printed and "fidelity.csv" in printed
    assert "context" in printed and "features" in printed  # both tables
    rows = list(csv.DictReader(io.StringIO((out / "fidelity.csv").read_text())))
    assert [row["lag_s"] for row in rows] == ["0", "2"]  # sorted
    for row in rows:
        assert list(row) == CSV_COLUMNS
        empty = {k for k, v in row.items() if v == ""}
        assert empty == {"text_feature_r", "text_feature_rel_error"}, empty
        assert row["seconds"] == "4" and float(row["video_feature_r"]) > 1 - 1e-6
        assert float(row["audio_feature_rel_error"]) > 1e-3
        assert -1 <= float(row["r_p05"]) <= float(row["r_median"]) <= 1
    seconds = list(csv.reader(io.StringIO((out / "fidelity_seconds.csv").read_text())))
    assert seconds[0] == ["second", "r_lag_0", "r_lag_2"] and len(seconds) == 5
    maps = np.load(out / "r_by_vertex.npy")
    assert maps.shape == (2, N_VERTICES) and np.isfinite(maps).all()
    pictures = ["fidelity.png"] + (["fidelity_r_map.png"] if gl else [])
    for name in pictures:
        p = out / name
        assert p.stat().st_size < 300_000
        with Image.open(p) as im:
            assert im.format == "PNG" and im.width >= 800
            assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 50


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--lags", "0,0.3"], "multiple of 0.5"),
        (["--lags", "0,2", "--map-lag", "5"], "not one of the lags"),
        (["--lags", "120"], "100 s window"),
    ],
)
def test_bad_options_are_one_line(tmp_path, extra, message):
    clip = make_clip(tmp_path / "x.mp4", 1.0, width=32, height=32)
    r = run_cli("fidelity", str(clip), "--out", str(tmp_path / "o"), *extra)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bad_media_is_one_line(tmp_path):
    story = tmp_path / "story.txt"
    story.write_text("once upon a time")
    for media, message in ((tmp_path / "missing.mp4", "does not exist"), (story, "a text")):
        r = run_cli("fidelity", str(media), "--out", str(tmp_path / "o"), "--overwrite")
        assert r.returncode == 2 and message in r.stderr, r.stderr
        assert "Traceback" not in r.stderr


def test_every_live_option_given_reaches_the_live_runs():
    """`fidelity --video-clips 1` measures what one clip a second costs against the offline
    answer: the live runs must get it (a hand-made list once dropped it, and --text-batch and
    --video-overlap), each at its own lag."""
    from dataclasses import fields

    from tribe_stream.options import StreamOptions

    o = FidelityOptions(
        checkpoint="demo", device="cpu", video_clips=1, text_batch="on", video_overlap=True,
        lags=(0.0, 3.0), text=False, video_fp8="off",
    )  # fmt: skip
    s = o.stream_options(3.0)
    assert (s.video_clips, s.text_batch, s.video_overlap, s.lag) == (1, "on", True, 3.0)
    assert s.realtime is False  # fidelity replays as fast as possible unless --realtime
    for f in fields(StreamOptions):
        assert f.name == "lag" or getattr(s, f.name) == getattr(o, f.name), f.name
