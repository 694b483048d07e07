"""The LSL bridge, read back through real LSL inlets (pylsl and MNE-LSL, loopback):
`tribe-stream lsl` as a process on a publisher's predictions, and a live demo stream's words and
events on the marker outlet."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest

from tribe_stream import N_VERTICES
from tribe_stream.clock import StreamClock
from tribe_stream.publish import Publisher
from tribe_stream.types import Prediction, Word
from tribe_stream.untrained import UNTRAINED_LABEL

try:
    import pylsl

    pylsl.local_clock()
    from mne_lsl.lsl import StreamInlet, resolve_streams
except Exception as exc:  # liblsl missing or unusable here
    pytest.skip(f"LSL cannot run here: {exc}", allow_module_level=True)

POOL = np.random.default_rng(2).standard_normal((4, N_VERTICES)).astype(np.float32)
WORDS = {0: [Word("hello", 0.25, 0.3)], 2: [Word("brain", 1.5, 0.4), Word("waves", 2.1, 0.3)]}


def pred(k: int) -> Prediction:
    counters = {"dropped_seconds": 2 if k >= 1 else 0, "engine_errors": 0}
    return Prediction(k, POOL[k % 4], (k, k + 1.0), k + 5.0, {"capture": k + 0.01}, counters,
                      words=WORDS.get(k, []))  # fmt: skip


def inlet(source_id: str) -> StreamInlet:
    found = resolve_streams(timeout=10, source_id=source_id)
    assert found, f"no LSL outlet {source_id!r}"
    inl = StreamInlet(found[0], max_buffered=60)
    inl.open_stream(timeout=10)
    return inl


def pull(inl: StreamInlet, n: int, timeout: float = 15.0) -> tuple[list, list[float]]:
    """At least `n` samples (all that came within `timeout`) and their LSL stamps."""
    samples, stamps = [], []
    deadline = time.monotonic() + timeout
    while len(samples) < n and time.monotonic() < deadline:
        data, ts = inl.pull_chunk(timeout=0.5)
        samples += list(data)
        stamps += list(ts)
    return samples, stamps


def child(node, *path: str) -> str:
    for name in path[:-1]:
        node = node.child(name)
    return node.child(path[-1]).first_child().value()


def test_lsl_bridge_channels_desc_values_clock_and_markers():
    source_id = f"test-{uuid.uuid4().hex[:8]}"
    clock = StreamClock()
    model = {"name": "demo", "source": "demo", "untrained": True}
    pub = Publisher("tcp://127.0.0.1:*", stream_id="cam0", model=model, clock=clock)
    other = pub.channel("cam9")  # another stream on the socket: not bridged
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "tribe_stream.cli", "lsl", pub.url),
            *("--source-id", source_id, "--outlet-name", "tribe-test", "--stream-id", "cam0"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert pub.wait_for_subscribers(1, timeout=20), proc.stderr.read()
        data, marks = inlet(source_id), inlet(f"{source_id}:markers")
        info, minfo = data.get_sinfo(timeout=10), marks.get_sinfo(timeout=10)
        time.sleep(0.3)
        for k in range(3):
            if k == 2:  # one that cannot be encoded: a gap in seq, and a publisher error
                pub.send(Prediction(9, np.zeros(3, np.float32), (9, 10.0), 14.0))
            pub.send(pred(k))
            other.send(pred(k + 1))
        samples, stamps = pull(data, 3)
        pub.close()  # its last heartbeat says the stream ended (and counts the error)
        markers, mstamps = pull(marks, 8)
        offset = pylsl.local_clock() - (time.time() - clock.t0_wall)  # LSL time of stream 0
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        pub.close()
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "pushed 3 samples" in stdout and "markers: 3 words, 5 events" in stdout, stdout

    # the data outlet as MNE-LSL sees it: labels, types, units, and the description
    assert (info.name, info.stype, info.n_channels, info.sfreq) == (
        "tribe-test",
        "fMRI",
        N_VERTICES,
        1,
    )
    names = info.get_channel_names()
    assert names[:2] == ["L_00000", "L_00001"] and names[10241] == "L_10241"
    assert names[10242] == "R_00000" and names[-1] == "R_10241" and len(set(names)) == N_VERTICES
    assert set(info.get_channel_types()) == {"BOLD"} and set(info.get_channel_units()) == {"a.u."}
    mne_info = info.get_channel_info()  # what StreamLSL builds its mne.Info from
    assert mne_info.ch_names == names and set(mne_info.get_channel_types()) == {"misc"}
    desc = info.desc
    ts = desc.child("tribe_stream")
    assert child(ts, "mesh") == "fsaverage5" and child(ts, "stream_id") == "cam0"
    assert child(ts, "hemisphere_order").startswith("left then right: channels 0-10241 left")
    assert float(child(ts, "hemodynamic_offset_s")) == 5.0
    assert "arbitrary units" in child(ts, "units")
    assert child(ts, "timestamps") == "start of the stimulus second"
    assert (child(ts, "model", "checkpoint"), child(ts, "model", "untrained")) == ("demo", "true")
    assert child(ts, "model", "note") == UNTRAINED_LABEL
    ch = desc.child("channels").child("channel")
    assert (child(ch, "hemisphere"), child(ch, "vertex")) == ("left", "0")

    assert len(samples) == 3
    for k, s in enumerate(samples):
        np.testing.assert_array_equal(s, POOL[k % 4].astype(np.float16).astype(np.float32))
    # each sample is stamped at the start of its stimulus second, on LSL's clock
    np.testing.assert_allclose(np.array(stamps) - offset, [0.0, 1.0, 2.0], atol=0.05)

    # the marker outlet: words at their onsets, the stream's events
    assert (minfo.name, minfo.stype, minfo.n_channels, minfo.sfreq) == (
        "tribe-test-markers", "Markers", 1, 0.0,
    )  # fmt: skip
    assert minfo.dtype == "string" and child(minfo.desc, "tribe_stream", "stream_id") == "cam0"
    got = dict(zip((m[0] for m in markers), mstamps, strict=True))
    assert list(got) == ["event/stream-start", "word/hello", "event/dropped_seconds/2",
                         "event/missed_predictions/1", "word/brain", "word/waves",
                         "event/publisher.errors/1", "event/stream-end"]  # fmt: skip
    for marker, t in (("event/stream-start", 0.0), ("word/hello", 0.25), ("word/brain", 1.5),
                      ("word/waves", 2.1)):  # fmt: skip
        assert got[marker] - offset == pytest.approx(t, abs=0.05), marker


def test_a_live_demo_streams_words_and_events_as_markers():
    """A live stream (demo weights, the demo clip, a few transcript words) through the bridge: the
    marker outlet carries its start, every transcript word at its onset, and its end."""
    from tribe_stream import Stream
    from tribe_stream.lsl import run_bridge
    from tribe_stream.options import StreamOptions
    from tribe_stream.stream.producer import Media

    sid = f"live-{uuid.uuid4().hex[:8]}"
    words = [Word("quokka", 0.2, 0.3), Word("zebra", 1.1, 0.4), Word("xylophone", 2.3, 0.3)]
    media = Media(demo_seconds=3, words=words)
    stream = Stream(media, StreamOptions(checkpoint="demo", realtime=True))
    stream.publish("tcp://127.0.0.1:*", stream_id=sid)
    stop, summary = threading.Event(), {}
    bridge = threading.Thread(
        target=lambda: summary.update(run_bridge(stream.publisher.url, stop=stop, linger_s=0.5))
    )
    with stream.open() as session:
        bridge.start()
        try:
            assert stream.publisher.wait_for_subscribers(1, timeout=20)
            marks = inlet(f"tribe-stream:{sid}:markers")
            info = marks.get_sinfo(timeout=10)
            preds = list(session)
        except BaseException:
            stop.set()
            raise
    markers, stamps = [], []  # the publisher closed: its last heartbeat ends the stream
    deadline = time.monotonic() + 15
    while "event/stream-end" not in markers and time.monotonic() < deadline:
        data, ts = marks.pull_chunk(timeout=0.5)
        markers += [m[0] for m in data]
        stamps += list(ts)
    stop.set()
    bridge.join(timeout=20)

    skipped = int(preds[-1].counters["dropped_seconds"])  # a very busy machine may skip some
    assert len(preds) + skipped == 3 and summary["pushed"] == len(preds)
    assert child(info.desc, "tribe_stream", "model", "untrained") == "true"
    said = [m for m in markers if m.startswith("word/")]
    assert markers[-1] == "event/stream-end" and markers.count("event/stream-start") == 1
    assert markers.index("event/stream-start") < markers.index(said[0]), markers
    ours = [m for m in said if m[5:] in {w.text for w in words}]  # the clip's speech's too
    assert ours == [f"word/{w.text}" for w in words]
    assert summary["words"] == len(said) == sum(len(p.words) for p in preds)
    start = stamps[markers.index("event/stream-start")]
    for w in words:  # stamped at the word's onset, stream time 0 being the stream's start
        t = stamps[markers.index(f"word/{w.text}")] - start
        assert t == pytest.approx(w.onset, abs=0.05), w


def test_region_outlet_description_and_refusal():
    """The `--topic roi` outlet's channels are the metadata's region names, its description the
    atlas; a stream without region means is refused in one line."""
    from tribe_stream.errors import InputError
    from tribe_stream.lsl import stream_info

    regions = {"atlas": "0123abcd", "name": "destrieux", "names": ["lh.A", "lh.B", "rh.A"],
               "units": "the mean over each region's vertices"}  # fmt: skip
    meta = {"stream_id": "cam2", "model": {"source": "/w/best.ckpt"}, "regions": regions}
    info = stream_info(meta, regions=True)
    assert (info.channel_count(), info.source_id()) == (3, "tribe-stream:cam2:roi")
    ch, rows = info.desc().child("channels").child("channel"), []
    while not ch.empty():
        rows.append(tuple(ch.child_value(k) for k in ("label", "hemisphere", "type", "unit")))
        ch = ch.next_sibling()
    assert rows == [("lh.A", "left", "BOLD", "a.u."), ("lh.B", "left", "BOLD", "a.u."),
                    ("rh.A", "right", "BOLD", "a.u.")]  # fmt: skip
    ts = info.desc().child("tribe_stream")
    assert (ts.child_value("atlas"), ts.child_value("atlas_id")) == ("destrieux", "0123abcd")
    assert "arbitrary units" in ts.child_value("units") and "each region" in ts.child_value("units")
    model = ts.child("model")
    assert (model.child_value("checkpoint"), model.child_value("untrained")) == (
        "/w/best.ckpt",
        "false",
    )
    assert model.child("note").empty()  # trained weights: no untrained label
    with pytest.raises(InputError, match="--roi"):
        stream_info({"stream_id": "cam2"}, regions=True)


def test_no_markers_leaves_the_marker_outlet_out():
    from tribe_stream.lsl import run_bridge

    source_id = f"test-{uuid.uuid4().hex[:8]}"
    stop, summary = threading.Event(), {}
    with Publisher("tcp://127.0.0.1:*", stream_id="cam3") as pub:
        kwargs = {"source_id": source_id, "labels": False}
        bridge = threading.Thread(target=lambda: summary.update(
            run_bridge(pub.url, stop=stop, markers=False, bridge_kwargs=kwargs, linger_s=0)
        ))  # fmt: skip
        bridge.start()
        try:
            assert pub.wait_for_subscribers(1, timeout=20)
            data = inlet(source_id)
            pub.send(pred(0))
            assert len(pull(data, 1)[0]) == 1
            assert not resolve_streams(timeout=1, source_id=f"{source_id}:markers")
        finally:
            stop.set()
            bridge.join(timeout=20)
    assert summary["pushed"] == 1 and summary["words"] == summary["events"] == 0


def test_the_bridge_makes_region_means_itself_with_an_atlas(tmp_path):
    """`lsl URL --annot LH RH --region ...` on a stream that publishes no `tribe.roi` topic: one
    channel per chosen region, each sample the mean of its vertices in the prediction."""
    from test_regions import write_annot

    from tribe_stream import N_VERTICES_HEMI
    from tribe_stream.regions import load_atlas

    lh, rh = tmp_path / "lh.t.annot", tmp_path / "rh.t.annot"
    write_annot(lh, N_VERTICES_HEMI, 6, 21)
    write_annot(rh, N_VERTICES_HEMI, 5, 22)
    atlas = load_atlas(lh, rh)
    chosen = atlas.select([atlas.names[1], atlas.names[-1]])
    source_id = f"test-{uuid.uuid4().hex[:8]}"
    with Publisher("tcp://127.0.0.1:*", stream_id="cam4") as pub:
        pub.set_metadata({"stream_id": "cam4"})
        cmd = [sys.executable, "-m", "tribe_stream.cli", "lsl", pub.url, "--annot", str(lh),
               str(rh), "--region", atlas.names[1], "--region", atlas.names[-1],
               "--source-id", source_id, "--no-markers", "--count", "2"]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert pub.wait_for_subscribers(1, timeout=60), proc.stderr.read()
            data = inlet(source_id)
            labels = data.get_sinfo().get_channel_names()
            assert labels == list(chosen.names)
            for k in range(2):
                pub.send(pred(k))
            samples, _ = pull(data, 2)
            sent = POOL[:2].astype(np.float16).astype(np.float32)  # the wire's float16
            np.testing.assert_allclose(np.array(samples), chosen.means(sent), rtol=1e-5, atol=1e-7)
            assert proc.wait(timeout=60) == 0, proc.stderr.read()
        finally:
            proc.kill()
    bad = subprocess.run([sys.executable, "-m", "tribe_stream.cli", "lsl", "tcp://127.0.0.1:9",
                          "--topic", "roi", "--annot", str(lh), str(rh)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "give one of the two" in bad.stderr
