"""The producer API (`tribe_stream.Stream`): a few lines give the live pipeline, its publishing
and recording; options are checked before any model loads."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
import torch
from conftest import collecting

from tribe_stream import N_VERTICES, Stream
from tribe_stream.errors import InputError
from tribe_stream.stream.serve import Server

CUDA = torch.cuda.is_available()


def free_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from tribe_stream.sources.clip import make_clip

    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", 4.0, width=96, height=64)


@pytest.fixture(scope="module")
def reference(clip):
    """The same clip through a pipeline assembled by hand, part by part."""
    from tribe_stream.clock import StreamClock
    from tribe_stream.engines import make_engine
    from tribe_stream.extractors.demo import load_demo_extractors
    from tribe_stream.models import load_brain_model
    from tribe_stream.sources.replay import FileReplay
    from tribe_stream.stream.pipeline import Extractors, Pipeline, PipelineConfig

    ex = load_demo_extractors(modalities=("audio", "video"))
    clock = StreamClock()
    pipe = Pipeline(
        [FileReplay(clip, clock=clock, realtime=False, max_size=292)],
        make_engine("torch", load_brain_model("demo")),
        Extractors(video=ex["video"], audio=ex["audio"]),
        config=PipelineConfig(live=False),
        clock=clock,
    )
    return np.stack([p.values for p in Server([pipe]).run()])


def test_from_file_yields_the_live_predictions(clip, reference):
    preds = list(Stream.from_file(clip, checkpoint="demo", realtime=False, text=False))
    assert [p.second for p in preds] == [0, 1, 2, 3]
    values = np.stack([p.values for p in preds])
    assert values.shape == (4, N_VERTICES)
    np.testing.assert_allclose(values, reference, atol=1e-5)


def test_publish_and_record_in_a_few_lines(clip, reference, tmp_path):
    from tribe_stream.recording import read_recording

    url = free_url()
    with collecting(url, 4) as (_, got):
        stream = Stream.from_file(clip, checkpoint="demo", realtime=False, text=False)
        stream.publish(url).record(tmp_path / "rec.h5")
        stream_values = []
        for pred in stream:
            if not stream_values:  # give the subscriber time to join before the rest
                assert stream.publisher.wait_for_subscribers(1, 10)
            stream_values.append(pred.values)
    assert len(stream_values) == 4
    rec = read_recording(tmp_path / "rec.h5", dtype="float32")
    assert list(rec.seconds) == [0, 1, 2, 3]
    np.testing.assert_array_equal(rec.values, np.stack(stream_values))  # recorded in float32
    np.testing.assert_allclose(rec.values, reference, atol=1e-5)
    assert rec.metadata["model"]["untrained"] is True
    assert len(got) >= 3  # the first may go out before the subscription is through
    np.testing.assert_allclose(got[-1][1], stream_values[-1], rtol=2e-3, atol=2e-3)  # float16 wire


def test_leaving_the_loop_early_closes_everything(clip):
    from tribe_stream.publish import Publisher

    url = free_url()
    stream = Stream.from_file(clip, checkpoint="demo", realtime=True, text=False).publish(url)
    for pred in stream:
        assert pred.second == 0
        break
    with Publisher(url):  # the port is free again: the stream's publisher is closed
        pass
    assert all(s.ended for s in stream.pipeline.sources)


def test_stop_from_another_thread_ends_the_stream(clip):
    stream = Stream.from_file(clip, checkpoint="demo", realtime=True, text=False)
    seen = []
    for pred in stream:
        seen.append(pred.second)
        if pred.second == 0:
            threading.Timer(0.1, stream.stop).start()
    assert seen and seen[-1] < 3 and stream.stopped


def test_clips_per_forward_is_a_live_option_and_changes_no_prediction(clip, reference):
    """`video_batch` (`--video-batch`) live: one clip a V-JEPA2 forward (a server's shortest
    turns), the same predictions; by default the CPU's two a forward."""
    counters, limits = {}, {}
    for batch in (1, None):
        stream = Stream.from_file(
            clip, checkpoint="demo", realtime=False, text=False, video_batch=batch
        )
        values = np.stack([p.values for p in stream])
        np.testing.assert_allclose(values, reference, atol=1e-5)
        counters[batch] = dict(stream.server.counters)
        limits[batch] = stream.pipelines[0].ex.video.max_batch
    assert limits == {1: 1, None: 2}
    assert counters[1]["video_forwards"] == counters[1]["video_clips"] > 2
    # how many clips a turn finds depends on how fast the file decodes (one at a time on a
    # loaded machine), so only the bound is checked
    assert counters[None]["video_forwards"] <= counters[None]["video_clips"]


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"video_batch": 0}, "video_batch"),
        ({"lag": 0.3}, "multiple of 0.5"),
        ({"lag": -1}, "multiple of 0.5"),
        ({"lag": float("nan")}, "multiple of 0.5"),
        ({"seconds": float("nan")}, "finite"),
        ({"seconds": float("inf")}, "finite"),
        ({"seconds": 0}, "above 0"),
        ({"seconds": -1}, "above 0"),
        ({"audio_context": 0.5}, "audio-context"),
        ({"engine": "trt"}, "unknown engine"),
        ({"dtype": "float8"}, "unknown model dtype"),
        ({"device": "cuda:0"} if not CUDA else {"device": "tpu"}, "device"),
        ({"device": "tpu"}, "unknown device"),
    ],
)
def test_bad_options_fail_before_any_model_loads(clip, kwargs, message):
    t = time.perf_counter()
    with pytest.raises(InputError, match=message):
        Stream.from_file(clip, checkpoint="demo", **kwargs)
    # nothing was loaded (models load only when the stream opens; the demo's take 10 s and
    # more here): a generous bound, since probing the clip alone took 1.25 s on a loaded machine
    assert time.perf_counter() - t < 8.0


@pytest.mark.parametrize(
    "url,message",
    [
        ("tcp://127.0.0.1:99999", "1 to 65535"),
        ("tcp://127.0.0.1:0", "1 to 65535"),
        ("tcp://127.0.0.1", "1 to 65535"),
        ("udp://127.0.0.1:5556", "tcp://HOST:PORT"),
        ("none", "tcp://HOST:PORT"),
    ],
)
def test_bad_endpoints_are_refused_before_anything_starts(clip, url, message):
    with pytest.raises(InputError, match=message):
        Stream.from_file(clip, checkpoint="demo").publish(url)


def test_bad_media_fails_before_any_model_loads(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        Stream.from_file(tmp_path / "missing.mp4")
    with pytest.raises(InputError, match="nothing to listen to"):
        Stream.from_devices()
    with pytest.raises(InputError, match="must end in .h5"):
        Stream.demo(seconds=2).record(tmp_path / "rec.txt")


def test_a_viewer_that_will_not_close_never_fails_the_run():
    """Before: a viewer slow to close after SIGTERM (a loaded machine) raised TimeoutExpired out
    of the stream's close, and `run --view` exited 1 after a successful stream."""
    import subprocess
    import sys

    from tribe_stream.stream.producer import _close_viewer

    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert stubborn.stdout.readline().strip() == "ready"  # SIGTERM is ignored from now on
        t = time.monotonic()
        _close_viewer(stubborn, linger=0.1, grace=0.5)  # returns, raising nothing
        assert stubborn.poll() == -9  # asked, then ended
        assert time.monotonic() - t < 60
    finally:
        if stubborn.poll() is None:
            stubborn.kill()
        stubborn.wait()
        stubborn.stdout.close()


def test_a_loop_left_mid_way_ends_its_streams_when_the_stream_closes(clip):
    """Ctrl-C between two predictions: the streams end (speech recogniser stopped) as the
    `with` block exits, not when the traceback's frames are collected, perhaps at exit, where a
    recogniser still running aborted the process."""
    stream = Stream.from_file(clip, checkpoint="demo", realtime=False, text=False)
    with stream.open() as running:
        loop = iter(running)
        next(loop)  # one prediction, then the caller leaves
        (pipe,) = stream.pipelines
        assert not pipe.retired
    assert pipe.retired and not stream.server.running and not stream.server.streams
    del loop
