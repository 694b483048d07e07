"""`--video-clips 1`: one V-JEPA2 clip for both bins of a second (half the video work, more live
streams per GPU), its features those of the official rate's clip at the later bin's end."""

from __future__ import annotations

import numpy as np
import pytest

from tribe_stream.clock import StreamClock
from tribe_stream.engines import make_engine
from tribe_stream.errors import InputError
from tribe_stream.models import Extractors, load_brain_model
from tribe_stream.options import LiveOptions
from tribe_stream.stream.pipeline import Pipeline, PipelineConfig
from tribe_stream.stream.serve import Server

SECONDS = 4


@pytest.fixture(scope="module")
def models():
    from tribe_stream.extractors.demo import load_demo_extractors

    ex = load_demo_extractors(device="cpu", modalities=("audio", "video"))
    engine = make_engine("torch", load_brain_model("demo"), device="cpu")
    return engine, Extractors(video=ex["video"], audio=ex["audio"])


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from tribe_stream.sources.clip import make_clip

    return make_clip(tmp_path_factory.mktemp("v") / "clip.mp4", SECONDS, width=96, height=64)


def _run(clip, models, per_second: int) -> tuple[Server, Pipeline, np.ndarray]:
    from tribe_stream.sources.replay import FileReplay

    engine, ex = models
    clock = StreamClock()
    config = PipelineConfig(live=False, video_clips_per_second=per_second)
    p = Pipeline([FileReplay(clip, clock=clock, realtime=False)], engine, ex.for_stream(),
                 config=config, clock=clock, stream_id="s")  # fmt: skip
    server = Server([p], clock=clock)
    made = np.stack([pred.values for _, pred in server.predictions()])
    return server, p, made


def test_one_clip_a_second_halves_the_clips_and_keeps_the_later_bins_features(clip, models):
    full_server, full, full_made = _run(clip, models, 2)
    half_server, half, half_made = _run(clip, models, 1)
    bins = 2 * SECONDS
    assert full_server.counters["video_clips"] == bins
    assert half_server.counters["video_clips"] == bins // 2
    ours, official = half.features("video"), full.features("video")
    assert ours.shape == official.shape and ours.shape[-1] == bins
    # each second's two bins share the clip that ends at the later one's end
    np.testing.assert_array_equal(ours[..., 0::2], ours[..., 1::2])
    np.testing.assert_allclose(ours[..., 1::2], official[..., 1::2], rtol=1e-5, atol=1e-6)
    assert not np.allclose(ours[..., 0::2], official[..., 0::2])  # the even bins: not official
    assert half_made.shape == full_made.shape == (SECONDS, full_made.shape[1])
    assert np.isfinite(half_made).all() and not np.allclose(half_made, full_made)
    assert half.counters["extractor_errors"] == 0 and half.counters["empty_video_bins"] == 0


def test_an_even_bin_waits_for_its_partner_and_goes_alone_without_one(models):
    engine, ex = models
    p = Pipeline([], engine, ex.for_stream(), config=PipelineConfig(video_clips_per_second=1))
    assert p._video_groups([0], 0, None) == []  # bin 0 waits for bin 1
    assert p._video_groups([1, 2, 3], 3, None) == [[0, 1], [2, 3]]
    assert p._video_groups([4], 4, None) == []
    assert p._video_groups([], 5, None) == [[4]]  # bin 5 closed without frames: bin 4 alone
    assert p._video_groups([6], 6, None) == []
    assert p._video_groups([], 6, 8) == [[6]]  # the stream ended with bin 6 waiting
    assert p._video_groups([8], 8, 9) == [[8]]  # the last bin never waits
    p.config = PipelineConfig()
    assert p._video_groups([0, 1, 2], 2, None) == [[0, 1], [2]]  # the official rate: pairs


def test_the_option_takes_one_or_two():
    assert LiveOptions().validate().video_clips == 2
    assert LiveOptions(video_clips=1).validate().video_clips == 1
    with pytest.raises(InputError, match="give 2"):
        LiveOptions(video_clips=4).validate()


def test_a_stream_at_one_clip_a_second_says_so_in_its_notes_and_recording(clip, tmp_path):
    from tribe_stream import Stream
    from tribe_stream.recording import read_recording

    stream = Stream.from_file(clip, checkpoint="demo", realtime=False, text=False, video_clips=1)
    stream.record(tmp_path / "rec.h5")
    assert len(list(stream)) == SECONDS
    assert any("--video-clips 1" in n for n in stream.notes)
    rec = read_recording(tmp_path / "rec.h5", dtype="float32")
    assert rec.metadata["model"]["video_clips_per_second"] == 1
