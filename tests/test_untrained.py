"""Untrained demo weights say so on every output: the terminal (`run`), the Python API (a
warning), both viewers' heads-up line, pictures (caption and PNG text), movies (container
metadata) and files (`model.untrained` in the metadata beside `run --out`)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from conftest import run_cli

from tribe_stream import N_VERTICES
from tribe_stream.untrained import (
    UNTRAINED_LABEL,
    UNTRAINED_TAG,
    UntrainedWeightsWarning,
    is_untrained,
)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from tribe_stream.sources.clip import make_clip

    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", 3.0, width=96, height=64)


def test_the_python_api_warns_for_demo_weights(clip):
    """Before: `predict(checkpoint="demo")` and a demo `Stream` said nothing in user code."""
    from tribe_stream import Stream, predict

    with pytest.warns(UntrainedWeightsWarning, match="UNTRAINED demo weights"):
        preds = predict(clip, checkpoint="demo", asr=False)
    assert is_untrained(preds.metadata)
    stream = Stream.from_file(clip, checkpoint="demo", realtime=False, text=False)
    with pytest.warns(UntrainedWeightsWarning):
        with stream.open():
            pass
    assert UNTRAINED_LABEL in stream.notes and stream.model["untrained"] is True


def test_trained_weights_say_nothing_of_the_kind():
    from conftest import FIXTURE

    from tribe_stream.model.loading import load_brain_model

    identity = load_brain_model(str(FIXTURE)).identity
    assert not is_untrained(identity) and not is_untrained({"model": identity})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedWeightsWarning)
        from tribe_stream.viewer.hud import hud_line

        assert UNTRAINED_TAG not in hud_line({"second": 1, "model": identity})


def test_the_heads_up_line_says_untrained():
    from tribe_stream.viewer.hud import hud_line

    line = hud_line({"second": 4, "model": {"untrained": True}}, fps=30)
    assert line.startswith(UNTRAINED_TAG + "  |  second 4"), line


def test_run_pictures_movies_and_files_of_demo_weights_say_untrained(clip, tmp_path):
    """Before: `run --checkpoint demo` printed no label, `--out` kept no metadata, and the
    pictures and movies of its predictions looked like any brain map."""
    from PIL import Image

    out, rec = tmp_path / "run.npy", tmp_path / "run.h5"
    r = run_cli(
        "run", "--checkpoint", "demo", "--file", str(clip), "--fast", "--no-text",
        "--publish", "none", "--out", str(out), "--record", str(rec),
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert UNTRAINED_LABEL in r.stdout
    assert np.load(out).shape == (3, N_VERTICES)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["model"]["untrained"] is True and meta["n_seconds"] == 3

    for source in (out, rec):  # the live .npy (its JSON) and the recording (its attributes)
        png = tmp_path / f"{source.suffix[1:]}.png"
        r = run_cli("render", str(source), "--out", str(png), "--size", "320x240")
        assert r.returncode == 0, r.stderr
        text = Image.open(png).text
        assert text["Comment"] == UNTRAINED_LABEL and text["Title"].startswith(UNTRAINED_TAG)

    bare = tmp_path / "bare.npy"  # a map nobody labelled: no label
    np.save(bare, np.load(out))
    r = run_cli("render", str(bare), "--out", str(tmp_path / "bare.png"), "--size", "320x240")
    assert r.returncode == 0, r.stderr
    assert "Comment" not in Image.open(tmp_path / "bare.png").text

    import av

    movie = tmp_path / "run.mp4"
    r = run_cli("movie", str(rec), "--out", str(movie), "--size", "320x240", "--views", "left")
    assert r.returncode == 0, r.stderr
    with av.open(str(movie)) as container:
        assert container.metadata.get("comment") == UNTRAINED_LABEL
