"""Region means live: `--roi LH RH` adds the `tribe.roi` topic (one message per prediction, the
same second, the full map's region means), the Subscriber yields them, and `tribe-stream lsl
--roi` makes an LSL outlet with one named channel per region."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest
from conftest import run_cli
from test_regions import write_annot

from tribe_stream import N_VERTICES, N_VERTICES_HEMI
from tribe_stream.errors import InputError
from tribe_stream.protocol import MessageRejected, decode, encode_roi
from tribe_stream.publish import Publisher
from tribe_stream.regions import load_atlas
from tribe_stream.types import Prediction


@pytest.fixture()
def annots(tmp_path):
    lh, rh = tmp_path / "lh.t.annot", tmp_path / "rh.t.annot"
    write_annot(lh, N_VERTICES_HEMI, 5, 10)
    write_annot(rh, N_VERTICES_HEMI, 4, 11)
    return lh, rh


def free_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def test_roi_messages_are_validated_like_every_other():
    p = Prediction(3, np.zeros(N_VERTICES, np.float32), (3.0, 4.0), 8.0)
    frames = encode_roi(np.arange(7, dtype=np.float32), p, atlas="a1", stream_id="s",
                        session="x", seq=0, publish_wall=1.0, prediction_seq=3)  # fmt: skip
    msg = decode(frames)
    assert (
        msg.topic == "roi" and msg.header["second"] == 3 and msg.values.tolist() == list(range(7))
    )
    with pytest.raises(MessageRejected, match="payload-size"):
        decode([frames[0], frames[1], frames[2][:-4]])
    bad = frames[1].replace(b'"n_regions":7', b'"n_regions":0')
    with pytest.raises(MessageRejected, match="n_regions"):
        decode([frames[0], bad, b""])
    with pytest.raises(InputError):
        encode_roi(np.zeros((2, 2)), p, atlas="a", stream_id="s", session="x", seq=0,
                   publish_wall=1.0, prediction_seq=0)  # fmt: skip


def test_demo_with_roi_publishes_one_region_message_per_prediction(annots):
    from tribe_stream.client import Subscriber

    atlas = load_atlas(*annots)
    url = free_url()
    preds, rois = {}, {}
    with Subscriber(url, topics=("prediction", "roi")) as sub:

        def listen():
            deadline = time.monotonic() + 240
            while (len(preds) < 4 or len(rois) < 4) and time.monotonic() < deadline:
                msg = sub.recv(timeout=1)
                if msg is None:
                    continue
                target = preds if msg.topic == "prediction" else rois
                target[msg.header["second"]] = np.array(msg.values, np.float32)

        t = threading.Thread(target=listen, daemon=True)
        t.start()
        r = run_cli("demo", "--seconds", "4", "--publish", url, "--roi", *map(str, annots))
        t.join(30)
        meta = sub.metadata
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(rois) == sorted(preds) == [0, 1, 2, 3]
    assert meta["regions"]["names"] == list(atlas.names)
    for k, values in preds.items():  # the wire's float16 map against float32 means
        np.testing.assert_allclose(rois[k], atlas.means(values), rtol=2e-3, atol=2e-3)


def test_roi_options_fail_before_anything_loads(annots, tmp_path):
    r = run_cli("demo", "--publish", "none", "--roi", *map(str, annots))
    assert r.returncode == 2 and "needs --publish URL" in r.stderr
    r = run_cli(
        "demo", "--publish", free_url(), "--roi", str(annots[0]), str(tmp_path / "no.annot")
    )
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_lsl_bridge_names_one_channel_per_region(annots):
    pylsl = pytest.importorskip("pylsl")
    atlas = load_atlas(*annots)
    source_id = f"roi-{uuid.uuid4().hex[:8]}"
    values = np.random.default_rng(3).standard_normal((2, N_VERTICES)).astype(np.float32)
    with Publisher("tcp://127.0.0.1:*", stream_id="cam1", atlas=atlas) as pub:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tribe_stream.cli", "lsl", pub.url, "--topic", "roi",
             "--source-id", source_id, "--count", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
        )  # fmt: skip
        try:
            found = pylsl.resolve_byprop("source_id", source_id, timeout=20)
            assert found, proc.stderr.read() if proc.poll() is not None else "no outlet"
            inlet = pylsl.StreamInlet(found[0], max_buflen=60)
            info = inlet.info(timeout=10)
            inlet.open_stream(timeout=10)
            time.sleep(0.3)
            for k in range(2):
                pub.send(Prediction(k, values[k], (k, k + 1.0), k + 5.0))
            got = []
            deadline = time.monotonic() + 15
            while len(got) < 2 and time.monotonic() < deadline:
                sample, _ = inlet.pull_sample(timeout=1.0)
                if sample is not None:
                    got.append(np.asarray(sample, np.float32))
            out, err = proc.communicate(timeout=20)
        finally:
            proc.kill()
    assert proc.returncode == 0, err
    assert info.channel_count() == len(atlas.names)
    ch = info.desc().child("channels").child("channel")
    labels = []
    while not ch.empty():
        labels.append(ch.child_value("label"))
        ch = ch.next_sibling()
    assert labels == list(atlas.names)
    assert "mean over each region" in info.desc().child("tribe_stream").child_value("units")
    np.testing.assert_allclose(np.stack(got), atlas.means(values), rtol=1e-5, atol=1e-6)


def test_mne_lsl_stream_sees_one_named_channel_per_region(annots):
    """mne-lsl's `StreamLSL` (its own liblsl) reads the region outlet: the channel names are the
    atlas's regions, in order, and the samples are the region means."""
    pytest.importorskip("mne_lsl", reason="mne-lsl is in the test extra: pip install mne-lsl")
    from mne_lsl.stream import StreamLSL

    atlas = load_atlas(*annots)
    source_id = f"roi-mne-{uuid.uuid4().hex[:8]}"
    values = np.random.default_rng(4).standard_normal((2, N_VERTICES)).astype(np.float32)
    with Publisher("tcp://127.0.0.1:*", stream_id="cam1", atlas=atlas) as pub:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tribe_stream.cli", "lsl", pub.url, "--topic", "roi",
             "--source-id", source_id, "--count", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ},
        )  # fmt: skip
        stream = StreamLSL(bufsize=10, source_id=source_id)
        try:
            stream.connect(acquisition_delay=0.05, timeout=20)
            names, units = list(stream.ch_names), stream.get_channel_units()
            time.sleep(0.3)
            for k in range(2):
                pub.send(Prediction(k, values[k], (k, k + 1.0), k + 5.0))
            deadline = time.monotonic() + 15
            while stream.n_new_samples < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            data, _ = stream.get_data(winsize=2)  # (channels, samples), seconds at 1 Hz
            out, err = proc.communicate(timeout=20)
        finally:
            if stream.connected:
                stream.disconnect()
            proc.kill()
    assert proc.returncode == 0, err
    assert names == list(atlas.names) and len(units) == len(atlas.names)
    np.testing.assert_allclose(data.T, atlas.means(values), rtol=1e-5, atol=1e-6)


def test_latest_only_keeps_the_newest_predictions_region_means(annots):
    """A viewer that reads latest-only gets the newest prediction and then its own region means
    (read in the same drain, they used to be dropped); the skipped predictions' means are not
    returned, and means that arrive after their prediction was returned still come."""
    from tribe_stream.client import Subscriber

    atlas = load_atlas(*annots)
    with Publisher("tcp://127.0.0.1:*", atlas=atlas) as pub:
        with Subscriber(pub.url, latest_only=True, topics=("prediction", "roi")) as sub:
            assert pub.wait_for_subscribers(1, timeout=5)
            maps = np.random.default_rng(1).standard_normal((6, N_VERTICES)).astype(np.float32)
            for k in range(6):
                pub.send(Prediction(k, maps[k], (k, k + 1.0), k + 5.0))
            time.sleep(0.5)  # all twelve messages wait: one drain reads them
            first = sub.recv(timeout=2)
            roi = sub.recv(timeout=2)
            assert first.topic == "prediction" and first.second == 5 and sub.skipped == 5
            assert roi is not None and roi.topic == "roi" and roi.header["second"] == 5
            assert roi.header["prediction_seq"] == first.seq
            np.testing.assert_allclose(roi.values, atlas.means(first.values), atol=2e-3)
            assert sub.recv(timeout=0.3) is None  # nothing of the skipped seconds follows
            pub.send(Prediction(6, maps[0], (6, 7.0), 11.0))
            got = [sub.recv(timeout=2), sub.recv(timeout=2)]
            assert [(m.topic, m.header["second"]) for m in got] == [("prediction", 6), ("roi", 6)]


def test_roi_by_atlas_name_and_regions_publishes_only_those(tmp_path, monkeypatch, annots):
    """`--roi NAME --region R`: the atlas from our cache by name, its chosen regions' means on
    `tribe.roi` (and their names in the metadata), exactly as the Python API's options give it."""
    import shutil

    from tribe_stream.client import Subscriber
    from tribe_stream.options import PublishOptions

    cache = tmp_path / "cache"
    monkeypatch.setenv("TRIBE_STREAM_CACHE", str(cache))
    (cache / "atlases").mkdir(parents=True)
    for hemi, path in zip(("lh", "rh"), annots, strict=True):
        shutil.copy(path, cache / "atlases" / f"{hemi}.destrieux.annot")
    opts = PublishOptions(url="tcp://127.0.0.1:*", roi=("destrieux",), regions=["R1", "lh.R3"])
    atlas = load_atlas(*annots).select(["R1", "lh.R3"])
    assert atlas.names == ("lh.R1", "lh.R3", "rh.R1")
    values = np.random.default_rng(6).standard_normal(N_VERTICES).astype(np.float32)
    with opts.validate().publisher() as pub:
        with Subscriber(pub.url, topics=("roi", "metadata")) as sub:
            assert pub.wait_for_subscribers(1, timeout=5)
            pub.send(Prediction(0, values, (0.0, 1.0), 5.0))
            msg = sub.recv(timeout=5)
            while msg is not None and msg.topic != "roi":
                msg = sub.recv(timeout=5)
            meta = sub.metadata
    assert msg is not None and meta["regions"]["names"] == list(atlas.names)
    assert meta["regions"]["name"] == "destrieux"
    np.testing.assert_allclose(msg.values, atlas.means(values), rtol=2e-3, atol=2e-3)


def test_roi_names_and_regions_fail_in_one_line_before_models_load(tmp_path, annots):
    offline = {"TRIBE_STREAM_CACHE": str(tmp_path / "cache"), "NILEARN_DATA": str(tmp_path),
               "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}  # fmt: skip
    r = run_cli("demo", "--publish", free_url(), "--roi", "destrieux", env=offline)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "atlas destrieux is not in" in r.stderr and "once online run:" in r.stderr
    from tribe_stream.options import PublishOptions

    def refused(**kw) -> str:
        with pytest.raises(InputError) as e:
            PublishOptions(url="tcp://127.0.0.1:*", **kw).validate()
        return str(e.value)

    assert "--region 'R' is ambiguous: R0, R1, R2, R3" in refused(roi=annots, regions=["R"])
    assert "--region picks regions of --roi's atlas" in refused(regions=["R1"])
    assert "--roi takes an atlas name or two annotations" in refused(roi=("a", "b", "c"))
