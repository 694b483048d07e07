"""The server's text stage: every stream's new words in one text-model forward a turn
(`Server._text`, `add_many`), each stream's features and predictions equal to its words run
alone (`text_batch` off: one forward per word as it arrives)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import demo_models, replay_streams

from tribe_stream.errors import InputError
from tribe_stream.models import Extractors
from tribe_stream.options import LiveOptions
from tribe_stream.stream.pipeline import Pipeline, PipelineConfig
from tribe_stream.stream.serve import Server
from tribe_stream.types import Word

SECONDS = 3
STORY = "the quick brown fox jumps over the lazy dog and runs far into the green wood".split()


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def models():
    return demo_models("cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from tribe_stream.sources.clip import make_clip

    return make_clip(tmp_path_factory.mktemp("text") / "clip.mp4", SECONDS, width=96, height=64)


def _words(i: int) -> list[Word]:
    """Stream i's transcript: the story from word i, a word every 0.2 s."""
    return [Word(w, 0.2 * k, 0.15) for k, w in enumerate(STORY[i:] + STORY[:i])]


def _serve(clip, models, n: int, batch: bool) -> tuple[Server, list[Pipeline], list]:
    from tribe_stream.sources.words import WordSource

    late = SimpleNamespace(now=lambda: 1e9)  # every word handed over at the first poll
    pipes, clock = replay_streams(clip, models, n, lambda i: [WordSource(_words(i), late)])
    server = Server(pipes, clock=clock)
    server.text_batch = batch
    made = list(server.predictions())
    return server, pipes, made


def test_streams_words_in_one_forward_equal_each_streams_words_alone(clip, models):
    server, pipes, made = _serve(clip, models, 3, batch=True)
    c = server.counters
    assert c["text_words"] == 3 * len(STORY)  # every word through the text stage
    assert c["text_calls"] == len(STORY)  # a forward a round: the three streams' next words
    assert all(p.counters["extractor_errors"] == 0 and not p.pending_words for p in pipes)
    ref_server, ref_pipes, ref = _serve(clip, models, 3, batch=False)
    assert ref_server.counters["text_calls"] == 0  # off: each word alone, as it arrives
    for pipe, ref_pipe in zip(pipes, ref_pipes, strict=True):
        assert [w.text for w in pipe.words] == [w.text for w in ref_pipe.words]
        np.testing.assert_allclose(
            pipe.features("text"), ref_pipe.features("text"), rtol=1e-4, atol=1e-5
        )
        ours = np.stack([p.values for sid, p in made if sid == pipe.stream_id])
        theirs = np.stack([p.values for sid, p in ref if sid == pipe.stream_id])
        assert ours.shape == (SECONDS, theirs.shape[1])
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
    # the streams' texts differ, so a batch that mixed up its rows would show here
    assert not np.allclose(pipes[0].features("text"), pipes[1].features("text"))


@cuda
def test_on_a_gpu_batched_words_give_each_stream_near_its_own(clip):
    """Batched on a GPU: each stream's text features equal its words alone to the text
    model's rounding there (rows of one product instead of one row each)."""
    gpu = demo_models("cuda")
    server, pipes, _ = _serve(clip, gpu, 3, batch=True)
    assert 0 < server.counters["text_calls"] < server.counters["text_words"] == 3 * len(STORY)
    _, ref_pipes, _ = _serve(clip, gpu, 3, batch=False)
    for pipe, ref_pipe in zip(pipes, ref_pipes, strict=True):
        ours, theirs = pipe.features("text"), ref_pipe.features("text")
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-2 * np.abs(theirs).max())


def test_words_are_batched_only_when_asked(models):
    engine, ex = models
    p = Pipeline([], engine, ex.for_stream(), config=PipelineConfig(live=False))
    server = Server([p])
    assert server.text_batch is False and server._batching_words(p) is False
    server.text_batch = True
    assert server._batching_words(p) is True
    assert LiveOptions().validate().text_batch == "off"
    with pytest.raises(InputError, match="give on or off"):
        LiveOptions(text_batch="auto").validate()


def test_a_stream_that_stops_runs_the_words_no_turn_took(models):
    engine, ex = models
    p = Pipeline([], engine, ex.for_stream(), config=PipelineConfig(live=False))
    p.batch_words = True
    p._add_words(_words(0)[:4])
    assert len(p.pending_words) == 4 and p.counters["words"] == 0
    p.stop()
    assert p.counters["words"] == 4 and not p.pending_words


def test_a_serving_stream_makes_its_visitors_text_steps_before_they_come():
    """`serve --max-streams N`: N text decoders (KV cache, CUDA graphs on a GPU) made and warm
    in the pool at the start, so a visitor's stream takes one ready and holds nobody up."""
    from tribe_stream.models import Models
    from tribe_stream.options import StreamOptions
    from tribe_stream.stream.producer import Stream

    options = StreamOptions(checkpoint="demo", realtime=False)
    models = Models(options)
    ex = models.extractors(("text", "audio", "video"))
    ex["text"].release_idle()
    extractors = Extractors(video=ex["video"], audio=ex["audio"], text=ex["text"])
    stream = Stream([], options).use_models(models, extractors).serve(max_streams=3)
    with stream.open():
        assert ex["text"].idle_decoders == 3 and ex["text"].keep_idle >= 3
    ex["text"].release_idle()
