"""Several streams in one server: each gets what it gets alone, seq contiguous per stream on one
publisher, and a stream whose source dies leaves the others whole."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
from conftest import collecting, run_cli

from tribe_stream import N_VERTICES
from tribe_stream.clock import StreamClock
from tribe_stream.engines import make_engine
from tribe_stream.errors import SourceError
from tribe_stream.models import load_brain_model
from tribe_stream.stream.pipeline import Extractors, Pipeline, PipelineConfig
from tribe_stream.stream.serve import Server

SECONDS = 4
# Batching several streams changes only the order of fp32 sums inside the matrix products
# (the kernels block by the number of rows): a few ulp of the values, far below this.
RTOL, ATOL = 1e-5, 1e-5


@pytest.fixture(scope="module")
def models():
    from tribe_stream.extractors.demo import load_demo_extractors

    loaded = load_brain_model("demo")
    ex = load_demo_extractors(modalities=("audio", "video"))
    return loaded, make_engine("torch", loaded), Extractors(video=ex["video"], audio=ex["audio"])


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from tribe_stream.sources.clip import make_clip

    return make_clip(tmp_path_factory.mktemp("serve") / "clip.mp4", SECONDS, width=96, height=64)


def _url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _pipeline(clip, models, clock, i=0, sinks=(), wrap=None):
    from tribe_stream.sources.replay import FileReplay

    _, engine, ex = models
    src = FileReplay(clip, clock=clock, realtime=False)
    return Pipeline(
        [wrap(src) if wrap else src],
        engine,
        ex if i == 0 else ex.for_stream(),
        sinks=list(sinks),
        config=PipelineConfig(live=False),
        clock=clock,
        stream_id=f"s{i}",
    )


@pytest.fixture(scope="module")
def alone(clip, models):
    pipe = _pipeline(clip, models, StreamClock())
    return pipe, Server([pipe]).run()


class DiesAfter:
    """A real file replay whose device goes away after `n` chunks (poll raises, as a camera
    unplugged mid-stream would). It never ends on its own: before, a fast replay could finish
    decoding while its last `n` chunks were still queued, and the stream ended normally (its
    last poll handed out the n-th chunk; no poll ever raised): `stream_failures` was 0."""

    def __init__(self, inner, n):
        self.inner, self.n, self.given = inner, n, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    @property
    def ended(self):
        return False  # a device that goes away fails; it does not reach an end of input

    def poll(self):
        if self.given >= self.n:
            raise SourceError("camera unplugged")
        out = self.inner.poll()[: self.n - self.given]
        self.given += len(out)
        return out


def _serve(clip, models, n, wrap_last=None, starts=None):
    """`n` streams on one publisher; with `starts`, each stream on its own clock from its own
    start (independent sources), else all on one clock."""
    from tribe_stream.publish import Publisher

    loaded = models[0]
    clock, url = StreamClock(), _url()
    clocks = [StreamClock() if starts else clock for _ in range(n)]
    pub = Publisher(url, stream_id="s0", model=loaded.identity, clock=clock)
    pipes = [
        _pipeline(
            clip, models, clocks[i], i, [pub if i == 0 else pub.channel(f"s{i}")],
            wrap=wrap_last if i == n - 1 else None,
        )
        for i in range(n)
    ]  # fmt: skip
    server = Server(pipes, clock=clock)
    expected = SECONDS * n if wrap_last is None else SECONDS * (n - 1)
    with collecting(url, expected, timeout=20.0) as (sub, got):
        assert pub.wait_for_subscribers(1, timeout=10.0)
        made = list(server.predictions(starts=starts))
        deadline = time.monotonic() + 10
        while len(got) < len(made) and time.monotonic() < deadline:
            time.sleep(0.02)
    pub.close()
    return server, pipes, made, got, sub


def test_three_streams_in_one_server_each_get_what_they_get_alone(clip, models, alone):
    ref_pipe, ref = alone
    assert [p.second for p in ref] == list(range(SECONDS))
    server, pipes, made, got, sub = _serve(clip, models, 3)
    # the work really was shared: clips of several streams per V-JEPA2 forward, several
    # streams' seconds per brain-model call, audio passes of several streams per call
    c = server.counters
    assert c["engine_windows"] > c["engine_calls"] and c["audio_passes"] > c["audio_calls"]
    assert c["video_forwards"] < c["video_clips"]
    assert c["stream_failures"] == 0
    assert c["compiles_after_warmup"] == c["captures_after_warmup"] == 0
    assert 0 < c["work_s"]
    # the files ended: what the end-of-input flush predicted is marked (not live seconds)
    assert all(p.flushed_from is not None and p.flushed_from <= SECONDS for p in pipes)
    for pipe in pipes:
        preds = [p for sid, p in made if sid == pipe.stream_id]
        assert [p.second for p in preds] == list(range(SECONDS))  # same seconds
        for a, b in zip(preds, ref, strict=True):  # same windows
            assert (a.timings["window_start"], a.timings["window_end"]) == (
                b.timings["window_start"],
                b.timings["window_end"],
            )
        for m in ("video", "audio"):  # same features
            np.testing.assert_allclose(pipe.features(m), ref_pipe.features(m), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(
            np.stack([p.values for p in preds]),
            np.stack([p.values for p in ref]),
            rtol=RTOL,
            atol=ATOL,
        )
    # one publisher: every stream under its own id, seq contiguous per stream, nothing lost
    assert sub.gaps == 0
    by = {}
    for h, v in got:
        by.setdefault(h["stream_id"], []).append(h)
        assert v.shape == (N_VERTICES,)
    assert sorted(by) == ["s0", "s1", "s2"]
    for sid, hs in by.items():
        assert [h["seq"] for h in hs] == list(range(SECONDS)), sid
        assert [h["second"] for h in hs] == list(range(SECONDS)), sid


def test_a_stream_whose_source_dies_leaves_the_others_whole(clip, models, alone):
    """Here the streams start apart, each on its own clock (the bench's staggered starts): the
    earliest-deadline order across clocks still gives each what it gets alone."""
    _, ref = alone
    server, pipes, made, got, sub = _serve(
        clip, models, 3, wrap_last=lambda s: DiesAfter(s, 20), starts=[0.0, 0.15, 0.3]
    )
    t0 = [p.clock.t0_monotonic for p in pipes]
    assert t0[1] - t0[0] == pytest.approx(0.15) and t0[2] - t0[0] == pytest.approx(0.3)
    assert server.counters["stream_failures"] == 1
    dead = pipes[-1]
    assert dead.counters["stream_failed"] == 1 and dead.counters["predictions"] < SECONDS
    for pipe in pipes[:-1]:
        preds = [p for sid, p in made if sid == pipe.stream_id]
        assert [p.second for p in preds] == list(range(SECONDS))
        np.testing.assert_allclose(
            np.stack([p.values for p in preds]),
            np.stack([p.values for p in ref]),
            rtol=RTOL,
            atol=ATOL,
        )
    for sid in ("s0", "s1"):
        seqs = [h["seq"] for h, _ in got if h["stream_id"] == sid]
        assert seqs == list(range(SECONDS)), sid  # contiguous: nothing lost around the failure
    assert sub.gaps == 0


def test_serve_command_copies_one_file_into_streams(clip, tmp_path):
    out = tmp_path / "out"
    r = run_cli(
        "serve", "--checkpoint", "demo", "--file", str(clip), "--streams", "2", "--fast",
        "--no-text", "--publish", "none", "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "serving 2 streams" in r.stdout
    a, b = (np.load(out / f"tribe-stream-{i}.npy") for i in (0, 1))
    assert a.shape == b.shape == (SECONDS, N_VERTICES)
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)  # one file twice: one answer
    one = run_cli(
        "serve", "--checkpoint", "demo", "--file", str(clip), "--fast", "--no-text",
        "--publish", "none", "--out", str(out), "--stream-id", "lab",
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    assert np.load(out / "lab.npy").shape == (SECONDS, N_VERTICES)  # before: None.npy
    assert "None" not in one.stdout, one.stdout  # "second 3 of None", "None: 4 predictions"
    bad = run_cli("serve", "--checkpoint", "demo", "--streams", "3", "--camera", "x")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "exactly one --file" in bad.stderr
