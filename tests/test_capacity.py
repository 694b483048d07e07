"""A serving stream without `max_streams` takes what its warm-up measured fits
(`tribe_stream/stream/capacity.py`): a probe stream on its own models, in real time."""

from __future__ import annotations

import os
import threading

import pytest
import torch

from tribe_stream import Stream
from tribe_stream.options import StreamOptions
from tribe_stream.stream.capacity import CPU_LOAD, LOAD, MAX_STREAMS, Capacity, fits
from tribe_stream.stream.producer import Media


def test_the_streams_that_fit_in_the_load_and_the_memory_left():
    assert LOAD == 0.7 and fits(0.1) == 7  # 7 streams of 100 ms a second in 0.7 of one
    assert fits(0.069) == 10 and fits(0.071) == 9
    assert fits(5.0) == 1  # one stream always, even one that cannot keep up alone
    assert fits(1e-9) == MAX_STREAMS
    assert CPU_LOAD == 0.6 and fits(0.1, cpu_s=0.26, cores=2) == 4  # the cores bind: 1.2 of 2
    assert fits(0.1, cpu_s=0.3, cores=2) == 4 and fits(0.1, cpu_s=0.31, cores=2) == 3
    assert fits(0.1, cpu_s=0.35, cores=16) == 7  # the loop does
    gib = 2**30
    assert fits(0.01, stream_bytes=gib, free_bytes=int(3.5 * gib)) == 3  # memory binds first
    assert fits(0.1, stream_bytes=gib, free_bytes=40 * gib) == 7  # the time does
    line = Capacity(0.0812, 0.2, 16, gib, 30 * gib, 8).line()
    assert line.startswith("at most 8 streams at once: one took 81 ms of the loop and 200 ms of")
    assert "CPU (16 cores) a second" in line and "1.00 GiB of GPU memory (free 30.0)" in line
    assert Capacity(0.1, 1.5, 2, None, None, 1).line().startswith("at most 1 stream at once:")


@pytest.mark.parametrize("text", [True, False])
def test_a_serving_stream_without_a_limit_measures_what_fits(tmp_path, monkeypatch, text):
    """Demo weights on this CPU: the probe's cost is real loop time (intake, text, video, audio,
    brain model), the limit follows it, the notes say it, and the probe leaves nothing behind."""
    monkeypatch.setenv("TRIBE_STREAM_CACHE", str(tmp_path / "cache"))
    before = {t.name for t in threading.enumerate()}
    stream = Stream([], StreamOptions(checkpoint="demo", text=text)).serve()
    with stream.open() as session:
        cap = stream.capacity
        assert 0.002 < cap.cost_s < 2.0, cap  # a stream's work a second on the demo models
        if torch.cuda.is_available():  # the demo stream runs on the GPU: its memory counts
            assert cap.stream_bytes > 0 and cap.free_bytes > 10 * cap.stream_bytes, cap
        else:  # a CPU: time alone
            assert cap.stream_bytes is None and cap.free_bytes is None
        assert 0.0 < cap.cpu_s < 2.0 * cap.cores and cap.cores == len(os.sched_getaffinity(0))
        assert stream.server.max_streams == cap.streams and cap.runs == 2  # warm, counted
        assert cap.streams == fits(
            cap.cost_s, cap.cpu_s, cap.cores, cap.stream_bytes, cap.free_bytes
        )
        assert cap.line() in stream.notes
        assert stream.server.ids() == []  # the probe is not one of the server's streams
        assert stream.server.counters["turns"] == 0  # nor its work in the server's counters
        stream.stop()
        assert list(session) == []
    clips = list((tmp_path / "cache" / "probe").glob("*.mp4"))
    assert len(clips) == 1 and clips[0].stat().st_size > 0  # made once, in the cache
    left = {t.name for t in threading.enumerate()} - before
    assert not [n for n in left if "capacity-probe" in n or n.startswith("tribe-")], left


def test_a_given_limit_runs_no_probe(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIBE_STREAM_CACHE", str(tmp_path / "cache"))
    stream = Stream([], StreamOptions(checkpoint="demo", text=False)).serve(3)
    with stream.open() as session:
        assert stream.capacity is None and stream.server.max_streams == 3
        assert not any(n.startswith("at most") for n in stream.notes)
        stream.stop()
        assert list(session) == []
    assert not (tmp_path / "cache" / "probe").exists()


def test_a_probe_that_fails_leaves_the_server_serving_without_a_limit(tmp_path, monkeypatch):
    """A cache it cannot write (here its probe folder is a file): said in the notes; serving
    goes on, as before there was a default."""
    monkeypatch.setenv("TRIBE_STREAM_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "probe").write_text("not a folder")
    stream = Stream([], StreamOptions(checkpoint="demo", text=False)).serve()
    with stream.open() as session:
        assert stream.capacity is None and stream.server.max_streams is None
        assert any(
            n.startswith("no stream limit: measuring what fits failed") for n in stream.notes
        )
        stream.stop()
        assert list(session) == []


def test_the_second_probe_run_counts_and_one_that_compiled_is_run_again(tmp_path, monkeypatch):
    """The first probe run warms; the second counts, unless a graph compiled while it ran (here
    by its sink, as a shape the warm-up missed would: seconds of compiling inside a live
    second): then a third is made and counts."""
    from tribe_stream.models import Models
    from tribe_stream.stream import capacity
    from tribe_stream.types import Sink

    monkeypatch.setenv("TRIBE_STREAM_CACHE", str(tmp_path / "cache"))
    options = StreamOptions(checkpoint="demo", text=False)
    models = Models(options)
    extractors = models.live(("video", "audio"), False, [])
    made = []

    class CompilesOnce(Sink):
        def send(self, prediction) -> None:
            if len(made) == 2 and not getattr(self, "done", False):
                self.done = True
                torch.compile(lambda x: x * 3 + 1, backend="eager")(torch.ones(5))  # counted

    def make():
        probe = capacity.probe(extractors, options, models, Stream, Media).add_sink(CompilesOnce())
        made.append(probe)
        return probe

    cap = capacity.measure(make, "cpu")
    assert len(made) == 3 and cap.runs == 3  # the second run compiled: a third was made
    counters = [p.server.counters for p in made]
    assert [c["compiles_after_warmup"] + c["captures_after_warmup"] for c in counters] == [0, 1, 0]
    costs = [(c["intake_s"] + c["text_s"] + c["work_s"]) / capacity.PROBE_SECONDS for c in counters]
    assert cap.cost_s == costs[2] and cap.streams == fits(cap.cost_s, cap.cpu_s, cap.cores)


def test_a_stop_while_the_probe_runs_ends_it_at_its_next_second(tmp_path, monkeypatch):
    """The serving stream stopped (a Ctrl-C while it starts) during the first probe run: that run
    ends at its next second, no other is made, and there is no measure."""
    from tribe_stream.models import Models
    from tribe_stream.stream import capacity
    from tribe_stream.types import Sink

    monkeypatch.setenv("TRIBE_STREAM_CACHE", str(tmp_path / "cache"))
    options = StreamOptions(checkpoint="demo", text=False)
    models = Models(options)
    extractors = models.live(("video", "audio"), False, [])
    stop, made, seconds = threading.Event(), [], []

    class StopsAtTheFirstSecond(Sink):
        def send(self, prediction) -> None:
            seconds.append(prediction.second)
            stop.set()

    def make():
        probe = capacity.probe(extractors, options, models, Stream, Media)
        made.append(probe.add_sink(StopsAtTheFirstSecond()))
        return probe

    assert capacity.measure(make, "cpu", stop) is None
    assert len(made) == 1 and 1 <= len(seconds) < capacity.PROBE_SECONDS, seconds
