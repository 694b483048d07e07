"""The brain model reproduces the official code's outputs (tests/fixtures/tribev2-small)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CASES, FIXTURE, load_case, run_cli

from tribe_stream.engines import make_engine
from tribe_stream.errors import InputError
from tribe_stream.model.loading import load_brain_model


@pytest.mark.parametrize("case", CASES)
def test_api_reproduces_official(case, small_model):
    feats, expected = load_case(case)
    engine = make_engine("torch", small_model)
    out = engine.run(feats, pool=not case.endswith("tokens"))
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() < 1e-4


@pytest.mark.parametrize("case", CASES)
def test_cli_reproduces_official(case, tmp_path):
    feats, expected = load_case(case)
    np.savez(tmp_path / "in.npz", **feats)
    args = [
        "predict-features",
        "--checkpoint",
        str(FIXTURE),
        "--features",
        str(tmp_path / "in.npz"),
        "--out",
        str(tmp_path / "out.npy"),
    ]
    if case.endswith("tokens"):
        args.append("--tokens")
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    out = np.load(tmp_path / "out.npy")
    assert out.dtype == np.float32 and out.shape == expected.shape
    assert np.abs(out - expected).max() < 1e-4


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_close_to_float32(dtype):
    loaded = load_brain_model(FIXTURE)
    engine = make_engine("torch", loaded, dtype=dtype)
    for case in CASES:
        feats, expected = load_case(case)
        out = engine.run(feats, pool=not case.endswith("tokens"))
        rel = np.linalg.norm(out - expected) / np.linalg.norm(expected)
        assert rel < 1e-2, (case, rel)


def test_pooling_is_mean_of_token_pairs(small_model):
    feats, _ = load_case("full_T200")
    engine = make_engine("torch", small_model)
    tokens = engine.run(feats, pool=False)
    pooled = engine.run(feats, pool=True)
    np.testing.assert_allclose(pooled, (tokens[0::2] + tokens[1::2]) / 2, atol=1e-5)
    # and equal to the official AdaptiveAvgPool1d(100) over time
    ref = torch.nn.AdaptiveAvgPool1d(100)(torch.from_numpy(tokens.T)[None])[0].T.numpy()
    np.testing.assert_allclose(pooled, ref, atol=1e-5)


def test_rows_select_the_same_values(small_model):
    feats, expected = load_case("full_T200")
    out = make_engine("torch", small_model).run(feats, rows=[0, 57, 99])
    np.testing.assert_allclose(out, expected[[0, 57, 99]], atol=1e-4)


def test_missing_modality_is_zero_after_projector(small_model):
    """Absent audio differs from present-but-zero audio (which gets the projector bias)."""
    feats, expected = load_case("no_audio_T200")
    engine = make_engine("torch", small_model)
    zero_audio = dict(feats, audio=np.zeros((2, 32, 200), np.float32))
    assert np.abs(engine.run(feats) - expected).max() < 1e-4
    assert np.abs(engine.run(zero_audio) - expected).max() > 1e-3


def test_windows_longer_than_200_are_refused(small_model):
    feats, _ = load_case("full_T200")
    long = {m: np.concatenate([x, x[..., :1]], axis=-1) for m, x in feats.items()}
    with pytest.raises(InputError, match="never trained"):
        small_model.model(**{m: torch.from_numpy(x)[None] for m, x in long.items()})
    with pytest.raises(InputError, match="1 to 200 bins"):
        make_engine("torch", small_model).run(long)


def test_long_features_run_in_200_bin_windows(small_model, tmp_path):
    """A 250-bin input is two windows: the first equals the 200-bin case, exactly."""
    feats, expected = load_case("full_T200")
    long = {m: np.concatenate([x, x[..., :50]], axis=-1) for m, x in feats.items()}
    np.savez(tmp_path / "in.npz", **long)
    r = run_cli(
        "predict-features",
        "--checkpoint",
        str(FIXTURE),
        "--features",
        str(tmp_path / "in.npz"),
        "--out",
        str(tmp_path / "out.npy"),
    )
    assert r.returncode == 0, r.stderr
    out = np.load(tmp_path / "out.npy")
    assert out.shape == (125, 642)
    assert np.abs(out[:100] - expected).max() < 1e-4
    second = make_engine("torch", small_model).run({m: x[..., :50] for m, x in feats.items()})
    assert np.abs(out[100:] - second).max() < 1e-4


def test_bad_feature_shapes_are_named(tmp_path):
    feats, _ = load_case("full_T200")
    feats["video"] = feats["video"][:, :7]
    np.savez(tmp_path / "in.npz", **feats)
    r = run_cli(
        "predict-features",
        "--checkpoint",
        str(FIXTURE),
        "--features",
        str(tmp_path / "in.npz"),
        "--out",
        str(tmp_path / "out.npy"),
    )
    assert r.returncode == 2
    assert "video features have shape (2, 7, 200)" in r.stderr and "Traceback" not in r.stderr
