"""Subscriber: receive predictions in a few lines, and know exactly what was missed.

    from tribe_stream.client import Subscriber

    for pred in Subscriber("tcp://127.0.0.1:5556"):
        print(pred.header["second"], pred.values.mean())   # values: (20484,) read-only view

Every message is validated (docs/PROTOCOL.md); bad ones are dropped and counted by reason, never
raised. Sequence numbers give gaps (the heartbeat's `next_seq` trailing ones); a publisher restart
(a new `session`) is counted, not taken for a gap; a forged or corrupt `seq` cannot shut a session
out (see `Subscriber`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from tribe_stream.errors import InputError
from tribe_stream.protocol import (
    DEFAULT_URL,
    HEADS,
    TOPICS,
    Message,
    MessageRejected,
    check_endpoint,
    decode,
    load_keypair,
    load_public_key,
)

log = logging.getLogger(__name__)

_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


@dataclass(frozen=True)
class Gap:
    """`count` predictions of one publisher session, from seq `first_seq`, never arrived."""

    stream_id: str
    session: str
    first_seq: int
    count: int
    wall: float


_STATS = (
    "received roi_received heads_received gaps missed skipped rejected reject_reasons restarts resyncs connects "
    "disconnects auth_failures last_error"
).split()

CONFIRM_AFTER = 4
"""In-order predictions that confirm a jump ahead; also the run of backward ones that resyncs."""
_MAX_JUMPS = 16
_MEANS_OF = {means: topic for topic, means in HEADS.values()}
"""A second head's region-means topic -> its prediction topic (`structures` -> `subcortical`)."""
_OPTIONAL = {"roi", *(t for pair in HEADS.values() for t in pair)}
"""Topics subscribed to only when asked for (the others are always: heartbeats, metadata)."""


@dataclass
class _Jump:
    """A tentative move of the expected seq from `start` to `end` (a gap, or a session start)."""

    start: int
    end: int
    gap: Gap | None  # None: the first message of a session (joining late is not a loss)


@dataclass
class _Stream:
    session: str
    expected: int | None = None
    jumps: list[_Jump] = field(default_factory=list)  # oldest first; empty once confirmed
    confirm_left: int = 0
    stale_run: int = 0
    stale_next: int = -1


def _belongs(roi: Message, prediction: Message) -> bool:
    """Whether region means `roi` are those of `prediction` (same stream, session and seq)."""
    r, p = roi.header, prediction.header
    ids = ("stream_id", "session")
    return [*map(r.get, ids), r.get("prediction_seq")] == [*map(p.get, ids), p.get("seq")]


class Subscriber:
    """Subscribe to a tribe-stream publisher (or several: `url` may be a list).

    `topics` chooses what `recv` and iteration return ("prediction", "status", "metadata",
    "roi": one prediction's region means, `values (R,)`, named by `.metadata["regions"]`;
    "subcortical": the subcortical head's predictions, `values (n_voxels,)`, and "structures":
    their Harvard-Oxford structure means, named by `.metadata["spaces"]["subcortical"]`);
    heartbeats and metadata are always received and kept in `.status` and `.metadata`.
    `latest_only=True` (viewers): `recv` returns only the newest waiting prediction (the older
    ones count in `skipped`, not as losses), then its region means if "roi" is in `topics`,
    then the newest of each second head's (and its structure means), likewise.
    CURVE: the server's public key (`curve_server_key`: Z85 text or `NAME.key` file) and our key
    pair (`curve_keypair`: `NAME.key_secret` file, Z85 secret, or (public, secret); default an
    ephemeral one). Not thread-safe, except `stop()`. Counters: see `stats`.

    Sequence tracking (docs/PROTOCOL.md, "Sequence numbers"): a `seq` (or `next_seq`) ahead of
    the expected one is a gap, counted at once but tentative until `CONFIRM_AFTER` predictions
    continue it (a session's first message is such a jump, from nowhere). A message that
    continues the sequence from before a tentative jump shows it spurious: the tracker
    resynchronises and withdraws its gaps (`resyncs`). A prediction behind is a stale duplicate
    (`stale-seq`), unless `CONFIRM_AFTER` in a row continue each other: the last resynchronises.
    """

    def __init__(
        self,
        url: str | Iterable[str] = DEFAULT_URL,
        *,
        latest_only: bool = False,
        topics: Iterable[str] = ("prediction",),
        curve_server_key: Any = None,
        curve_keypair: Any = None,
        hwm: int | None = None,
        context: zmq.Context | None = None,
    ):
        self.urls = [url] if isinstance(url, str) else list(url)
        self.topics = frozenset(topics)
        unknown = self.topics - set(TOPICS)
        if unknown:
            raise InputError(f"unknown topics {sorted(unknown)}; choose from {sorted(TOPICS)}")
        self.latest_only = latest_only
        self._held: deque[Message] = deque()  # latest_only: read with the prediction returned
        self.status: dict[str, Any] | None = None
        self.metadata: dict[str, Any] | None = None
        self.received = self.gaps = self.missed = self.skipped = self.roi_received = 0
        self.heads_received = 0
        self.rejected = self.restarts = self.connects = self.disconnects = self.auth_failures = 0
        self.resyncs = 0
        self.reject_reasons: Counter[str] = Counter()
        self.last_reject: str | None = None
        self.last_error: str | None = None
        self.last_received: float | None = None
        self.gap_log: deque[Gap] = deque(maxlen=1000)
        self._streams: dict[str, _Stream] = {}
        self._pending_missed = 0
        self._warned: set[str] = set()
        self._stopped = threading.Event()
        self._closed = False
        self._own_ctx = context is None
        self._ctx = context if context is not None else zmq.Context()
        sock = self._ctx.socket(zmq.SUB)
        self._sock = sock
        try:
            sock.setsockopt(zmq.RCVHWM, hwm if hwm is not None else (100 if latest_only else 1000))
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RECONNECT_IVL, 100)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
            sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)
            if curve_server_key is not None or curve_keypair is not None:
                self._setup_curve(curve_server_key, curve_keypair)
            for name, topic in TOPICS.items():  # region means and heads only when asked for
                if name not in _OPTIONAL or name in self.topics:
                    sock.setsockopt(zmq.SUBSCRIBE, topic)
            self._mon = sock.get_monitor_socket(_EVENTS)
            for u in self.urls:
                check_endpoint(u, bind=False)  # a port out of range fails here, not silently
                try:
                    sock.connect(u)
                except zmq.ZMQError as exc:
                    raise InputError(
                        f"cannot subscribe to {u!r}: {exc} (expected e.g. {DEFAULT_URL})"
                    ) from None
        except BaseException:
            self._closed = True
            if self._own_ctx:
                self._ctx.destroy(linger=0)  # closes the monitor socket too
            else:
                sock.close(linger=0)
            raise
        self._poller = zmq.Poller()
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(self._mon, zmq.POLLIN)

    def _setup_curve(self, server_key: Any, keypair: Any) -> None:
        if server_key is None:
            raise InputError("CURVE needs the publisher's public key (curve_server_key)")
        if keypair is None:
            public, secret = zmq.curve_keypair()
        elif isinstance(keypair, tuple):
            public, secret = (k.encode() if isinstance(k, str) else k for k in keypair)
        else:
            public, secret = load_keypair(keypair)
        self._sock.curve_serverkey = load_public_key(server_key)
        self._sock.curve_publickey = public
        self._sock.curve_secretkey = secret
        self.curve_public_key = public

    # -- receiving --------------------------------------------------------------------------

    def recv(self, timeout: float | None = None) -> Message | None:
        """The next message of `topics` (newest prediction when latest_only), or None on timeout.

        `timeout=0` is a cheap non-blocking poll; `None` waits until a message or `stop()`.
        """
        if self._closed:
            raise InputError("this Subscriber is closed")
        if self._held:  # latest_only: what came with the prediction just returned
            return self._held.popleft()
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        latest: Message | None = None
        latest_roi: Message | None = None
        heads: dict[str, list[Message]] = {}  # head topic -> [newest prediction, its means]
        while True:
            while True:
                try:
                    frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                msg = self._accept(frames)
                if msg is None:
                    continue
                if not self.latest_only:
                    return msg
                if msg.topic in HEADS:
                    self.skipped += msg.topic in heads
                    heads[msg.topic] = [msg]
                    continue
                head = _MEANS_OF.get(msg.topic)
                owner = heads[head][0] if head in heads else latest if msg.topic == "roi" else None
                if owner is not None:
                    if _belongs(msg, owner):  # kept for the next call, in order
                        if head is None:
                            latest_roi = msg
                        else:
                            heads[head][1:] = [msg]
                    continue  # else an older (skipped) prediction's region means
                if msg.topic != "prediction":
                    if latest is None and not heads:
                        return msg
                    continue  # latest_only: status/metadata were recorded in .status/.metadata
                if latest is not None:
                    self.skipped += 1
                latest, latest_roi = msg, None
            if latest is not None or heads:
                found = [m for m in (latest, latest_roi) if m is not None]
                self._held.extend([*found, *(m for kept in heads.values() for m in kept)])
                return self._held.popleft()
            self._drain_monitor()
            if self._stopped.is_set():
                return None
            wait = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
            if wait <= 0:
                return None
            self._poller.poll(wait * 1000)

    def __iter__(self) -> Iterator[Message]:
        while not self._stopped.is_set() and not self._closed:
            msg = self.recv(timeout=None)
            if msg is not None:
                yield msg

    def subscribe(self, *topics: str) -> None:
        """Receive `topics` too from now on (a viewer handed a cortex subscriber adds
        "subcortical"); only from this thread, as `recv`."""
        unknown = set(topics) - set(TOPICS)
        if unknown:
            raise InputError(f"unknown topics {sorted(unknown)}; choose from {sorted(TOPICS)}")
        for name in set(topics) - self.topics:
            self._sock.setsockopt(zmq.SUBSCRIBE, TOPICS[name])
        self.topics = self.topics | set(topics)

    def stop(self) -> None:
        """Make a blocking `recv`/iteration return within 0.25 s (safe from any thread)."""
        self._stopped.set()

    def _accept(self, frames: list[zmq.Frame]) -> Message | None:
        try:
            msg = decode(frames)
        except MessageRejected as exc:
            self._reject(exc.reason, str(exc))
            return None
        msg.received = self.last_received = time.time()
        if msg.topic == "roi" or msg.topic in _MEANS_OF:  # region means ride along their
            self.roi_received += 1  # prediction: no sequence of their own
            return msg if msg.topic in self.topics else None
        if not self._track(msg.header):
            self._reject("stale-seq", f"seq {msg.header['seq']} arrived after a later one")
            return None
        if msg.topic == "prediction":
            self.received += 1
            msg.missed_before, self._pending_missed = self._pending_missed, 0
        elif msg.topic in HEADS:
            self.heads_received += 1
        elif msg.topic == "status":
            self.status = msg.header
        else:
            self.metadata = msg.header
        return msg if msg.topic in self.topics else None

    def _track(self, h: dict[str, Any]) -> bool:
        """Follow each stream's prediction sequence; False for a stale prediction (see class doc)."""
        sid, session = h["stream_id"], h["session"]
        head = h["kind"] in HEADS  # a second head's predictions: a sequence of their own
        key = f"{sid}\0{h['kind']}" if head else sid
        st = self._streams.get(key)
        if st is None or st.session != session:
            if st is not None and not head:
                self.restarts += 1
                log.info("stream %r restarted (new publisher session %s)", sid, session)
            st = self._streams[key] = _Stream(session)
        prediction = h["kind"] == "prediction" or head
        # a prediction `seq` moves the expected seq to seq + 1; heartbeats and metadata tell it
        pos = h["seq"] if prediction else h["next_seq"]
        nxt = pos + 1 if prediction else pos
        if st.expected is None:  # the first message of a session: joining late is not a loss
            self._jumped(st, _Jump(0, pos, None), nxt)
            return True
        if pos >= st.expected:
            if pos > st.expected:
                gap = self._gap(sid, session, st.expected, pos - st.expected)
                self._jumped(st, _Jump(st.expected, pos, gap), nxt)
            else:
                st.expected = nxt
                if prediction and st.jumps:
                    st.confirm_left -= 1
                    if st.confirm_left <= 0:
                        st.jumps.clear()  # the jump was real
            st.stale_run = 0
            return True
        # behind the expected seq: does it continue the sequence from before a tentative jump?
        for i in range(len(st.jumps) - 1, -1, -1):
            jump = st.jumps[i]
            if jump.start <= pos < jump.end:
                self._resync(st, sid, session, i, pos, nxt)
                return True
        if not prediction:
            return True  # a heartbeat that lags (or is forged): nothing to follow, kept as is
        st.stale_run = st.stale_run + 1 if pos == st.stale_next else 1
        st.stale_next = pos + 1
        if st.stale_run >= CONFIRM_AFTER:
            self._resync(st, sid, session, None, pos, nxt)
            return True
        return False

    def _jumped(self, st: _Stream, jump: _Jump, nxt: int) -> None:
        if len(st.jumps) >= _MAX_JUMPS:
            del st.jumps[1]  # keep the oldest: it holds the sequence from before the first jump
        st.jumps.append(jump)
        st.confirm_left = CONFIRM_AFTER
        st.expected = nxt
        st.stale_run = 0

    def _resync(
        self, st: _Stream, sid: str, session: str, index: int | None, pos: int, nxt: int
    ) -> None:
        """Follow the sequence at `pos` again. `index`: the tentative jump whose start `pos`
        continues (its and later jumps' gaps withdrawn, what was lost from its start to `pos`
        counted); None: a backward run, after a confirmed jump."""
        undone = st.jumps[index:] if index is not None else []
        withdrawn = 0
        for jump in undone:
            if jump.gap is not None:
                self.gaps -= 1
                self.missed -= jump.gap.count
                withdrawn += jump.gap.count
                with contextlib.suppress(ValueError):  # unless rotated out of the log
                    self.gap_log.remove(jump.gap)
        self._pending_missed = max(0, self._pending_missed - withdrawn)
        was = st.expected
        if index is not None:
            del st.jumps[index:]
            first = undone[0]
            if first.gap is not None and pos > first.start:  # lost from there until this one
                gap = self._gap(sid, session, first.start, pos - first.start)
                self._jumped(st, _Jump(first.start, pos, gap), nxt)
        else:
            st.jumps.clear()
        st.expected = nxt
        st.confirm_left = CONFIRM_AFTER
        st.stale_run = 0
        self.resyncs += 1
        self._note(
            "resync",
            f"stream {sid!r}: the sequence was at {was} and goes on from {pos}; took the jump "
            "as spurious (a forged or corrupt message?) and resynchronised",
        )

    def _gap(self, sid: str, session: str, first: int, count: int) -> Gap:
        self.gaps += 1
        self.missed += count
        self._pending_missed += count
        gap = Gap(sid, session, first, count, time.time())
        self.gap_log.append(gap)
        self._note("gap", f"missed {count} prediction(s) of {sid!r} from seq {first}")
        return gap

    def _reject(self, reason: str, detail: str) -> None:
        self.rejected += 1
        self.reject_reasons[reason] += 1
        self.last_reject = detail
        self._note(f"reject:{reason}", f"rejected a message: {detail}")

    def _note(self, kind: str, message: str) -> None:
        if kind in self._warned:
            log.debug(message)
        else:
            self._warned.add(kind)
            log.warning("%s (further ones are counted, see Subscriber.stats)", message)

    def _drain_monitor(self) -> None:
        while True:
            try:
                event = recv_monitor_message(self._mon, zmq.NOBLOCK)
            except zmq.Again:
                return
            kind = event["event"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connects += 1
            elif kind == zmq.EVENT_DISCONNECTED:
                self.disconnects += 1
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.auth_failures += 1
                self.last_error = (
                    "the publisher refused our CURVE key: it is not on the publisher's allow-list "
                    "(ask for it to be added with --allow-client), or the server key is wrong"
                )
                self._note("auth", self.last_error)
            else:
                self.last_error = (
                    "security handshake failed: one side uses CURVE and the other does not, or "
                    "the server key is wrong"
                )
                self._note("handshake", self.last_error)

    # -- state ------------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, Any]:
        """All counters, for display or logging."""
        stats = {name: getattr(self, name) for name in _STATS}
        return stats | {"reject_reasons": dict(self.reject_reasons)}

    @property
    def alive(self) -> bool:
        """True if anything valid (heartbeats come at 1 Hz) arrived in the last 3 seconds."""
        return self.last_received is not None and time.time() - self.last_received < 3.0

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stopped.set()
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disable_monitor()
        self._mon.close(linger=0)
        self._sock.close(linger=0)
        if self._own_ctx:
            self._ctx.term()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def subscriber_from_args(args: argparse.Namespace, url: str, **kwargs: Any) -> Subscriber:
    """A Subscriber with the CURVE options of `add_subscriber_arguments`."""
    keys = {"curve_server_key": args.curve_server_key, "curve_keypair": args.curve_keypair}
    return Subscriber(url, **keys, **kwargs)
