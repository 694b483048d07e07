"""w2v-BERT audio extractor: tiny random-weight models saved and loaded with `from_pretrained`."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

from tribe_stream.errors import CheckpointError, InputError
from tribe_stream.extractors.audio import AudioExtractor, GroupedAudioEncoder, zscore
from tribe_stream.extractors.audio_encoder import AudioTrunk
from tribe_stream.extractors.config import ExtractorConfig
from tribe_stream.extractors.demo import DEMO_SHAPE, demo_config, demo_extractors_path
from tribe_stream.extractors.fbank import TorchFbank

RATE = 16000


@pytest.fixture(scope="module")
def relkey_folder(tmp_path_factory):
    """A tiny w2v-BERT with the real model's relative_key attention."""
    folder = tmp_path_factory.mktemp("w2vbert")
    torch.manual_seed(3)
    cfg = Wav2Vec2BertConfig(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        conv_depthwise_kernel_size=5,
        layerdrop=0.0,
        apply_spec_augment=False,
    )
    assert cfg.position_embeddings_type == "relative_key"
    Wav2Vec2BertModel(cfg).eval().save_pretrained(folder)
    SeamlessM4TFeatureExtractor(padding_value=1.0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def relkey(relkey_folder) -> AudioExtractor:
    return AudioExtractor.from_pretrained(
        relkey_folder, ExtractorConfig.reference().audio, device="cpu"
    )


@pytest.fixture(scope="module")
def demo_audio() -> AudioExtractor:
    return AudioExtractor.from_pretrained(
        demo_extractors_path().audio, demo_config().audio, device="cpu"
    )


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    x = env * (
        np.sin(2 * np.pi * 220 * t) + 0.3 * np.sin(2 * np.pi * 1250 * t)
    ) + 0.05 * rng.standard_normal(t.size)
    return (0.2 * x).astype(np.float32)


@pytest.mark.parametrize("seconds", [1.0, 2.51])
def test_torch_fbank_equals_the_feature_extractor(seconds):
    fe = SeamlessM4TFeatureExtractor(padding_value=1.0)
    x = zscore(speechlike(seconds)).numpy()
    ref = fe(x, sampling_rate=RATE, return_tensors="np")["input_features"][0]
    ours = TorchFbank(fe)(torch.from_numpy(x)).numpy()
    assert ours.shape == ref.shape == (TorchFbank(fe).n_frames(x.size), 160)
    np.testing.assert_allclose(ours, ref, atol=2e-3)


def test_zscore_is_unbiased_and_silence_stays_finite():
    x = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    np.testing.assert_allclose(zscore(x).numpy(), (x - 2.5) / np.std(x, ddof=1), rtol=1e-5)
    assert torch.isfinite(zscore(np.zeros(100, np.float32))).all()


def test_frames_equal_the_models_own_hidden_states(relkey):
    x = speechlike(3.0)
    fe = relkey.processor
    z = ((x - x.mean()) / (1e-8 + x.std(ddof=1))).astype(np.float32)
    feats = fe(z, sampling_rate=RATE, return_tensors="pt")["input_features"]
    with torch.inference_mode():
        states = relkey.model(input_features=feats, output_hidden_states=True).hidden_states
    assert len(states) == 5 and relkey.groups == [[2], [3, 4]]  # 5 states: cut at 2, 3, 4+1
    ref = torch.stack([torch.stack([states[i][0] for i in g]).mean(0) for g in relkey.groups])
    ours = relkey.frames(x)
    assert ours.shape == (2, feats.shape[1], 32)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=2e-4)


def test_the_trunk_runs_on_an_untouched_model(relkey, relkey_folder, demo_audio):
    """The relative_key model goes through AudioTrunk (other position types through the model's own
    call), and the model object keeps its own forward: a fresh copy gives the same hidden states."""
    assert isinstance(relkey.encoder, AudioTrunk)
    assert isinstance(demo_audio.encoder, GroupedAudioEncoder)  # the demo's rotary positions
    fresh = Wav2Vec2BertModel.from_pretrained(relkey_folder).eval()
    x = zscore(speechlike(4.0, seed=5)).numpy()  # 200 frames: distances past both clamps
    feats = relkey.processor(x, sampling_rate=RATE, return_tensors="pt")["input_features"]
    with torch.inference_mode():
        ref = fresh(input_features=feats, output_hidden_states=True).hidden_states
        ours = relkey.model(input_features=feats, output_hidden_states=True).hidden_states
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("extra", [1, 57])
def test_padded_frames_change_nothing_before_them(relkey, extra):
    """Frames appended as padding (masked as keys; the depthwise convolution is causal) leave the
    real frames' features as they were: what lets one CUDA graph serve every live span."""
    x = speechlike(4.0, seed=6)
    plain = relkey.frames(x)
    n = plain.shape[1]
    relkey.pad_live = True
    try:
        padded = relkey.frames(x, pad_to=n + extra)
        same = relkey.frames(x, pad_to=n - 1)  # too short to pad to: the plain pass
    finally:
        relkey.pad_live = False
    assert padded.shape == plain.shape
    np.testing.assert_allclose(padded.numpy(), plain.numpy(), atol=1e-5)
    np.testing.assert_array_equal(same.numpy(), plain.numpy())
    # and the padding really is attended away: without the key mask the features move
    t = n + extra
    feats = relkey.fbank(zscore(x))[None]
    wide = torch.cat([feats, 5 * torch.randn(1, t - n, feats.shape[2])], dim=1)
    with torch.inference_mode():
        unmasked = relkey.encoder(wide)[0, :, :n]
    moved, kept = (unmasked - plain).abs().max(), (padded - plain).abs().max()
    assert moved > max(1e-4, 100 * kept)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_live_passes_replay_one_cuda_graph(relkey_folder):
    ex = AudioExtractor.from_pretrained(
        relkey_folder, ExtractorConfig.reference().audio, device="cuda", compile=True
    )
    assert ex.pad_live and ex.graphs
    live = ex.live(context_seconds=6.0)
    x = speechlike(9.0, seed=7)
    live.feed(x[: 4 * RATE], 0.0)
    first = live.extract([6, 7])  # a span of 4 s, padded to 6 s
    live.feed(x[4 * RATE :], 4.0)
    second = live.extract([16, 17])  # the full 6 s context [3, 9)
    # one graph, keyed (passes in the batch, padded frames): both passes ran alone, padded alike
    assert list(ex._steps) == [(1, live.pad_to)] and ex.graphs
    ex.pad_live = False
    np.testing.assert_allclose(first, ex.extract(x[: 4 * RATE], 0.0, [6, 7]), atol=2e-2)
    np.testing.assert_allclose(second, ex.extract(x[3 * RATE :], 3.0, [16, 17]), atol=2e-2)


def test_bins_take_the_nearest_frame_like_interpolate(relkey):
    x = speechlike(5.0, seed=1)
    per_frame = relkey.frames(x)  # (L, T, D)
    official = torch.nn.functional.interpolate(per_frame.permute(0, 2, 1), 10)  # 5 s -> 10 bins
    out = relkey.extract(x, t0=7.0, bins=[14, 17, 23])  # the span is [7, 12) s: local bins 0, 3, 9
    assert out.shape == (3, 2, 32)
    np.testing.assert_allclose(out, official[:, :, [0, 3, 9]].permute(2, 0, 1).numpy(), atol=1e-6)
    chunk = relkey.extract_chunk(x)
    np.testing.assert_allclose(chunk, official.numpy(), atol=1e-6)
    with pytest.raises(InputError, match="not inside"):
        relkey.extract(x, t0=7.0, bins=[24])


def test_offline_chunks_run_separately(demo_audio):
    settings = replace(demo_audio.settings, chunk_max_seconds=4.0, chunk_min_seconds=2.0)
    ex = AudioExtractor(demo_audio.model, demo_audio.processor, settings)
    x = speechlike(10.0, seed=2)  # chunks [0, 4) [4, 8) [8, 10)
    out = ex.extract_samples(x)
    assert out.shape == (*DEMO_SHAPE, 20)
    np.testing.assert_allclose(out[..., 8:16], ex.extract_chunk(x[4 * RATE : 8 * RATE]), atol=1e-5)
    np.testing.assert_allclose(out[..., 16:], ex.extract_chunk(x[8 * RATE :]), atol=1e-5)
    assert not np.allclose(out[..., 8], ex.extract(x, 0.0, [8])[0])  # a chunk is its own context


def test_live_trailing_context(demo_audio):
    live = demo_audio.live(context_seconds=3.0)
    x = speechlike(6.0, seed=4)
    for i in range(0, 4 * RATE, 4000):  # 0.25 s pieces, stamped on the stream clock
        live.feed(x[i : i + 4000], t_start=i / RATE)
    out = live.extract([6, 7])  # newest bin ends at 4.0 s: context [1.0, 4.0)
    np.testing.assert_allclose(out, demo_audio.extract(x[RATE : 4 * RATE], 1.0, [6, 7]), atol=1e-5)
    with pytest.raises(InputError, match="only 4.00 s arrived"):
        live.extract([8])
    with pytest.raises(InputError, match="older than"):
        live.extract([0, 7])
    live.feed(
        x[4 * RATE + 800 : 5 * RATE], t_start=4.05
    )  # 50 ms lost: filled with silence, counted
    assert live.counters["audio_gap_samples"] == 800 and live.extract([9]).shape == (1, *DEMO_SHAPE)


def test_live_sound_in_small_chunks_is_appended_in_place(demo_audio):
    """A microphone's 20 ms chunks over 20 s of a 3 s context: the store is made anew only when
    full (before: the whole context copied for every chunk), a pass planned before the store
    moved keeps its samples, and the passes are those of the sound fed at once."""
    live = demo_audio.live(context_seconds=3.0)
    x = speechlike(20.0, seed=6)
    step = RATE // 50
    stores, early = set(), None
    for i in range(0, 20 * RATE, step):
        live.feed(x[i : i + step], t_start=i / RATE)
        stores.add(id(live._store))
        if i == 4 * RATE - step:
            early = live.plan([6, 7])  # [1.0, 4.0)
    assert len(stores) <= 20 * RATE // live._keep + 2  # a new store each (context + 2 s) at most
    assert live.end_time == pytest.approx(20.0)
    np.testing.assert_array_equal(early.samples, x[RATE : 4 * RATE])
    out = live.extract([38, 39])  # newest bin ends at 20 s: context [17, 20)
    np.testing.assert_allclose(out, demo_audio.extract(x[17 * RATE :], 17.0, [38, 39]), atol=1e-5)


def test_live_sound_that_starts_between_bin_edges_still_gives_its_first_bin(demo_audio):
    """Before: a microphone whose first sample was stamped at 0.1 s lost bin 0 ("older than the
    audio context") and counted an extractor error. Now the first bin is led in with silence:
    the same as offline features of the sound with 0.1 s of silence before it."""
    live = demo_audio.live(context_seconds=3.0)
    x = speechlike(2.0, seed=5)
    lead = int(0.1 * RATE)
    live.feed(x[: RATE - lead], t_start=0.1)
    live.feed(x[RATE - lead : 2 * RATE - lead], t_start=1.0)
    out = live.extract([0, 1, 2, 3])
    padded = np.concatenate([np.zeros(lead, np.float32), x[: 2 * RATE - lead]])
    np.testing.assert_allclose(out, demo_audio.extract(padded, 0.0, [0, 1, 2, 3]), atol=1e-5)


def test_a_folder_without_weights_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="w2v-BERT"):
        AudioExtractor.from_pretrained(tmp_path, device="cpu")


def test_zscore_gives_the_same_bytes_with_one_and_two_threads():
    """Its float32 sums depended on the thread count (a last-bit shift the filterbank magnified
    to 9e-5 in the features of chords); summed in float64 they do not."""
    from tribe_stream.extractors.audio import zscore

    threads = torch.get_num_threads()
    try:
        for seed in range(4):
            t = np.arange(96_000 + 1000 * seed) / 16000
            noise = np.random.default_rng(seed).standard_normal(len(t))
            x = 0.2 * np.sin(2 * np.pi * (220 + 40 * seed) * t) + 0.001 * noise
            x = (x + 0.05 * np.sin(2 * np.pi * 331 * t)).astype(np.float32)
            torch.set_num_threads(1)
            one = zscore(x).numpy()
            torch.set_num_threads(2)
            np.testing.assert_array_equal(one, zscore(x).numpy())
    finally:
        torch.set_num_threads(threads)
