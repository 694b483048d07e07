"""`--video-overlap`: a server turn queues its V-JEPA2 forward and goes on, a later turn collects
it (`Server.video_overlap`, `extractors.video.launch_clips`). Every stream gets the features and
predictions it gets when each turn waits for its forward, in order and contiguous."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import demo_models, replay_streams

from tribe_stream.extractors import video as video_module
from tribe_stream.options import LiveOptions
from tribe_stream.stream.serve import Server

SECONDS = 4
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def models():
    return demo_models("cpu", ("audio", "video"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from tribe_stream.sources.clip import make_clip

    return make_clip(tmp_path_factory.mktemp("overlap") / "clip.mp4", SECONDS, width=96, height=64)


def _serve(clip, models, n: int, overlap: bool) -> tuple[Server, list]:
    """n streams of the clip, replayed as fast as they decode, through one server."""
    pipes, clock = replay_streams(clip, models, n)
    server = Server(pipes, clock=clock)
    server.video_overlap = overlap
    return server, list(server.predictions())


class _Slow:
    """A forward that is not done for the first `polls` times it is asked (as a GPU's, still
    running, would say): the real `PendingClips` behind it."""

    def __init__(self, pending, polls: int, seen: list):
        self.pending, self.polls, self.seen = pending, polls, seen

    def ready(self) -> bool:
        self.polls -= 1
        self.seen.append(self.polls < 0)
        return self.polls < 0 and self.pending.ready()

    def result(self) -> list:
        return self.pending.result()


def _by_stream(made: list) -> dict[str, np.ndarray]:
    out: dict[str, list] = {}
    for sid, pred in made:
        out.setdefault(sid, []).append(pred)
    for sid, preds in out.items():
        assert [p.second for p in preds] == list(range(SECONDS)), f"{sid}: not contiguous"
    return {sid: np.stack([p.values for p in preds]) for sid, preds in out.items()}


def test_forwards_collected_turns_later_give_every_stream_its_own_predictions(
    clip, models, monkeypatch
):
    _, ref = _serve(clip, models, 3, overlap=False)
    seen: list[bool] = []
    launch = video_module.launch_clips
    monkeypatch.setattr(
        video_module, "launch_clips", lambda ex, sets, **kw: _Slow(launch(ex, sets, **kw), 3, seen)
    )
    server, made = _serve(clip, models, 3, overlap=True)
    assert seen.count(False) >= 3  # turns went on while a forward was in flight
    assert not server.video_in_flight  # every forward collected by the end
    assert server.counters["video_collected_later"] >= 1  # what a GPU run reports to show it
    assert _serve(clip, models, 1, overlap=False)[0].counters["video_collected_later"] == 0
    ours, theirs = _by_stream(made), _by_stream(ref)
    assert sorted(ours) == ["s0", "s1", "s2"]
    for sid in theirs:
        np.testing.assert_allclose(ours[sid], theirs[sid], rtol=1e-4, atol=1e-5)
    assert server.counters["video_clips"] == sum(p.counters["bins"] for p in server.done)


def test_a_forward_that_fails_late_counts_for_its_streams_and_the_next_go_on(
    clip, models, monkeypatch
):
    """A GPU error surfaces when the features are read back: the streams of that forward count
    it and their bins stay empty; later forwards and every second still go out."""
    launch = video_module.launch_clips
    calls = []

    def failing_once(ex, sets, **kw):
        pending = launch(ex, sets, **kw)
        calls.append(1)
        if len(calls) == 2:
            pending.batches = [(b, _Broken()) for b, _ in pending.batches]
        return pending

    monkeypatch.setattr(video_module, "launch_clips", failing_once)
    server, made = _serve(clip, models, 2, overlap=True)
    _by_stream(made)
    assert sum(p.counters["extractor_errors"] for p in server.done) >= 1
    assert len(calls) > 2


class _Broken:
    def cpu(self):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


def test_overlap_is_an_option_off_by_default():
    assert LiveOptions().validate().video_overlap is False
    assert Server().video_overlap is False


@cuda
def test_on_a_gpu_forwards_in_flight_give_the_waited_for_predictions(clip):
    """On a GPU the forwards run on the video model's own CUDA stream beside the loop's other
    work: the same predictions as waiting for each (to the GPU's rounding)."""
    gpu = demo_models("cuda", ("audio", "video"))
    _, ref = _serve(clip, gpu, 3, overlap=False)
    server, made = _serve(clip, gpu, 3, overlap=True)
    assert not server.video_in_flight
    ours, theirs = _by_stream(made), _by_stream(ref)
    for sid in theirs:
        np.testing.assert_allclose(
            ours[sid], theirs[sid], rtol=0, atol=1e-2 * np.abs(theirs[sid]).max()
        )
