"""`predict --contributions`: each modality alone (the others absent, as the model treats
absence), on the same features and windows as the full prediction, written beside it; an absent
modality gives no file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_cli
from test_predict import write_wav

from tribe_stream import MAX_TOKENS, N_VERTICES
from tribe_stream.offline_outputs import find_contributions, read_prediction_file
from tribe_stream.prediction import Predictor

SRT = """1
00:00:00,500 --> 00:00:01,500
hello there

2
00:00:02,000 --> 00:00:03,200
the brain listens
"""


@pytest.fixture(scope="module")
def stimulus(tmp_path_factory):
    """4 s of tones with given words: text and audio present, video absent."""
    d = tmp_path_factory.mktemp("stim")
    write_wav(d / "talk.wav", 4.0)
    (d / "talk.srt").write_text(SRT)
    return d / "talk.wav", d / "talk.srt", d / "cache"


@pytest.fixture(scope="module")
def run(stimulus):
    wav, srt, cache = stimulus
    predictor = Predictor(
        checkpoint="demo", asr=False, transcript=str(srt), cache=str(cache), contributions=True
    )
    return predictor, predictor.predict(wav)


def test_each_modality_alone_is_the_model_with_the_others_absent(run, stimulus):
    predictor, preds = run
    assert sorted(preds.contributions) == ["audio", "text"]  # no video in a .wav: no entry
    states = preds.metadata["contributions"]
    assert states["text"] == states["audio"] == "present"
    assert states["video"].startswith("absent") and "no video" in states["video"]
    feats, _ = predictor.features(stimulus[0])  # from the cache: the same features
    T = feats["audio"].shape[-1]
    model = predictor.loaded.model
    order = list(model.config.feature_dims)
    for m, part in preds.contributions.items():
        assert part.values.shape == preds.values.shape == (4, N_VERTICES)
        assert part.metadata["contribution"] == m and part.metadata["modalities"] == [m]
        assert part.seconds.tolist() == preds.seconds.tolist()
        # Independently of the engine: the model's own fixed-window path, every modality passed
        # (the others random) and only `m` flagged present, on the zero-padded 200-bin window.
        padded = {
            k: torch.as_tensor(np.pad(x, [(0, 0), (0, 0), (0, MAX_TOKENS - T)]))[None]
            for k, x in feats.items()
        }
        other = next(k for k in feats if k != m)
        present = torch.tensor([1.0 if k == m else 0.0 for k in order])
        noise = {other: torch.randn_like(padded[other]) * 5}
        with torch.inference_mode():
            ref = model(**{m: padded[m], **noise}, present=present)[0, : len(preds)].numpy()
            zeros = model(**{m: padded[m], other: torch.zeros_like(padded[other])})
        np.testing.assert_allclose(part.values, ref, atol=2e-5)
        # absent is not "features of zeros" (those still pass the projector's bias)
        assert np.abs(part.values - zeros[0, : len(preds)].numpy()).max() > 1e-3
        assert np.abs(part.values - preds.values).max() > 1e-3  # and not the full prediction


def test_contributions_are_written_beside_the_output_in_its_format(run, tmp_path):
    _, preds = run
    written = preds.save(tmp_path / "talk.func.gii")
    names = sorted(p.name for p in written)
    assert names == sorted(
        [f"talk{m}{h}.func.gii" for m in ("", ".text", ".audio") for h in (".lh", ".rh")]
        + ["talk.words.tsv"]  # the words, once for the output and its contributions
    ), names
    assert not (tmp_path / "talk.video.lh.func.gii").exists()  # absent: no file of zeros
    found = find_contributions(tmp_path / "talk.audio.rh.func.gii")  # from any of the files
    assert sorted(found) == ["audio", "text"]
    values, _, meta = read_prediction_file(found["text"])
    np.testing.assert_array_equal(values, preds.contributions["text"].values)
    assert meta["contribution"] == "text" and meta["model"]["untrained"] is True
    main = read_prediction_file(tmp_path / "talk.lh.func.gii")[2]
    assert "contribution" not in main and main["contributions"]["video"].startswith("absent")


def test_cli_writes_contributions_from_cached_features(run, stimulus, tmp_path):
    """The CLI run finds the features the fixture cached: nothing is extracted again, and the
    files hold what the API computed; the summary names the absent modality."""
    wav, srt, cache = stimulus
    out = tmp_path / "talk.npy"
    r = run_cli("predict", str(wav), "--transcript", str(srt), "--cache", str(cache),
                "--out", str(out), "--contributions", "--no-asr")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "hit" in r.stdout and "1 hits" in r.stdout  # no extraction (the summary is on stdout)
    assert "no file: video absent (the file has no video stream)" in r.stdout + r.stderr
    _, preds = run
    for m in ("text", "audio"):
        np.testing.assert_allclose(
            np.load(tmp_path / f"talk.{m}.npy"), preds.contributions[m].values, atol=1e-6
        )
        assert json.loads((tmp_path / f"talk.{m}.json").read_text())["contribution"] == m
    assert not (tmp_path / "talk.video.npy").exists()
    # A contribution file already there is refused before any work, in one line.
    (tmp_path / "again.video.npy").write_bytes(b"")
    r = run_cli("predict", str(wav), "--out", str(tmp_path / "again.npy"), "--contributions")
    assert r.returncode == 2 and "again.video.npy exists; pass --overwrite" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
