"""Publisher and Subscriber on real ZeroMQ sockets over loopback."""

from __future__ import annotations

import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import zmq

from tribe_stream import N_VERTICES
from tribe_stream.client import Subscriber
from tribe_stream.errors import InputError
from tribe_stream.protocol import (
    TOPICS,
    encode_metadata,
    encode_prediction,
    encode_status,
    stream_metadata,
)
from tribe_stream.publish import SUBSCRIPTION_POLL_S, Publisher
from tribe_stream.types import Prediction

ANY_PORT = "tcp://127.0.0.1:*"
POOL = np.random.default_rng(0).standard_normal((16, N_VERTICES)).astype(np.float32)


def pred(k: int) -> Prediction:
    return Prediction(k, POOL[k % 16], (k, k + 1.0), k + 5.0, {"capture": k + 0.01}, {"drops": 0})


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tribe_stream.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )


def collect(sub: Subscriber, n: int, timeout: float, out: list, check_values: bool = True):
    """Receive until `n` predictions (or timeout); keep (seq, second, values ok) tuples."""
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        msg = sub.recv(timeout=0.5)
        if msg is None:
            continue
        ok = True
        if check_values:
            ok = np.array_equal(msg.values, POOL[msg.second % 16].astype(np.float16))
        out.append((msg.seq, msg.second, ok, msg.missed_before))


def test_ten_thousand_messages_no_loss_contiguous_sequence():
    n = 10_000
    with Publisher(ANY_PORT, model="demo") as pub, Subscriber(pub.url) as sub:
        assert pub.wait_for_subscribers(1, timeout=5)
        got: list = []
        reader = threading.Thread(target=collect, args=(sub, n, 60, got))
        reader.start()
        for k in range(n):
            while k - len(got) > 500 and reader.is_alive():
                time.sleep(0.001)  # keep the backlog under the high-water mark (1000)
            pub.send(pred(k))
        reader.join(60)
        assert pub.counters["sent"] == n and pub.counters["dropped"] == 0
    assert [g[0] for g in got] == list(range(n))  # contiguous sequence numbers
    assert [g[1] for g in got] == list(range(n))
    assert all(g[2] for g in got), "payload values changed on the way"
    assert (sub.gaps, sub.missed, sub.rejected, sub.received) == (0, 0, 0, n)


def test_stalled_subscriber_does_not_slow_the_publisher_and_sees_its_gaps():
    n = 3000
    with Publisher(ANY_PORT, hwm=200) as pub:
        healthy = Subscriber(pub.url)
        stalled = Subscriber(pub.url, hwm=20)
        try:
            assert pub.wait_for_subscribers(2, timeout=5)
            got: list = []
            reader = threading.Thread(target=collect, args=(healthy, n, 300, got, False))
            reader.start()
            longest = 0.0
            for k in range(n):  # the stalled subscriber reads nothing meanwhile
                t = time.perf_counter()
                pub.send(pred(k))
                longest = max(longest, time.perf_counter() - t)
                if k % 100 == 99:
                    # batches of 100 (under the high-water mark of 200), each read by the healthy
                    # reader before the next: it keeps up whatever the machine's load (before, a
                    # fixed pace lost 101 messages on a loaded machine); the stalled one falls
                    # behind by 100 each batch
                    deadline = time.monotonic() + 60
                    while len(got) <= k and reader.is_alive() and time.monotonic() < deadline:
                        time.sleep(0.002)
            reader.join(60)
            # a send that waited for the stalled peer would hang until it read (never): any
            # bound shows that; a generous one leaves room for a loaded machine's scheduling
            assert longest < 5.0, f"a send took {longest:.3f} s"
            assert [g[0] for g in got] == list(range(n)), "the healthy subscriber lost messages"

            seen = []  # the stalled subscriber wakes up and drains what was kept for it
            deadline = time.monotonic() + 10
            while stalled.status is None and time.monotonic() < deadline:
                msg = stalled.recv(timeout=0.2)
                if msg is None:  # the 1 Hz heartbeat (its next_seq reveals trailing losses)
                    pub.status({"drops": 0})
                else:
                    seen.append((msg.seq, msg.missed_before))
            assert stalled.status is not None, "no heartbeat reached the stalled subscriber"
        finally:
            healthy.close()
            stalled.close()
    assert 0 < len(seen) < n
    assert stalled.gaps >= 1
    assert stalled.missed + len(seen) == n  # exactly what it missed, no more, no less
    assert sum(g.count for g in stalled.gap_log) == stalled.missed
    assert sum(m for _, m in seen) + (n - 1 - seen[-1][0]) == stalled.missed


def test_subscriber_survives_a_publisher_restart():
    pub = Publisher(ANY_PORT)
    url = pub.url
    with Subscriber(url) as sub:
        assert pub.wait_for_subscribers(1, timeout=5)
        for k in range(5):
            pub.send(pred(k))
        first = [sub.recv(timeout=5) for _ in range(5)]
        assert [m.seq for m in first] == list(range(5))
        old_session = first[0].header["session"]
        pub.close()
        pub = Publisher(url)  # same address, new process state
        try:
            assert wait_for_subscriber(pub, sub), "subscriber did not reconnect"
            for k in range(5, 10):
                pub.send(pred(k))
            again = [sub.recv(timeout=5) for _ in range(5)]
        finally:
            pub.close()
    assert [m.second for m in again] == list(range(5, 10))
    assert [m.seq for m in again] == list(range(5))  # the new session counts from 0
    assert again[0].header["session"] != old_session
    assert sub.restarts == 1 and sub.gaps == 0 and sub.missed == 0
    assert sub.disconnects >= 1 and sub.connects >= 2


def _raw_publisher():
    ctx = zmq.Context()
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.XPUB_VERBOSE, 1)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.bind(ANY_PORT)
    return ctx, sock


def _wait_subscribed(sock, sub: Subscriber, timeout: float = 5.0) -> None:
    """Wait for a subscription on a raw XPUB socket. The subscriber must be pumped: ZeroMQ
    re-sends a reconnected SUB's subscriptions when its own thread next touches the socket."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            event = sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            assert sub.recv(timeout=0.02) is None
            continue
        if event[0] == 1:
            time.sleep(0.05)
            while True:  # the other topics' subscriptions
                try:
                    sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    return
    raise AssertionError("no subscription arrived")


def wait_for_subscriber(pub: Publisher, sub: Subscriber, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while pub.subscribers < 1:
        if time.monotonic() > deadline:
            return False
        sub.recv(timeout=0.02)  # the subscriber's thread completes its reconnection
    return True


def test_malformed_and_foreign_messages_are_rejected_counted_and_survived():
    ctx, raw = _raw_publisher()
    url = raw.getsockopt_string(zmq.LAST_ENDPOINT)
    sub = Subscriber(url)
    try:
        _wait_subscribed(raw, sub)
        ids = dict(stream_id="raw", session="s1", publish_wall=time.time())
        good = encode_prediction(pred(0), **ids, seq=0)
        header = json.loads(good[1])
        bad = [
            [good[0]],  # truncated: topic only
            good[:2],  # truncated: no payload frame
            [good[0], good[1], good[2][:1000]],  # truncated payload
            [good[0], good[1][:50], good[2]],  # truncated header
            [good[0], good[1], good[2] * 4],  # oversized payload
            [good[0], b"{" + b" " * 70_000 + b"}", good[2]],  # oversized header
            [b"tribe.prediction.v9", good[1], good[2]],  # foreign topic, same prefix
            [good[0], json.dumps({**header, "v": 99}).encode(), good[2]],  # future version
        ]
        rng = random.Random(7)
        for _ in range(500):  # random frames behind a topic our filter lets through
            n = rng.randint(1, 5)
            bad.append(
                [TOPICS["prediction"], *(rng.randbytes(rng.randint(0, 300)) for _ in range(n))]
            )
        for frames in bad:
            raw.send_multipart(frames)
        raw.send_multipart(encode_prediction(pred(1), **ids, seq=1))
        msg = sub.recv(timeout=5)
        assert msg is not None and msg.second == 1, "the valid message after the junk was lost"
        assert sub.rejected == len(bad)
        reasons = sub.reject_reasons
        assert reasons["frame-count"] >= 2 and reasons["payload-size"] >= 1
        assert reasons["oversized"] >= 2 and reasons["foreign-topic"] == 1
        assert reasons["version"] == 1 and reasons["bad-header"] >= 1
        assert sub.last_reject
        reasons_before = reasons["oversized"]

        # A huge frame is received whole, rejected, and the connection stays up.
        raw.send_multipart([TOPICS["prediction"], good[1], b"\0" * (20 * 1024 * 1024)])
        raw.send_multipart(encode_prediction(pred(2), **ids, seq=2))
        msg = sub.recv(timeout=5)
        assert msg is not None and msg.second == 2
        assert sub.reject_reasons["oversized"] == reasons_before + 1
        assert sub.received == 2 and sub.missed == 0 and sub.disconnects == 0
    finally:
        sub.close()
        raw.close(linger=0)
        ctx.term()


def test_curve_only_allowed_clients_receive(tmp_path):
    keys = tmp_path / "keys"
    made = cli("keys", str(keys), "--name", "server", "--name", "client", "--name", "intruder")
    assert made.returncode == 0, made.stderr
    assert "public key" in made.stdout
    assert oct((keys / "server.key_secret").stat().st_mode & 0o777) == "0o600"
    again = cli("keys", str(keys))
    assert again.returncode == 2 and "--overwrite" in again.stderr  # no silent key replacement

    with Publisher(
        ANY_PORT,
        curve_secret_key=keys / "server.key_secret",
        allowed_client_keys=[keys / "client.key"],
    ) as pub:
        server_key = keys / "server.key"
        good = Subscriber(
            pub.url, curve_server_key=server_key, curve_keypair=keys / "client.key_secret"
        )
        intruder = Subscriber(
            pub.url, curve_server_key=server_key, curve_keypair=keys / "intruder.key_secret"
        )
        plain = Subscriber(pub.url)
        try:
            assert pub.wait_for_subscribers(1, timeout=5)
            for k in range(5):
                pub.send(pred(k))
            pub.status({})
            got = [good.recv(timeout=5) for _ in range(5)]
            assert [m.second for m in got] == list(range(5))
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                assert intruder.recv(timeout=0.1) is None
                assert plain.recv(timeout=0.1) is None
            assert intruder.received == 0 and intruder.metadata is None and intruder.status is None
            assert plain.received == 0 and plain.metadata is None
            assert intruder.auth_failures >= 1 and "allow-list" in intruder.last_error
            assert pub.subscribers == 1
        finally:
            for s in (good, intruder, plain):
                s.close()


def test_late_joiner_gets_metadata_without_waiting_for_a_heartbeat():
    with Publisher(ANY_PORT, stream_id="cam0", model={"name": "tribev2", "engine": "torch"}) as pub:
        pub.set_metadata({"source": "camera 0", "t0_wall": 1.7e9})
        for k in range(3):
            pub.send(pred(k))  # nobody listens yet: these are gone
        with Subscriber(pub.url, topics=("metadata", "prediction")) as sub:
            first = sub.recv(timeout=2)
            assert first is not None and first.topic == "metadata"
            meta = sub.metadata
            assert meta["stream_id"] == "cam0" and meta["source"] == "camera 0"
            assert meta["model"] == {"name": "tribev2", "engine": "torch"}
            assert meta["t0_wall"] == 1.7e9 and meta["mesh"]["name"] == "fsaverage5"
            assert meta["next_seq"] == 3
            pub.send(pred(3))
            msg = sub.recv(timeout=2)
            assert msg.seq == 3 and msg.header["t0_wall"] == 1.7e9
            assert sub.missed == 0  # joining late is not a loss


def test_early_joiner_loses_nothing_before_the_first_prediction():
    probe = Publisher(ANY_PORT)
    url = probe.url
    probe.close()
    with Subscriber(url) as sub:  # subscribe before the publisher exists
        with Publisher(url) as pub:
            assert pub.wait_for_subscribers(1, timeout=10)
            for k in range(3):
                pub.send(pred(k))
            got = [sub.recv(timeout=5) for _ in range(3)]
    assert [m.seq for m in got] == [0, 1, 2] and sub.missed == 0


def test_latest_only_returns_the_newest_and_polls_cheaply():
    with Publisher(ANY_PORT) as pub, Subscriber(pub.url, latest_only=True) as viewer:
        assert pub.wait_for_subscribers(1, timeout=5)
        t = time.perf_counter()
        assert viewer.recv(timeout=0) is None
        assert time.perf_counter() - t < 0.05  # a timer callback can afford it
        for k in range(20):
            pub.send(pred(k))
        pub.status({"lag_s": 0.1})
        time.sleep(0.3)
        msg = viewer.recv(timeout=1)
        assert msg.second == 19 and viewer.skipped == 19 and viewer.missed == 0
        assert viewer.status["counters"]["lag_s"] == 0.1
        assert viewer.recv(timeout=0) is None


def test_failed_sends_are_counted_and_show_up_as_gaps():
    with Publisher(ANY_PORT) as pub, Subscriber(pub.url, topics=("prediction",)) as sub:
        assert pub.wait_for_subscribers(1, timeout=5)
        pub.send(pred(0))
        broken = pred(1)
        broken.values = broken.values[:10]  # a bug upstream must not kill the stream
        pub.send(broken)
        pub.send(pred(2))
        pub.status({"drops": 4, "lag_s": 0.5, "queue.video": 2})
        got = [sub.recv(timeout=5) for _ in range(2)]
        assert [m.second for m in got] == [0, 2]
        assert got[1].missed_before == 1 and sub.missed == 1 and sub.gaps == 1
        deadline = time.monotonic() + 2
        while sub.status is None and time.monotonic() < deadline:
            sub.recv(timeout=0.1)
        counters = sub.status["counters"]
        assert counters["publisher.errors"] == 1 and counters["publisher.sent"] == 2
        assert counters["drops"] == 4 and counters["queue.video"] == 2
        assert counters["publisher.subscribers"] == 1
    pub.send(pred(3))  # after close: counted, not raised
    assert pub.counters["errors"] == 2


def test_iteration_and_stop():
    with Publisher(ANY_PORT) as pub, Subscriber(pub.url) as sub:
        assert pub.wait_for_subscribers(1, timeout=5)
        for k in range(3):
            pub.send(pred(k))
        seconds = []
        for p in sub:
            assert p.values.shape == (N_VERTICES,) and isinstance(p.header, dict)
            seconds.append(p.second)
            if len(seconds) == 3:
                threading.Timer(0.1, sub.stop).start()
        assert seconds == [0, 1, 2]  # and the loop ended after stop()


def test_user_errors_are_clear():
    with Publisher(ANY_PORT) as pub:
        with pytest.raises(InputError, match="already in use"):
            Publisher(pub.url)
    with pytest.raises(InputError, match="dtype"):
        Publisher(ANY_PORT, dtype="int8")
    with pytest.raises(InputError, match="CURVE"):
        Publisher(ANY_PORT, allowed_client_keys=["x"])
    with pytest.raises(InputError, match="topics"):
        Subscriber(ANY_PORT, topics=("predictions",))
    with pytest.raises(InputError, match="not a ZeroMQ endpoint"):
        Subscriber("not a url")
    with pytest.raises(InputError, match="1 to 65535"):  # used to connect nowhere, silently
        Subscriber("tcp://127.0.0.1:99999")
    with pytest.raises(InputError, match="1 to 65535"):  # used to bind some other port
        Publisher("tcp://127.0.0.1:99999")


def test_status_without_subscribers_and_metadata_updates_never_block():
    with Publisher(ANY_PORT, hwm=1) as pub:
        t = time.perf_counter()
        for k in range(200):
            pub.send(pred(k))
            pub.status({"k": k})
        assert time.perf_counter() - t < 5
        with pytest.raises(InputError, match="set by the publisher"):
            pub.set_metadata({"seq": 1})
        with pytest.raises(InputError, match="JSON"):
            pub.set_metadata({"thing": object()})


def test_set_metadata_refuses_what_subscribers_would_reject():
    with Publisher(ANY_PORT, model="m") as pub, Subscriber(pub.url, topics=("metadata",)) as sub:
        before = pub.metadata
        deep: list = []
        for _ in range(40):
            deep = [deep]
        for bad, match in (
            ({"mesh": {"hemispheres": "both"}}, "mesh"),
            ({"extra": deep}, "deeper"),
            ({"notes": "x" * 70_000}, "bytes"),
            ({"t0_wall": "noon"}, "t0_wall"),
        ):
            with pytest.raises(InputError, match=match):
                pub.set_metadata({"stream_id": "changed", **bad})
            assert pub.metadata == before and pub.stream_id == "tribe-stream"  # unchanged
        assert pub.wait_for_subscribers(1, timeout=5)
        pub.set_metadata({"source": "ok"})
        deadline = time.monotonic() + 5
        while (sub.metadata or {}).get("source") != "ok" and time.monotonic() < deadline:
            sub.recv(timeout=0.1)
        assert sub.metadata["source"] == "ok" and sub.rejected == 0
        assert pub.counters["errors"] == 0


# -- hostile input on real sockets ----------------------------------------------------------------


class _RawStream:
    """A hand-driven publisher (raw XPUB) and a Subscriber, to send anything at all."""

    def __init__(self, topics=("prediction", "status", "metadata")):
        self.ctx, self.raw = _raw_publisher()
        self.sub = Subscriber(self.raw.getsockopt_string(zmq.LAST_ENDPOINT), topics=topics)
        _wait_subscribed(self.raw, self.sub)
        self.ids = dict(stream_id="raw", session="s1")

    def pred(self, seq: int, **header) -> None:
        frames = encode_prediction(pred(seq % 1000), **self.ids, seq=seq, publish_wall=1.0)
        if header:
            h = json.loads(frames[1])
            h.update(header)
            frames[1] = json.dumps(h).encode()
        self.raw.send_multipart(frames)

    def status(self, next_seq: int) -> None:
        self.raw.send_multipart(
            encode_status({}, **self.ids, seq=0, publish_wall=1.0, next_seq=next_seq)
        )

    def metadata(self, next_seq: int) -> None:
        meta = stream_metadata(stream_id="raw", dtype="float16", model={})
        frames = encode_metadata(meta, **self.ids, seq=0, publish_wall=1.0, next_seq=next_seq)
        self.raw.send_multipart(frames)

    def drain(self, timeout: float = 1.0) -> list:
        """Every message that arrives until `timeout` s of silence."""
        got = []
        while (msg := self.sub.recv(timeout=timeout)) is not None:
            got.append(msg)
            timeout = min(timeout, 0.3)
        return got

    def seqs(self, timeout: float = 1.0) -> list[tuple[int, int]]:
        return [(m.seq, m.missed_before) for m in self.drain(timeout) if m.topic == "prediction"]

    def close(self) -> None:
        self.sub.close()
        self.raw.close(linger=0)
        self.ctx.term()


@pytest.fixture
def raw_stream():
    stream = _RawStream()
    yield stream
    stream.close()


def test_a_deeply_nested_header_is_rejected_and_recv_goes_on(raw_stream):
    good = encode_prediction(pred(0), **raw_stream.ids, seq=0, publish_wall=1.0)
    deep = b'{"v": 1, "kind": "prediction", "x": ' + b"[" * 60_000  # RecursionError in json
    raw_stream.raw.send_multipart([good[0], deep, good[2]])
    raw_stream.raw.send_multipart([good[0], b"[" * 30_000 + b"]" * 30_000, good[2]])
    raw_stream.pred(0, bold_time=float("nan"))  # json.dumps writes NaN: not JSON
    raw_stream.pred(0)
    assert raw_stream.seqs() == [(0, 0)]  # recv() did not raise; the good message came through
    sub = raw_stream.sub
    assert sub.reject_reasons == {"bad-header": 2, "non-finite": 1} and sub.rejected == 3


def test_one_far_ahead_seq_does_not_shut_the_session_out(raw_stream):
    for k in range(5):
        raw_stream.pred(k)
    raw_stream.pred(10**15)  # forged or corrupt: used to make every later message stale
    for k in range(5, 10):
        raw_stream.pred(k)
    got = raw_stream.seqs()
    sub = raw_stream.sub
    assert [s for s, _ in got] == [0, 1, 2, 3, 4, 10**15, 5, 6, 7, 8, 9]
    assert got[6] == (5, 0)  # nothing was lost before 5
    assert sub.reject_reasons.get("stale-seq", 0) == 0
    assert (sub.resyncs, sub.gaps, sub.missed) == (1, 0, 0)  # the spurious gap is withdrawn
    assert list(sub.gap_log) == []


@pytest.mark.parametrize("kind", ["status", "metadata"])
def test_one_far_ahead_next_seq_does_not_shut_the_session_out(raw_stream, kind):
    for k in range(3):
        raw_stream.pred(k)
    getattr(raw_stream, kind)(next_seq=2**62)
    for k in range(3, 8):
        raw_stream.pred(k)
    raw_stream.status(next_seq=8)  # the real heartbeat agrees with the real predictions
    got = raw_stream.seqs()
    sub = raw_stream.sub
    assert got == [(k, 0) for k in range(8)]
    assert (sub.resyncs, sub.gaps, sub.missed, sub.rejected) == (1, 0, 0, 0)


def test_a_confirmed_run_of_forged_seqs_is_left_after_a_short_backward_run(raw_stream):
    for k in range(3):
        raw_stream.pred(k)
    for k in range(5):  # a jump, then in-order messages that confirm it
        raw_stream.pred(10**12 + k)
    for k in range(3, 10):
        raw_stream.pred(k)
    got = [s for s, _ in raw_stream.seqs()]
    sub = raw_stream.sub
    # the real stream goes on from 3: 3, 4, 5 are stale-looking, 6 makes four in a row
    assert got == [0, 1, 2, *(10**12 + k for k in range(5)), 6, 7, 8, 9]
    assert sub.reject_reasons["stale-seq"] == 3 and sub.resyncs == 1


def test_a_forged_first_message_does_not_shut_the_session_out(raw_stream):
    raw_stream.pred(2**63 - 1)
    for k in range(4):
        raw_stream.pred(k)
    got = [s for s, _ in raw_stream.seqs()]
    assert got == [2**63 - 1, 0, 1, 2, 3]
    assert raw_stream.sub.resyncs == 1 and raw_stream.sub.missed == 0


def test_real_gaps_are_still_counted_and_stale_duplicates_still_rejected(raw_stream):
    for k in (0, 1, 2, 3, 4, 10, 10, 11, 12, 13, 14, 12, 13, 14, 15):
        raw_stream.pred(k)  # 5..9 lost; 10 again, and 12..14 again, are duplicates
    raw_stream.status(next_seq=20)  # 16..19 lost after the last prediction
    raw_stream.pred(20)
    got = raw_stream.seqs()
    sub = raw_stream.sub
    assert got == [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (10, 5)] + [
        (k, 0) for k in range(11, 16)
    ] + [(20, 4)]
    assert (sub.gaps, sub.missed, sub.resyncs) == (2, 9, 0)
    assert sub.reject_reasons["stale-seq"] == 4
    assert [(g.first_seq, g.count) for g in sub.gap_log] == [(5, 5), (16, 4)]


def _zmtp_peer(url: str) -> socket.socket:
    """A bare ZMTP 3.0 peer (NULL security, SUB) on a TCP socket: it sends whatever frames we
    like, where a ZeroMQ XSUB would drop unsubscriptions it has no subscription for."""
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    peer = socket.create_connection((host, int(port)), timeout=5)
    greeting = b"\xff" + b"\0" * 8 + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\0") + b"\0" * 32
    ready = b"\x05READY\x0bSocket-Type" + struct.pack(">I", 3) + b"SUB"
    peer.sendall(greeting + bytes([0x04, len(ready)]) + ready)
    reply = b""
    while len(reply) < 66 or len(reply) < 66 + reply[65]:  # its greeting and READY command
        reply += peer.recv(4096)
    assert reply[66:72] == b"\x05READY"
    return peer


def _frame(peer: socket.socket, body: bytes) -> None:
    peer.sendall(bytes([0x00, len(body)]) + body)


def _until(check, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    time.sleep(3 * SUBSCRIPTION_POLL_S)  # and it stays so
    return check()


def test_repeated_subscribe_frames_from_one_client_count_once():
    sub_frame, unsub_frame = b"\x01" + TOPICS["prediction"], b"\x00" + TOPICS["prediction"]
    with Publisher(ANY_PORT) as pub:
        ctx = zmq.Context()
        hostile = ctx.socket(zmq.XSUB)
        deflater = _zmtp_peer(pub.url)
        try:
            hostile.connect(pub.url)
            time.sleep(0.2)
            for _ in range(1000):  # each one reaches the publisher (XSUB forwards them all)
                hostile.send(sub_frame)
            assert _until(lambda: pub.subscribers == 1), f"{pub.subscribers} subscribers"
            with Subscriber(pub.url) as sub:
                assert _until(lambda: pub.subscribers == 2)
                for _ in range(1000):  # unsubscriptions from a client that never subscribed
                    _frame(deflater, unsub_frame)
                _frame(deflater, b"\x01tribe.status")  # not the prediction topic
                assert _until(lambda: pub.subscribers == 2), f"{pub.subscribers} subscribers"
                pub.status({})
                assert pub.counters["subscribers"] == 2
                _frame(deflater, b"\x01tribe.")  # a prefix that covers predictions: counts
                assert _until(lambda: pub.subscribers == 3)
                for _ in range(3):
                    _frame(deflater, unsub_frame)  # not the prefix it subscribed with
                assert _until(lambda: pub.subscribers == 3)
                _frame(deflater, b"\x00tribe.")
                assert _until(lambda: pub.subscribers == 2)
                assert sub.recv(timeout=0) is None
            assert _until(lambda: pub.subscribers == 1)  # the Subscriber's connection is gone
            hostile.close(linger=0)
            assert _until(lambda: pub.subscribers == 0)
        finally:
            deflater.close()
            hostile.close(linger=0)
            ctx.term()
