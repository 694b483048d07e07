"""Text extractor: tiny random-weight Llama / Qwen3 saved and loaded with `from_pretrained`; the
KV-cached live path against the official full forward."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import Qwen3Config, Qwen3Model

from tribe_stream.errors import InputError
from tribe_stream.extractors.config import ExtractorConfig
from tribe_stream.extractors.demo import DEMO_SHAPE, demo_config, demo_extractors_path
from tribe_stream.extractors.text import TextExtractor
from tribe_stream.types import Word

STORY = (
    "the quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore! "
    "Hello, how are you today? I am fine, thank you. What time is it? It is late in the evening, "
    "and the light is fading over the city while people walk home from work."
).split()


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def llama() -> TextExtractor:
    return TextExtractor.from_pretrained(
        demo_extractors_path().text, demo_config().text, device="cpu"
    )


def test_no_bos_and_word_tokens(llama):
    ids = llama.tokens("The quick brown")
    assert ids and ids[0] != llama.tokenizer.bos_token_id
    assert llama.shape == DEMO_SHAPE and llama.groups == [[1], [2, 3]]


def test_kv_cached_words_equal_the_full_forward(llama):
    live = llama.word_vectors(STORY)
    full = llama.reference_vectors(STORY)
    assert live.shape == (len(STORY), *DEMO_SHAPE)
    assert rel_err(live, full) < 1e-3
    batched = llama.reference_vectors(
        STORY[:9], batch_size=4
    )  # right padding with EOS, as official
    # the 9th word ("dog.") is the shorter transcript's last: it loses its "." there
    assert rel_err(batched[:8], full[:8]) < 1e-4


def test_sliding_context_window_recomputes_exactly(llama):
    short = TextExtractor(
        llama.model, llama.tokenizer, replace(llama.settings, max_context_words=6)
    )
    stream = short.live()
    vecs = np.stack([stream.add(w) for w in STORY[:20]])
    assert stream.counters["recomputes"] >= 13  # once the window slides, every word re-runs
    assert rel_err(vecs, short.reference_vectors(STORY[:20])) < 1e-3
    assert rel_err(vecs[:6], llama.reference_vectors(STORY[:6])) < 1e-3  # before it slides: same


def test_live_reset_and_bad_words(llama):
    stream = llama.live()
    first = stream.add(Word("the", 0.0, 0.2))
    stream.add("dog")
    stream.reset()
    np.testing.assert_allclose(stream.add("the"), first, atol=1e-6)
    with pytest.raises(InputError, match="empty word"):
        stream.add("  ")


def test_words_go_into_their_bins_and_empty_bins_stay_zero(llama):
    words = [Word("Hello", 0.1, 0.3), Word("there", 0.4, 0.2), Word("friend.", 3.0, 1.2)]
    feats = llama.extract(words, n_bins=10)
    vec = llama.word_vectors(words)
    assert feats.shape == (*DEMO_SHAPE, 10)
    np.testing.assert_allclose(feats[..., 0], vec[0], atol=1e-6)  # round(0.2) = 0
    np.testing.assert_allclose(feats[..., 1], vec[1], atol=1e-6)  # round(0.8) = 1
    np.testing.assert_allclose(feats[..., 6], vec[2], atol=1e-6)  # 6 .. 6+round(2.4)
    np.testing.assert_allclose(feats[..., 7], vec[2], atol=1e-6)
    assert not feats[..., [2, 3, 4, 5, 8, 9]].any()  # bins without words: exactly zero
    assert not llama.extract([], n_bins=4).any()


def test_qwen3_mini_style_model(tmp_path):
    """Qwen3 (q/k norms) loads through the same AutoModel path and gives L = 1 (mini variant)."""
    demo = demo_extractors_path().text
    for f in demo.iterdir():
        if f.name.startswith(("tokenizer", "special")):
            shutil.copy(f, tmp_path / f.name)
    torch.manual_seed(5)
    cfg = Qwen3Config(
        vocab_size=512,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=2048,
    )
    Qwen3Model(cfg).eval().save_pretrained(tmp_path)
    mini = TextExtractor.from_pretrained(tmp_path, ExtractorConfig.mini().text, device="cpu")
    assert mini.shape == (1, 32) and mini.groups == [[2]]
    assert rel_err(mini.word_vectors(STORY[:15]), mini.reference_vectors(STORY[:15])) < 1e-3


def test_prime_then_add_equals_adding_every_word(llama):
    one_by_one = llama.live()
    last = [one_by_one.add(w) for w in STORY[:12]][-1]
    primed = llama.live()
    primed.prime(STORY[:11])
    np.testing.assert_allclose(primed.add(STORY[11]), last, atol=1e-5)
    assert primed.counters["recomputes"] == 0 and primed.counters["tokens_fed"] <= 4


def test_rebase_overflow_trades_exact_context_for_fewer_recomputes(llama):
    short = TextExtractor(
        llama.model, llama.tokenizer, replace(llama.settings, max_context_words=6)
    )
    exact, rebase = short.live("exact"), short.live("rebase")
    for w in STORY[:24]:
        exact.add(w)
        rebase.add(w)
    assert rebase.counters["recomputes"] <= 6 < exact.counters["recomputes"]
    assert rebase.counters["tokens_fed"] < exact.counters["tokens_fed"] / 2
    with pytest.raises(InputError, match="overflow"):
        short.live("drop")


def test_token_steps_over_the_whole_buffer_equal_the_full_forward(llama):
    """The static-shape path the GPU replays as a CUDA graph, run eagerly here."""
    stream = llama.live(token_steps=True)
    vecs = np.stack([stream.add(w) for w in STORY[:15]])
    assert rel_err(vecs, llama.reference_vectors(STORY[:15])) < 1e-3


def test_several_streams_words_in_one_forward_equal_each_streams_own(llama):
    """`add_many`: each stream's next word, the short feeds batched (one embedding call), a
    context re-run alone; every vector equal to the stream's own `add`."""
    from tribe_stream.extractors.text import add_many

    short = TextExtractor(
        llama.model, llama.tokenizer, replace(llama.settings, max_context_words=6)
    )
    texts = [STORY[:14], STORY[20:34], STORY[5:19]]
    alone = [short.live(token_steps=True) for _ in texts]
    own = [np.stack([lv.add(w) for w in t]) for lv, t in zip(alone, texts, strict=True)]
    calls: list[int] = []
    hook = short.model.embed_tokens.register_forward_hook(lambda *a: calls.append(1))
    lives = [short.live(token_steps=True) for _ in texts]
    got: list[list[np.ndarray]] = [[] for _ in texts]
    try:
        for k in range(14):
            before = len(calls)
            turn = [0, 1] if k % 3 == 1 else [0, 1, 2]  # the third sits out at times
            vecs = add_many([lives[i] for i in turn], [texts[i][k] for i in turn])
            for i, v in zip(turn, vecs, strict=True):
                got[i].append(v)
            if k < 5:  # before the window slides: one forward for the turn's streams
                assert len(calls) - before == 1
            if len(turn) == 2:
                got[2].append(lives[2].add(texts[2][k]))
    finally:
        hook.remove()
    for i in range(3):
        assert rel_err(np.stack(got[i]), own[i]) < 1e-5
    assert lives[0].counters == alone[0].counters  # recomputes past 6 words included
    assert lives[0].counters["recomputes"] > 0
    with pytest.raises(ValueError, match="one word per live text"):
        add_many([lives[0], lives[0]], ["a", "b"])
