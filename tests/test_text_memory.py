"""Live text memory across streams (issue 34): an ended stream's KV cache and CUDA graphs go back
to the extractor's pool or are freed, a reused decoder gives a fresh one's vectors; on a GPU the
memory stays flat over rounds of streams."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch

from tribe_stream.extractors.demo import demo_config, demo_extractors_path
from tribe_stream.extractors.text import TextExtractor
from tribe_stream.models import Extractors
from tribe_stream.stream.pipeline import Pipeline
from tribe_stream.stream.serve import Server
from tribe_stream.types import Word

STORY = (
    "the quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore! "
    "Hello, how are you today? I am fine, thank you. What time is it? It is late."
).split()
OTHER = "Rain fell on the old roof all night. Nobody slept".split()

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def llama() -> TextExtractor:
    return TextExtractor.from_pretrained(
        demo_extractors_path().text, demo_config().text, device="cpu"
    )


def sibling(ex: TextExtractor, keep_idle: int) -> TextExtractor:
    """Another extractor on the same model, with a pool of its own."""
    out = TextExtractor(ex.model, ex.tokenizer, ex.settings, device=str(ex.device))
    out.keep_idle = keep_idle
    return out


def serve(pipes: list[Pipeline], batch: bool = False) -> Server:
    """Run the streams to their end through a server, until each has been released."""
    server = Server(pipes)
    server.text_batch = batch
    list(server.predictions())
    if hasattr(server, "released"):  # streams released in threads of their own
        assert server.released(timeout=60.0)
    return server


def words(n: int, offset: float = 0.0) -> list[Word]:
    return [Word(w, offset + 0.4 * i, 0.3) for i, w in enumerate(STORY[:n])]


@pytest.mark.parametrize("token_steps", [False, True])
def test_a_reused_decoder_gives_a_fresh_ones_vectors(llama, token_steps):
    ex = sibling(llama, keep_idle=2)
    first = ex.live(token_steps=token_steps)
    for w in STORY:  # a long context, so stale cache rows lie past the next one's
        first.add(w)
    used = first.decoder
    first.close()
    first.close()  # idempotent
    assert ex.idle_decoders == 1 and first.decoder is None
    with pytest.raises(RuntimeError, match="closed"):
        first.add("more")
    reused, fresh = ex.live(token_steps=token_steps), ex.live(token_steps=token_steps)
    assert reused.decoder is used and fresh.decoder is not used
    assert reused.decoder.length == 0
    a = np.stack([reused.add(w) for w in OTHER])
    b = np.stack([fresh.add(w) for w in OTHER])
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert reused.counters == fresh.counters  # its own counters, from zero


def test_the_pool_keeps_at_most_keep_idle_and_frees_the_rest(llama):
    ex = sibling(llama, keep_idle=2)
    lives = [ex.live() for _ in range(3)]
    decs = [lv.decoder for lv in lives]
    for lv in lives:
        lv.add("hello")
        lv.close()
    assert ex.idle_decoders == 2
    assert decs[2].keys.numel() == 0 and decs[2].max_tokens == 0  # freed at once
    assert ex.release_idle() == 2 and ex.idle_decoders == 0
    assert all(d.keys.numel() == 0 and d.values.numel() == 0 for d in decs)
    with ex.live() as lv:  # a new one after the pool emptied: works, goes back on leaving
        lv.add("again")
    assert ex.idle_decoders == 1


def test_prefill_makes_the_pool_ready_for_a_servers_streams(llama):
    ex = sibling(llama, keep_idle=1)
    with ex.live():
        pass
    assert ex.prefill(3) == 0  # no CUDA graphs off the GPU: nothing to capture
    assert ex.idle_decoders == 3 and ex.keep_idle == 3
    lives = [ex.live() for _ in range(3)]
    assert len({id(lv.decoder) for lv in lives}) == 3 and ex.idle_decoders == 0


def test_offline_word_vectors_reuse_one_decoder(llama):
    ex = sibling(llama, keep_idle=4)
    ex.word_vectors(STORY[:5])
    ex.word_vectors(STORY[:5])
    assert ex.idle_decoders == 1


def test_an_ended_stream_leaves_no_text_memory_behind(llama):
    """Through the server's own end of a stream: with no pool the decoder dies at once (no gc
    run); with a pool the next stream gets it, and the ended stream keeps no reference."""
    ex = sibling(llama, keep_idle=0)
    pipe = Pipeline([], None, Extractors(text=ex))  # no sources: it ends at once
    pipe.warm_up()
    assert pipe.live_text.context == ""  # the warm-up word is forgotten
    pipe._add_words(words(6))
    dec = weakref.ref(pipe.live_text.decoder)
    keys = weakref.ref(pipe.live_text.decoder.keys)
    serve([pipe])
    assert pipe.counters["words"] == 6 and pipe.counters["extractor_errors"] == 0
    assert dec() is None and keys() is None  # freed at once, no gc run
    live = weakref.ref(pipe.live_text)
    del pipe
    gc.collect()
    assert live() is None

    ex.keep_idle = 1
    pipe = Pipeline([], None, Extractors(text=ex))
    pipe._add_words(words(6))
    held = pipe.live_text.decoder
    serve([pipe])
    assert pipe.live_text.decoder is None and ex.idle_decoders == 1
    nxt = Pipeline([], None, Extractors(text=ex))
    assert nxt.live_text.decoder is held and ex.idle_decoders == 0


def test_a_live_streams_words_stay_on_the_device_and_equal_the_arrays(llama):
    """What a live stream's ring takes (`on_device`: never waited for), alone or batched, is
    what the arrays say."""
    from tribe_stream.extractors.text import add_many

    ex = sibling(llama, keep_idle=4)
    with ex.live() as a, ex.live() as b, ex.live() as c, ex.live() as d:
        for w in STORY[:6]:
            x, y = a.add(w), b.add(w, on_device=True)
            assert isinstance(y, torch.Tensor) and y.device == torch.device(ex.device)
            np.testing.assert_allclose(y.numpy(), x, rtol=0, atol=1e-6)
        arrays = add_many([a, c], ["more", "words"])
        tensors = add_many([b, d], ["more", "words"], on_device=True)
        for x, y in zip(arrays, tensors, strict=True):
            np.testing.assert_allclose(y.numpy(), x, rtol=0, atol=1e-6)


# ----- on a GPU (the coordinator runs these on a lent H100) -----


@pytest.fixture(scope="module")
def gpu_text() -> TextExtractor:
    return TextExtractor.from_pretrained(
        demo_extractors_path().text, demo_config().text, device="cuda", compile=True
    )


def _allocated() -> int:
    torch.cuda.synchronize()
    return torch.cuda.memory_allocated()


@cuda
@pytest.mark.parametrize("batch", [False, True])
def test_gpu_memory_stays_flat_over_rounds_of_streams(gpu_text, batch):
    """Rounds of two streams (warm-up with CUDA graphs, words (batched by the server's text
    stage, or each alone), end) after `prefill(2)`: no stream captures a graph, after the first
    round no memory is added; releasing the pool gives the decoders' memory back."""
    from tribe_stream.extractors.accel import compile_events

    ex = sibling(gpu_text, keep_idle=8)
    ex.compile = True
    base = _allocated()
    assert ex.prefill(2) > 0
    made = compile_events()["graph_captures"]
    after: list[int] = []
    captures: list[int] = []
    for _ in range(4):
        pipes = [Pipeline([], None, Extractors(text=ex)) for _ in range(2)]
        for p in pipes:
            p.warm_up()
            p.batch_words = batch
            p._add_words(words(12))
        server = serve(pipes, batch)
        assert all(p.counters["words"] == 12 for p in pipes)
        assert server.counters["text_words"] == (24 if batch else 0)
        del pipes, server
        after.append(_allocated())
        captures.append(compile_events()["graph_captures"])
    assert ex.idle_decoders == 2 and after[0] > base
    assert after[-1] - after[0] <= 2**20, f"allocated after each round: {after}"
    assert captures == [made] * 4, "a stream captured steps the prefill had made"
    cache = sum(d.keys.nbytes + d.values.nbytes for d in ex._idle)
    ex.release_idle()
    assert _allocated() <= after[-1] - cache


@cuda
def test_gpu_reused_decoder_graphs_equal_a_fresh_decoders(gpu_text):
    ex = sibling(gpu_text, keep_idle=2)
    ex.compile = True
    with ex.live() as first:
        first.warm()
        for w in STORY:
            first.add(w)
    reused, fresh = ex.live(), ex.live()
    assert reused.warm() == 0 and fresh.warm() > 0  # the pooled one's graphs are made
    a = np.stack([reused.add(w) for w in OTHER])
    b = np.stack([fresh.add(w) for w in OTHER])
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    reused.close()
    fresh.close()


@cuda
def test_gpu_batched_words_equal_each_streams_graph_steps(gpu_text):
    from tribe_stream.extractors.text import add_many

    ex = sibling(gpu_text, keep_idle=8)
    ex.compile = True
    texts = [STORY[:10], STORY[10:20], (OTHER + STORY)[:10]]  # ten words each
    with ex.live() as a, ex.live() as b, ex.live() as c:
        own = [np.stack([lv.add(w) for w in t]) for lv, t in zip((a, b, c), texts, strict=True)]
    lives = [ex.live() for _ in texts]
    got = np.stack([add_many(lives, [t[k] for t in texts]) for k in range(10)], axis=1)
    for i in range(3):
        np.testing.assert_allclose(got[i], own[i], rtol=0, atol=2e-2 * np.abs(own[i]).max())
    for lv in lives:
        lv.close()


def test_a_step_outside_inference_mode_leaves_no_cache_behind(llama):
    """The root of issue 34's leak: a decoder step with autograd on (the CUDA graphs' capture
    in `LiveText.warm`) made the KV cache a node of an autograd cycle that no gc collects."""
    ex = sibling(llama, keep_idle=0)
    with ex.live() as live:
        dec = live.decoder
        ids, pos, w = torch.zeros((1, 2), dtype=torch.long), torch.arange(2), torch.ones(2) / 2
        with torch.enable_grad():
            out = dec(ids, pos, w, 256)
            dec(ids, pos + 2, w, 256)  # the second step reads what the first wrote
        assert not dec.keys.requires_grad and out.grad_fn is None
        keys = weakref.ref(dec.keys)
        del dec, out
    gc.collect()
    assert keys() is None
