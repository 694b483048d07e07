"""Every engine gives the eager model's answer; static windows equal unpadded ones."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from conftest import load_case

from tribe_stream.engines import make_engine
from tribe_stream.engines.static_window import StaticWindow, pack_inputs


@pytest.mark.parametrize("case", ["full_T200", "no_audio_T200"])
def test_onnx_engine_matches_official(case, small_model):
    pytest.importorskip("onnxruntime", reason="the onnx engine needs onnxruntime")
    feats, expected = load_case(case)
    engine = make_engine("onnx", small_model)
    assert np.abs(engine.run(feats) - expected).max() < 1e-4
    assert np.abs(engine.run(feats, rows=[99]) - expected[99:]).max() < 1e-4


@pytest.mark.parametrize("T", [37, 64, 2])
def test_static_window_equals_unpadded(T, small_model):
    """Padding to 200 with the key mask changes nothing for the real tokens (odd T included)."""
    feats, _ = load_case("full_T200")
    feats = {m: x[..., :T] for m, x in feats.items()}
    feats["audio"] = None
    eager = make_engine("torch", small_model).run(feats)
    window = StaticWindow(small_model.model)
    packed = pack_inputs(
        {m: (torch.from_numpy(x) if x is not None else None) for m, x in feats.items()},
        small_model.config,
    )
    with torch.no_grad():
        got = window(*packed, torch.arange((T + 1) // 2)).numpy()
    assert np.abs(got - eager).max() < 1e-4


def test_onnx_graph_runs_windows_of_any_length(small_model):
    pytest.importorskip("onnxruntime")
    feats, _ = load_case("partial_T37_tokens")
    engine = make_engine("onnx", small_model)
    eager = make_engine("torch", small_model).run(feats)
    assert np.abs(engine.run(feats) - eager).max() < 1e-4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="tensorrt needs a CUDA GPU")
@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None, reason="tensorrt is not installed here"
)
def test_tensorrt_engine_matches(small_model):
    feats, expected = load_case("full_T200")
    engine = make_engine("tensorrt", small_model, dtype="float16")
    out = engine.run(feats)
    assert np.linalg.norm(out - expected) / np.linalg.norm(expected) < 1e-2


def test_unknown_engine_is_named(small_model):
    from tribe_stream.errors import TribeStreamError

    with pytest.raises(TribeStreamError, match="unknown engine 'trt'"):
        make_engine("trt", small_model)


def test_compiled_engine_matches_official(small_model):
    """torch.compile over the static window: one graph serves windows of every length."""
    engine = make_engine("compiled", small_model)
    for case in ("full_T200", "no_audio_T200"):
        feats, expected = load_case(case)
        assert np.abs(engine.run(feats) - expected).max() < 1e-4
    feats, _ = load_case("partial_T37_tokens")
    eager = make_engine("torch", small_model).run(feats)
    assert np.abs(engine.run(feats, rows=[18]) - eager[18:]).max() < 1e-4


def test_engines_never_change_the_model_they_are_given(small_model):
    """A bfloat16 engine built after a float32 one used to cast the shared model in place, and the
    float32 engine's error went from 2e-6 to 3e-2."""
    feats, expected = load_case("full_T200")
    weights = small_model.model.time_pos_embed
    first = make_engine("torch", small_model)
    assert np.abs(first.run(feats) - expected).max() < 1e-5
    half = make_engine("torch", small_model, dtype="bfloat16")
    onnx_half = (
        make_engine("onnx", small_model, dtype="float16")
        if importlib.util.find_spec("onnxruntime")
        else None
    )
    assert small_model.model.time_pos_embed is weights
    assert weights.dtype == torch.float32
    assert np.abs(first.run(feats) - expected).max() < 1e-5  # still exact
    for engine in (half, onnx_half):
        if engine is not None:  # each in its own precision: close, not exact
            out = engine.run(feats)
            assert 1e-5 < np.abs(out - expected).max() < 0.1


def test_shared_weights_are_not_copied_when_nothing_changes(small_model):
    engine = make_engine("torch", small_model)  # same device and dtype: no second copy in memory
    assert engine.model is not small_model.model
    assert engine.model.time_pos_embed.data_ptr() == small_model.model.time_pos_embed.data_ptr()


@pytest.mark.parametrize("name", ["torch", "compiled"])
def test_non_finite_output_is_refused(name, small_model):
    """Features of 3e38 are finite but overflow the projectors: all-NaN maps must not pass."""
    from tribe_stream.errors import InputError

    feats, _ = load_case("full_T200")
    feats = {m: np.full_like(x, 3e38) for m, x in feats.items()}
    with pytest.raises(InputError, match="not finite"):
        make_engine(name, small_model).run(feats)
