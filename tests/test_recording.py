"""Recording to HDF5 and replaying, through the real `tribe-stream` commands and sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest
import zmq

from tribe_stream import N_VERTICES
from tribe_stream.client import Subscriber
from tribe_stream.clock import StreamClock
from tribe_stream.errors import InputError
from tribe_stream.protocol import (
    Message,
    decode,
    encode_metadata,
    encode_prediction,
    encode_status,
    stream_metadata,
)
from tribe_stream.publish import Publisher
from tribe_stream.recording import RecordingWriter, read_recording, record, replay
from tribe_stream.types import Prediction

POOL = np.random.default_rng(1).standard_normal((8, N_VERTICES)).astype(np.float32)


def pred(k: int) -> Prediction:
    return Prediction(
        k, POOL[k % 8], (k, k + 1.0), k + 5.0, {"capture": k + 0.01, "engine": k + 1.2}, {"d": k}
    )


def free_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tribe_stream.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )


def test_record_then_replay_round_trip(tmp_path):
    out = tmp_path / "session.h5"
    clock = StreamClock()
    with Publisher("tcp://127.0.0.1:*", model={"name": "demo"}, clock=clock) as pub:
        pub.set_metadata({"source": "test"})
        rec_proc = start_cli("record", pub.url, str(out), "--count", "19")
        try:
            assert pub.wait_for_subscribers(1, timeout=20), rec_proc.stderr.read()
            for k in range(20):
                if k == 7:
                    broken = pred(7)
                    broken.values = broken.values[:5]  # never sent: a gap the file must show
                    pub.send(broken)
                    continue
                pub.send(pred(k))
                if k % 5 == 0:
                    pub.status({"drops": 0, "lag_s": 0.1})
            stdout, stderr = rec_proc.communicate(timeout=20)
        finally:
            rec_proc.kill()
    assert rec_proc.returncode == 0, stderr
    assert "19 predictions" in stdout and "missed 1 in 1 gaps" in stdout

    rec = read_recording(out)
    expected = [k for k in range(20) if k != 7]
    assert len(rec) == 19 and rec.seconds.tolist() == expected
    assert rec.values.shape == (19, N_VERTICES) and rec.values.dtype == np.float16
    for i, k in enumerate(expected):
        assert np.array_equal(rec.values[i], POOL[k % 8].astype(np.float16))
    assert rec.missed_before.tolist() == [1 if k == 8 else 0 for k in expected]
    assert rec.stimulus[3].tolist() == [3.0, 4.0] and rec.bold_time[3] == 8.0
    assert rec.timings[3]["engine"] == pytest.approx(4.2) and "publish" in rec.timings[3]
    assert rec.headers[3]["t0_wall"] == pytest.approx(clock.t0_wall)
    assert rec.metadata["model"] == {"name": "demo"} and rec.metadata["source"] == "test"
    assert rec.attrs["stream_id"] == "tribe-stream" and rec.attrs["dtype"] == "float16"
    assert len(rec.status) >= 3 and rec.status[0]["counters"]["lag_s"] == 0.1
    assert [e["kind"] for e in rec.events][0] == "start" and rec.events[-1]["kind"] == "stop"
    p = rec.prediction(3)
    assert p.second == 3 and p.values.dtype == np.float32 and p.timings["capture"] == 3.01
    with h5py.File(out, "r") as f:  # a cleanly closed file opens with plain h5py
        assert f["values"].shape == (19, N_VERTICES)

    # Replay through the CLI, as fast as possible, to a subscriber.
    url = free_url()
    with Subscriber(url, topics=("prediction", "metadata")) as sub:
        proc = start_cli("replay", str(out), "--publish", url, "--fast", "--wait-subscribers", "20")
        got = []
        try:
            deadline = time.monotonic() + 30
            while len(got) < 19 and time.monotonic() < deadline:
                msg = sub.recv(timeout=0.5)
                if msg is not None and msg.topic == "prediction":
                    got.append(msg)
            stdout, stderr = proc.communicate(timeout=20)
        finally:
            proc.kill()
        assert proc.returncode == 0, stderr
        assert [m.second for m in got] == expected
        for m, k in zip(got, expected, strict=True):
            assert np.array_equal(m.values, POOL[k % 8].astype(np.float16))
        assert got[3].header["timings"]["engine"] == pytest.approx(4.2)
        assert got[3].header["t0_wall"] is None  # a replay is not live: no capture clock
        meta = sub.metadata
        assert meta["model"] == {"name": "demo"} and meta["source"] == "test"
        assert meta["replay"]["original_t0_wall"] == pytest.approx(clock.t0_wall)
        assert sub.missed == 0


def test_replay_keeps_the_recorded_pace(tmp_path):
    out = tmp_path / "paced.h5"
    meta = {"stream_id": "s", "dtype": "float32", "model": {}}
    writer = RecordingWriter(out, meta)
    with Publisher("tcp://127.0.0.1:*") as pub, Subscriber(pub.url) as sub:  # real messages
        assert pub.wait_for_subscribers(1, timeout=5)
        for k in (0, 1, 2, 4, 5):  # second 3 is missing: the pace keeps the hole
            pub.send(pred(k))
            writer.add_prediction(sub.recv(timeout=5))
    writer.close()
    url = free_url()
    times = []
    with Subscriber(url) as sub:
        th = threading.Thread(
            target=replay, args=(out, url), kwargs={"speed": 10.0, "wait_subscribers": 10}
        )
        th.start()
        while len(times) < 5:
            msg = sub.recv(timeout=10)
            assert msg is not None
            times.append((msg.second, time.monotonic()))
        th.join(10)
    assert [s for s, _ in times] == [0, 1, 2, 4, 5]
    elapsed = times[-1][1] - times[0][1]
    assert 0.4 <= elapsed < 2.0  # 5 recorded seconds at 10x is 0.5 s


def test_killed_recorder_leaves_a_readable_file(tmp_path):
    out = tmp_path / "crash.h5"
    with Publisher("tcp://127.0.0.1:*") as pub:
        proc = start_cli("record", pub.url, str(out))
        try:
            assert pub.wait_for_subscribers(1, timeout=20), proc.stderr.read()
            sent_at = []
            t_status = 0.0
            for k in range(50):  # 20 per second for 2.5 s
                pub.send(pred(k))
                sent_at.append(time.monotonic())
                if time.monotonic() - t_status > 1.0:
                    t_status = time.monotonic()
                    pub.status({"drops": 0})
                time.sleep(0.05)
                if k == 30:  # the file is readable while it is being written (SWMR)
                    live = read_recording(out)
                    assert 0 < len(live) <= 31
            time.sleep(0.3)
            t_kill = time.monotonic()
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    rec = read_recording(out)
    # Everything sent more than a second (plus scheduling slack) before the kill is on disk.
    must_have = sum(t < t_kill - 1.5 for t in sent_at)
    assert len(rec) >= must_have, f"{len(rec)} rows on disk, expected at least {must_have}"
    assert rec.seconds.tolist() == list(range(len(rec)))
    for i in range(len(rec)):
        assert np.array_equal(rec.values[i], POOL[i % 8].astype(np.float16))
    assert rec.events[0]["kind"] == "start"  # no stop event: it never got to say goodbye


def test_clear_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_recording(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(InputError, match="not a readable HDF5"):
        read_recording(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(InputError, match="not a tribe-stream recording"):
        read_recording(tmp_path / "other.h5")
    with pytest.raises(InputError, match="--overwrite"):
        record("tcp://127.0.0.1:1", tmp_path / "other.h5", duration=0.1)
    with pytest.raises(InputError, match="nothing received"):
        record(free_url(), tmp_path / "empty.h5", duration=0.5)
    assert not (tmp_path / "empty.h5").exists()
    proc = start_cli("record", "tcp://127.0.0.1:1", str(tmp_path / "other.h5"))
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "--overwrite" in stderr and "Traceback" not in stderr


def test_recorder_survives_what_the_subscriber_used_to_let_through(tmp_path):
    """Headers that decoded but crashed the recorder: now rejected by decode, counted, skipped."""
    out = tmp_path / "hostile.h5"
    ctx = zmq.Context()
    raw = ctx.socket(zmq.XPUB)
    raw.bind("tcp://127.0.0.1:*")
    url = raw.getsockopt_string(zmq.LAST_ENDPOINT)
    ids = dict(stream_id="raw", session="s1", publish_wall=1.0)
    result: dict = {}
    th = threading.Thread(
        target=lambda: result.update(summary=record(url, out, count=4, duration=30))
    )
    th.start()
    try:
        assert raw.poll(10_000), "the recorder never subscribed"
        time.sleep(0.3)  # its other subscriptions
        meta = stream_metadata(stream_id="raw", dtype="float16", model={})
        raw.send_multipart(encode_metadata(meta, **ids, seq=0, next_seq=0))

        def send(k: int, **bad) -> None:
            frames = encode_prediction(pred(k), **ids, seq=k)
            text = frames[1].decode()
            for key, value in bad.items():  # JSON text as a hostile publisher would write it
                h = json.loads(text)
                h[key] = None
                text = json.dumps(h).replace(f'"{key}": null', f'"{key}": {value}')
            raw.send_multipart([frames[0], text.encode(), frames[2]])

        send(0)
        send(1, second=2**70)  # OverflowError into int64
        send(2, bold_time="1" + "0" * 400)  # a JSON int too large for float64
        send(3, counters='"oops"')
        send(4, timings='{"capture": [1]}')
        status = encode_status({}, **ids, seq=0, next_seq=5)
        raw.send_multipart([status[0], status[1].replace(b'"counters":{}', b'"counters":7'), b""])
        for k in (5, 6, 7):
            send(k)
        th.join(30)
    finally:
        raw.close(linger=0)
        ctx.term()
    assert not th.is_alive() and "summary" in result, "the recorder died"
    summary = result["summary"]
    assert summary["rows"] == 4 and summary["write_errors"] == 0
    assert summary["reject_reasons"] == {"bad-field": 5} and summary["missed"] == 4
    rec = read_recording(out)
    assert rec.seconds.tolist() == [0, 5, 6, 7] and rec.missed_before.tolist() == [0, 4, 0, 0]
    assert all(isinstance(v, float) for h in rec.headers for v in h["timings"].values())


def test_writer_converts_a_row_whole_and_undoes_a_failed_write(tmp_path):
    """The defence behind decode: a row that cannot be stored raises, and leaves no half row."""
    out = tmp_path / "rows.h5"
    writer = RecordingWriter(out, {"stream_id": "s", "dtype": "float16"})

    def message(k: int, **header) -> Message:
        msg = decode(encode_prediction(pred(k), stream_id="s", session="x", seq=k, publish_wall=1))
        msg.header.update(header)  # what decode would refuse, handed over directly
        return msg

    writer.add_prediction(message(0))
    for bad in ({"second": 2**70}, {"bold_time": 10**400}, {"stimulus": [1.0]}):
        with pytest.raises((OverflowError, InputError)):
            writer.add_prediction(message(1, **bad))
    sizes = {name: writer._file[name].shape[0] for name in ("values", "second", "seq", "header")}
    assert set(sizes.values()) == {1}, sizes  # the columns stay in step
    writer.add_prediction(message(2))
    writer.close()
    rec = read_recording(out)
    assert rec.seconds.tolist() == [0, 2] and rec.seq.tolist() == [0, 2]
    assert np.array_equal(rec.values[1], POOL[2].astype(np.float16))


def test_flipped_bytes_in_the_values_are_refused_not_drawn(tmp_path):
    """Bytes flipped inside `values` read back as a different map (render drew it, rc 0): each
    chunk of numbers now carries a Fletcher-32 checksum, and a damaged one is one line."""
    out = tmp_path / "rows.h5"
    writer = RecordingWriter(out, {"stream_id": "s", "dtype": "float16"})
    for k in range(3):
        writer.add_prediction(
            decode(encode_prediction(pred(k), stream_id="s", session="x", seq=k, publish_wall=1))
        )
    writer.close()
    assert np.array_equal(read_recording(out).values[2], POOL[2].astype(np.float16))
    with h5py.File(out, "r") as f:
        chunk = f["values"].id.get_chunk_info(0)
    data = bytearray(out.read_bytes())
    middle = chunk.byte_offset + 2 * N_VERTICES + 100  # inside row 1 (float16)
    data[middle : middle + 8] = bytes(255 - b for b in data[middle : middle + 8])
    out.write_bytes(bytes(data))
    with pytest.raises(InputError, match="damaged recording"):
        read_recording(out)
