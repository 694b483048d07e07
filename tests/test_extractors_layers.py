"""Layer grouping, extractor settings from config.yaml, and the pure time arithmetic (bins, clip
frame times, nearest frames, chunking, word bins)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tribe_stream.errors import CheckpointError, InputError
from tribe_stream.extractors import config as xconfig
from tribe_stream.extractors.layers import group_layers, thin_indices
from tribe_stream.extractors.timing import (
    chunk_bounds,
    clip_sample_times,
    frames_for_bins,
    n_bins_for,
    nearest_frame_indices,
    place_words,
    select_frames,
    word_bin_span,
)

FIXTURE_CONFIG = Path(__file__).parent / "fixtures" / "tribev2-small" / "config.yaml"


# -- layer groups (docs/MODEL.md §3 table) ------------------------------------------------------


def test_group_layers_match_the_reference_table():
    assert group_layers(29, cache_n_layers=20) == [[13, 15, 16, 18, 19], [21, 22, 24, 25, 27, 28]]
    assert group_layers(25, cache_n_layers=None) == [list(range(12, 18)), list(range(18, 25))]
    assert group_layers(41, cache_n_layers=20) == [[19, 21, 23, 25, 27], [29, 32, 34, 36, 38, 40]]


def test_thinning_is_skipped_when_the_model_has_few_states():
    assert thin_indices(4, 20) == [0, 1, 2, 3]
    assert thin_indices(41, 20)[:3] == [0, 2, 4] and len(thin_indices(41, 20)) == 20
    # tiny demo models: 4 states, cut at int(0.5*3)=1, int(0.75*3)=2, 3+1
    assert group_layers(4) == [[1], [2, 3]]


def test_mini_variant_is_one_layer_at_two_thirds():
    assert group_layers(29, 2 / 3, 20, "mean") == [[18]]  # Qwen3-0.6B, thinned to 20 first
    assert group_layers(25, 2 / 3, None, "mean") == [[16]]  # w2v-BERT, no thinning
    assert group_layers(25, 2 / 3, 20, "mean") == [[15]]  # ViT-L thinned: not the same layer
    assert group_layers(25, [0.5, 1.0], None, "mean") == [[12, 24]]


def test_group_layers_rejects_bad_settings():
    with pytest.raises(InputError, match="fractions"):
        group_layers(25, [0.5, 1.5])
    with pytest.raises(InputError, match="aggregation"):
        group_layers(25, aggregation="max")
    with pytest.raises(InputError, match="cache_n_layers"):
        thin_indices(25, 1)


# -- settings from config.yaml --------------------------------------------------------------------


def test_settings_from_the_released_config_layout():
    cfg = xconfig.from_yaml(FIXTURE_CONFIG)
    assert cfg.text.model_name == "meta-llama/Llama-3.2-3B" and cfg.text.cache_n_layers == 20
    assert (
        cfg.video.model_name == "facebook/vjepa2-vitg-fpc64-256" and cfg.video.cache_n_layers == 20
    )
    assert cfg.audio.model_name == "facebook/w2v-bert-2.0" and cfg.audio.cache_n_layers is None
    assert cfg.video.clip_seconds == 4.0 and cfg.video.num_frames == 64
    assert cfg.text.fractions == (0.5, 0.75, 1.0) and cfg.features_to_use == (
        "text",
        "audio",
        "video",
    )
    assert cfg.text.groups(29) == [[13, 15, 16, 18, 19], [21, 22, 24, 25, 27, 28]]
    assert xconfig.ExtractorConfig.reference() == xconfig.from_experiment({})


def test_audio_is_never_thinned_whatever_the_config_says():
    """The released config sets `audio_feature.cache_n_layers: 20`; neuralset thins hidden
    states only in the token aggregation that audio does not use, so w2v-BERT's 25 states are
    grouped whole (12-17 / 18-24), not thinned first ([11,13..16] / [18..21,23,24])."""
    cfg = xconfig.from_experiment(
        {"data": {"audio_feature": {"cache_n_layers": 20}, "text_feature": {"cache_n_layers": 20}}}
    )
    assert cfg.audio.cache_n_layers is None
    assert cfg.audio.groups(25) == [list(range(12, 18)), list(range(18, 25))]
    assert cfg.text.groups(29) == [[13, 15, 16, 18, 19], [21, 22, 24, 25, 27, 28]]
    assert xconfig.ExtractorConfig.reference().audio.groups(25) == cfg.audio.groups(25)


def test_mini_settings_and_overrides():
    mini = xconfig.ExtractorConfig.mini()
    # the mini config sets no cache_n_layers: one layer at int(2/3 * (n - 1)) of all the states
    assert mini.text.model_name == "Qwen/Qwen3-0.6B" and mini.text.groups(29) == [[18]]
    assert mini.video.model_name == "facebook/vjepa2-vitl-fpc64-256"
    assert mini.video.groups(25) == [[16]] and mini.audio.groups(25) == [[16]]
    n = xconfig.from_experiment(
        {"data": {"n_layers_to_use": 3, "text_feature": {"cache_n_layers": None}}}
    )
    assert n.text.fractions == (0.0, 0.5, 1.0) and n.text.cache_n_layers is None  # explicit null
    assert n.video.cache_n_layers is None  # absent -> neuralset's default: no thinning
    moved = mini.with_models(text="/models/qwen")
    assert moved.text.model_name == "/models/qwen" and moved.audio == mini.audio


@pytest.mark.parametrize(
    "data, message",
    [
        ({"layers_to_use": "all"}, "layers_to_use"),
        ({"layer_aggregation": "max"}, "layer_aggregation"),
        ({"features_to_use": ["smell"]}, "features_to_use"),
        ({"frequency": 1}, "2 Hz"),
        ({"video_feature": {"image": {"cache_n_layers": 1}}}, "cache_n_layers"),
    ],
)
def test_bad_config_values_name_the_key(data, message):
    with pytest.raises(CheckpointError, match=message):
        xconfig.from_experiment({"data": data})


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="config.yaml"):
        xconfig.from_yaml(tmp_path)


# -- video frame times ----------------------------------------------------------------------------


def test_clip_sample_times_follow_the_official_subtimes():
    s = clip_sample_times([0.5, 10.0], n_frames=64, clip_seconds=4.0)
    assert s.shape == (2, 64)
    np.testing.assert_allclose(s[1], 10.0 - 4.0 * np.arange(63, -1, -1) / 64)  # 6.0625 ... 10.0
    assert s[1, -1] == 10.0 and np.allclose(np.diff(s[1]), 1 / 16)
    assert (s[0, :56] == 0.0).all() and s[0, -1] == 0.5  # clamped at the start
    chunk = clip_sample_times([61.0], t_min=[60.0])
    assert chunk.min() == 60.0 and chunk.max() == 61.0


def test_select_frames_takes_the_latest_frame_at_or_before():
    times = np.array([0.10, 0.20, 0.30, 0.45])
    picked = select_frames(np.array([0.0, 0.1, 0.15, 0.2 - 1e-7, 0.44, 0.45, 9.0]), times)
    assert picked.tolist() == [0, 0, 0, 1, 2, 3, 3]
    with pytest.raises(InputError, match="increasing"):
        select_frames(np.array([0.1]), [0.2, 0.1])
    with pytest.raises(InputError, match="at least one"):
        select_frames(np.array([0.1]), [])


# -- audio nearest sampling -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_frames, n_out", [(1499, 60), (2999, 120), (50, 2), (149, 6), (7, 7), (3, 10), (1, 4)]
)
def test_nearest_indices_equal_torch_interpolate(n_frames, n_out):
    ref = torch.nn.functional.interpolate(
        torch.arange(n_frames, dtype=torch.float32)[None, None], n_out
    )
    assert nearest_frame_indices(n_frames, n_out).tolist() == ref[0, 0].long().tolist()


def test_frames_for_bins_is_the_chunk_table_on_the_grid():
    table = nearest_frame_indices(1499, 60)
    assert frames_for_bins([20, 21, 79], 10.0, 40.0, 1499).tolist() == [
        table[0],
        table[1],
        table[59],
    ]
    off = frames_for_bins([1], 0.25, 2.25, 100)  # not on the grid: proportional position
    assert off.tolist() == [int(0.25 / 2.0 * 100)]
    with pytest.raises(InputError, match="not inside"):
        frames_for_bins([80], 10.0, 40.0, 1499)


def test_chunk_bounds_like_the_official_chunking():
    assert chunk_bounds(80.0) == [(0.0, 80.0)]  # a 20 s tail is too short to stand alone
    assert chunk_bounds(100.0) == [(0.0, 60.0), (60.0, 100.0)]
    assert chunk_bounds(130.0) == [(0.0, 60.0), (60.0, 130.0)]
    assert chunk_bounds(150.0) == [(0.0, 60.0), (60.0, 120.0), (120.0, 150.0)]
    assert chunk_bounds(0.0) == [] and n_bins_for(10.3) == 21 and n_bins_for(10.2) == 20


# -- word bins ------------------------------------------------------------------------------------


def test_word_bin_span_rounds_onset_and_duration():
    assert word_bin_span(1.0, 0.1) == (2, 1)  # at least one bin
    assert word_bin_span(1.25, 0.75) == (2, 2)  # round half to even: 2.5 -> 2, 1.5 -> 2
    assert word_bin_span(1.3, 0.3) == (3, 1)
    assert word_bin_span(4.9, 0.5, n_bins=10) == (9, 1)  # hangs over the end: moved inside
    assert (
        word_bin_span(5.2, 0.2, n_bins=10) is None and word_bin_span(-1.0, 0.5, n_bins=10) is None
    )
    assert word_bin_span(9.0, 1.0, start=8.0, n_bins=4) == (2, 2)


def test_place_words_sums_vectors_and_leaves_other_bins_zero():
    v = np.stack([np.full((2, 3), 1.0), np.full((2, 3), 10.0), np.full((2, 3), 100.0)]).astype(
        np.float32
    )
    out = place_words(v, [0.0, 0.1, 1.0], [0.2, 0.9, 0.3], n_bins=4)
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out[0, 0], [11.0, 10.0, 100.0, 0.0])
    with pytest.raises(InputError, match="one onset"):
        place_words(v, [0.0], [0.1], 4)
