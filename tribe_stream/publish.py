"""ZeroMQ publisher: a `Sink` that puts predictions on the wire and never blocks the pipeline.

One XPUB socket; `send` and `status` never block: a subscriber past its high-water mark loses
messages (and sees the gap in `seq`), and whatever ZeroMQ refuses is counted in the heartbeat. A
small thread greets each new subscription with the metadata, and counts subscribers per
connection (a socket monitor tells them apart: repeated subscribe frames do not count twice).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import SimpleNamespace
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from tribe_stream.clock import StreamClock
from tribe_stream.errors import InputError
from tribe_stream.protocol import (
    DEFAULT_URL,
    DTYPES,
    FSAVERAGE5,
    HEADS,
    RESERVED_KEYS,
    TOPICS,
    PredictionEncoder,
    check_endpoint,
    encode_metadata,
    encode_roi,
    encode_status,
    is_local,
    jsonable,
    load_allowed_keys,
    load_keypair,
    stream_metadata,
)
from tribe_stream.types import Prediction, Sink

log = logging.getLogger(__name__)

SUBSCRIPTION_POLL_S = 0.05
"""How often the publisher looks for new subscribers (and greets them with the metadata)."""


def _model_identity(model: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if model is None:
        return {}
    if isinstance(model, str):
        return {"name": model}
    try:
        return jsonable(model)
    except TypeError as exc:
        raise InputError(f"model identity must be a name or JSON data: {exc}") from None


def region_metadata(atlas: Any, over: str = "vertices") -> dict[str, Any]:
    """The metadata's `regions` entry for an atlas: its id (a digest of the names), its name
    (`destrieux`, or its files'), the names in payload order, and what the numbers are."""
    import hashlib

    names = list(atlas.names)
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    named = {"name": atlas.name} if getattr(atlas, "name", "") else {}
    return {
        "atlas": digest,
        **named,
        "names": names,
        "units": f"predicted BOLD, per-run z-score units: the mean over each region's {over}",
    }


class Publisher(Sink):
    """Publish predictions, 1 Hz status heartbeats and stream metadata (docs/PROTOCOL.md).

    `curve_secret_key` (a `NAME.key_secret` file or Z85 secret) turns on CURVE encryption and
    `allowed_client_keys` (keys, `*.key` files or folders of them) limits who may connect (else
    anyone with the server's public key). `hwm`: the per-subscriber queue before ZeroMQ drops.
    `clock` (the pipeline's StreamClock): headers carry `t0_wall` and a stream-clock publish
    time. Thread-safe.
    """

    heads = True  # a second head goes out on its own topic (`add_head`)

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        dtype: str = "float16",
        stream_id: str | None = None,
        model: str | Mapping[str, Any] | None = None,
        curve_secret_key: Any = None,
        allowed_client_keys: Any = None,
        hwm: int = 1000,
        linger_s: float = 1.0,
        clock: StreamClock | None = None,
        atlas: Any = None,
    ):
        if dtype not in DTYPES:
            raise InputError(f"dtype {dtype!r} is not supported; use one of {sorted(DTYPES)}")
        if allowed_client_keys is not None and curve_secret_key is None:
            raise InputError("a client allow-list needs CURVE: pass the server's secret key too")
        self.dtype = dtype
        self.session = secrets.token_hex(8)
        self.curve_public_key: bytes | None = None
        self.atlas = atlas  # a tribe_stream.regions.Atlas: each prediction's region means too
        self._head_atlases: dict[str, Any] = {}  # head -> its structures' Atlas (`add_head`)
        extra = {"regions": region_metadata(atlas)} if atlas is not None else {}
        t0_wall = clock.t0_wall if clock is not None else None
        model = _model_identity(model)
        self._init_stream(
            stream_id or "tribe-stream", clock, model, dict(FSAVERAGE5), t0_wall, extra
        )
        self._subscribers = 0
        # connection fd -> the prefixes it subscribed to that cover the prediction topic
        self._peers: dict[int, set[bytes]] = {}
        self._mon: zmq.Socket | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._ctx = zmq.Context()
        self._auth = None
        try:
            self._sock = self._open(url, hwm, linger_s, curve_secret_key, allowed_client_keys)
        except BaseException:
            if self._auth is not None:
                self._auth.stop()
            self._ctx.destroy(linger=0)  # closes the monitor socket too
            raise
        self.url = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        if not is_local(self.url) and curve_secret_key is None:
            log.warning(
                "publishing on %s without CURVE: anyone who can reach it can read the stream "
                "(make keys with `tribe-stream keys DIR`)",
                self.url,
            )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tribe-publisher", daemon=True)
        self._thread.start()

    def _open(self, url, hwm, linger_s, curve_secret_key, allowed_client_keys) -> zmq.Socket:
        check_endpoint(url)  # tcp://127.0.0.1:99999 would bind some other port
        sock = self._ctx.socket(zmq.XPUB)
        sock.setsockopt(zmq.SNDHWM, int(hwm))
        sock.setsockopt(zmq.LINGER, int(linger_s * 1000))
        sock.setsockopt(zmq.XPUB_VERBOSER, 1)  # every subscribe and unsubscribe, for counting
        sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 5000)
        # Connections come and go on the monitor (the value is the connection's fd, which each
        # subscription notice also carries as ZMQ_SRCFD). Unbounded queue: no event is dropped.
        addr = f"inproc://tribe-publisher-monitor-{secrets.token_hex(8)}"
        sock.monitor(addr, zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self._mon = self._ctx.socket(zmq.PAIR)
        self._mon.setsockopt(zmq.RCVHWM, 0)
        self._mon.setsockopt(zmq.LINGER, 0)
        self._mon.connect(addr)
        if curve_secret_key is not None:
            from zmq.auth.thread import ThreadAuthenticator

            public, secret = load_keypair(curve_secret_key)
            self._auth = ThreadAuthenticator(self._ctx, log=log.getChild("auth"))
            self._auth.start()
            if allowed_client_keys is None:
                self._auth.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
            else:
                if isinstance(allowed_client_keys, str | bytes) or not isinstance(
                    allowed_client_keys, Iterable
                ):
                    allowed_client_keys = [allowed_client_keys]
                keys = load_allowed_keys(allowed_client_keys)  # a ZAP credentials provider:
                allow = SimpleNamespace(callback=lambda domain, key: key in keys)
                self._auth.configure_curve_callback(domain="*", credentials_provider=allow)
            sock.curve_secretkey = secret
            sock.curve_publickey = public
            sock.curve_server = True
            self.curve_public_key = public
        try:
            sock.bind(url)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            if exc.errno == zmq.EADDRINUSE:
                raise InputError(
                    f"{url} is already in use (another tribe-stream publisher?): stop it or "
                    "publish on another port, e.g. tcp://127.0.0.1:5557"
                ) from None
            raise InputError(f"cannot publish on {url}: {exc}") from None
        return sock

    # -- metadata ---------------------------------------------------------------------------

    def _init_stream(self, stream_id, clock, model, mesh, t0_wall, extra) -> None:
        """The state each stream on the socket has of its own (this one, or a `channel`)."""
        self.stream_id, self._clock, self._model, self._mesh = stream_id, clock, model, mesh
        self._t0_wall, self._extra = t0_wall, extra
        self._metadata, self._encoder, self._heads = self._build()
        self._seq = dict.fromkeys(TOPICS, 0)
        self._counts = {"sent": 0, "dropped": 0, "errors": 0, "status_sent": 0, "metadata_sent": 0}
        self._channels: list[Publisher] = []  # more streams on this socket (`channel`)
        self._warned: set[str] = set()

    def _build(self) -> tuple[dict[str, Any], PredictionEncoder, dict[str, PredictionEncoder]]:
        """The metadata and the prediction encoders (the cortex's, each head's) of the stream
        as it is now."""
        ids = dict(stream_id=self.stream_id, dtype=self.dtype, model=self._model, mesh=self._mesh)
        ids["t0_wall"] = self._t0_wall
        encoder = PredictionEncoder(session=self.session, **ids)
        heads = {
            name: PredictionEncoder(
                session=self.session,
                **{**ids, "mesh": None},
                space={k: space[k] for k in ("name", "kind", "n_outputs") if k in space},
            )
            for name, space in self._extra.get("spaces", {}).items()
        }
        return stream_metadata(**ids, extra=self._extra), encoder, heads

    def add_head(self, space: Any, *, mask: Any = None) -> None:
        """Publish a second head's predictions too: `send(Prediction(space=NAME))` goes out on
        its own topic (`tribe.subcortical`; cortex subscribers never see it), announced in the
        metadata's `spaces`. `space`: a `spaces.OutputSpace` (or {name, kind, n_outputs});
        `mask`: its `spaces.VolumeMask`, for the grid in the metadata and each prediction's
        structure means on `tribe.structures`. Call before `channel()` (channels copy heads)."""
        from tribe_stream.spaces import space_metadata

        info = dict(space) if isinstance(space, Mapping) else space_metadata(space)
        name = info.get("name")
        if name not in HEADS:
            raise InputError(f"head {name!r} has no topic; known heads: {sorted(HEADS)}")
        atlas = None
        if mask is not None:
            from tribe_stream.regions import structure_atlas

            if len(mask) != info.get("n_outputs"):
                raise InputError(
                    f"the mask has {len(mask):,} voxels but the {name} head {info.get('n_outputs')}"
                )
            atlas = structure_atlas(mask.structures, "harvard-oxford-subcortical")
            info.update(atlas=mask.source.rsplit("/", 1)[-1], grid=list(mask.shape),
                        affine=mask.affine.tolist(), regions=region_metadata(atlas, "voxels"))  # fmt: skip
        with self._lock:
            spaces = {**self._extra.get("spaces", {}), name: jsonable(info)}
            saved = self._extra.get("spaces")
            self._extra["spaces"] = spaces
            try:
                self._metadata, self._encoder, self._heads = self._build()
            except BaseException:
                self._extra.pop("spaces") if saved is None else self._extra.update(spaces=saved)
                raise
            if atlas is not None:
                self._head_atlases[name] = atlas
            if not self._closed:
                self._send_metadata(time.time())

    @property
    def metadata(self) -> dict[str, Any]:
        """What late joiners are told (the metadata topic's header, less the per-message fields)."""
        return dict(self._metadata)

    def set_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Set stream metadata and announce it at once.

        Known keys: `stream_id` (str), `model` (name or dict: identity of the weights and
        engine), `mesh` (dict), `t0_wall` (Unix time of stream time 0); any other key must be
        JSON data and is passed on as is.
        """
        extra = {}
        for key, value in metadata.items():
            if key in ("stream_id", "model", "mesh", "t0_wall"):
                continue
            if key in RESERVED_KEYS:
                raise InputError(f"metadata key {key!r} is set by the publisher itself")
            try:
                extra[key] = jsonable(value)
            except TypeError as exc:
                raise InputError(f"metadata {key!r} is not JSON data: {exc}") from None
        with self._lock:
            saved = (self.stream_id, self._model, self._mesh, self._t0_wall, dict(self._extra))
            try:
                self.stream_id = str(metadata.get("stream_id", self.stream_id))
                self._model = _model_identity(metadata.get("model", self._model))
                self._mesh = jsonable(metadata.get("mesh", self._mesh))
                if "t0_wall" in metadata:
                    t0 = metadata["t0_wall"]
                    try:
                        self._t0_wall = None if t0 is None else float(t0)
                    except (TypeError, ValueError):
                        raise InputError(f"t0_wall must be a Unix time, got {t0!r:.40}") from None
                self._extra.update(extra)
                new_metadata, new_encoder, new_heads = self._build()
                big = 2**63 - 1  # what subscribers would reject (too deep, too big) is refused
                encode_metadata(new_metadata, stream_id=self.stream_id, session=self.session,
                                seq=big, publish_wall=time.time(), next_seq=big)  # fmt: skip
            except BaseException:
                self.stream_id, self._model, self._mesh, self._t0_wall, self._extra = saved
                raise
            self._metadata, self._encoder, self._heads = new_metadata, new_encoder, new_heads
            if not self._closed:
                self._send_metadata(time.time())

    # -- Sink -------------------------------------------------------------------------------

    def send(self, prediction: Prediction) -> None:
        """Publish one prediction; never blocks, never raises (failures are counted and logged).
        A second head's (`prediction.space`, declared by `add_head`) goes on its own topic."""
        wall = time.time()
        publish_time = self._clock.now() if self._clock is not None else None
        with self._lock:
            if self._closed:
                self._fail("closed", "send() after close(): prediction dropped")
                return
            if prediction.space is not None:
                self._send_head(prediction, wall, publish_time)
                return
            seq = self._seq["prediction"]
            self._seq["prediction"] = seq + 1  # a failed send leaves a gap subscribers can see
            try:
                frames = self._encoder.encode(
                    prediction, seq=seq, publish_wall=wall, publish_time=publish_time
                )
            except Exception as exc:  # a bad prediction must not stop the stream
                self._fail("encode", f"prediction for second {prediction.second} not sent: {exc}")
                return
            if self._send(frames):
                self._counts["sent"] += 1
            if self.atlas is not None:
                self._send_roi(prediction, wall, seq)

    def _send_head(self, prediction: Prediction, wall: float, publish_time: Any) -> None:
        """A second head's prediction on its topic, then its structure means (with the lock)."""
        encoder = self._heads.get(str(prediction.space))
        if encoder is None:
            known = sorted(self._heads) or "none: call add_head first"
            self._fail("head", f"no head {prediction.space!r} (declared: {known}): not sent")
            return
        topic, roi_topic = HEADS[encoder.topic]
        seq = self._seq[topic]
        self._seq[topic] = seq + 1
        try:
            frames = encoder.encode(
                prediction, seq=seq, publish_wall=wall, publish_time=publish_time
            )
        except Exception as exc:  # noqa: BLE001 - a bad prediction must not stop the stream
            self._fail("encode", f"{topic} prediction of second {prediction.second}: {exc}")
            return
        if self._send(frames):
            self._counts[f"{topic}_sent"] = self._counts.get(f"{topic}_sent", 0) + 1
        atlas = self._head_atlases.get(topic)
        if atlas is not None:
            digest = self._extra["spaces"][topic]["regions"]["atlas"]

            def encode(**ids: Any) -> list[bytes]:
                means = atlas.means(prediction.values)
                return encode_roi(means, prediction, atlas=digest, prediction_seq=seq,
                                  topic=roi_topic, **ids)  # fmt: skip

            what = f"structure means of second {prediction.second}"
            self._emit(roi_topic, encode, what, f"{roi_topic}_sent", wall)

    def _send_roi(self, prediction: Prediction, wall: float, prediction_seq: int) -> None:
        """The region means of a prediction just sent, on `tribe.roi` (call with the lock)."""

        def encode(**ids: Any) -> list[bytes]:
            atlas = self._extra["regions"]["atlas"]
            means = self.atlas.means(prediction.values)
            return encode_roi(means, prediction, atlas=atlas, prediction_seq=prediction_seq, **ids)

        self._emit("roi", encode, f"region means of second {prediction.second}", "roi_sent", wall)

    def status(self, counters: Mapping[str, float]) -> None:
        """Publish a heartbeat with the pipeline's counters plus ours, then the metadata again."""
        wall = time.time()
        stream_time = self._clock.now() if self._clock is not None else None
        with self._lock:
            if self._closed:
                return
            merged = dict(counters)
            merged.update({f"publisher.{k}": v for k, v in self._counts.items()})
            merged["publisher.subscribers"] = self._subscribers
            next_seq = self._seq["prediction"]
            self._emit("status", encode_status, "heartbeat", "status_sent", wall, counters=merged,
                       next_seq=next_seq, stream_time=stream_time)  # fmt: skip
            self._send_metadata(wall)

    def close(self) -> None:
        """Stop publishing: a last heartbeat for each stream (`ended`: consumers know it ended,
        not just went quiet), then waits up to `linger_s` for queued messages to leave."""
        with self._lock:
            if self._closed:
                return
            for stream in (self, *self._channels):
                own = {f"publisher.{k}": v for k, v in stream._counts.items()}
                stream._emit("status", encode_status, "last heartbeat", "status_sent",
                             time.time(), counters=own, next_seq=stream._seq["prediction"],
                             stream_time=None, ended=True)  # fmt: skip
            self._closed = True
        self._stop.set()
        self._thread.join(timeout=2.0)
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disable_monitor()
        if self._mon is not None:
            self._mon.close(linger=0)
        self._sock.close()
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()

    def channel(self, stream_id: str, clock: StreamClock | None = None) -> Publisher:
        """Another stream on this publisher's socket (`tribe-stream serve`): its own `stream_id`,
        prediction `seq` (contiguous per stream), metadata and heartbeats, and `clock` when it
        has its own; closed with this publisher (its own `close` does nothing)."""
        ch = _Channel(self, str(stream_id), clock)
        with self._lock:
            self._channels.append(ch)
        return ch

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- introspection ----------------------------------------------------------------------

    @property
    def counters(self) -> dict[str, int]:
        """sent, dropped (refused by ZeroMQ), errors, status_sent, metadata_sent, subscribers."""
        with self._lock:
            return {**self._counts, "subscribers": self._subscribers}

    @property
    def subscribers(self) -> int:
        """Connections (TCP or IPC) subscribed to the prediction topic, each counted once however
        many subscribe frames it sends; updated every SUBSCRIPTION_POLL_S."""
        return self._subscribers

    def wait_for_subscribers(self, n: int = 1, timeout: float = 5.0) -> bool:
        """Block until `n` subscribers listen for predictions (for tests, replay and tools)."""
        deadline = time.monotonic() + timeout
        while self._subscribers < n:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    # -- internals (call with the lock held) ---------------------------------------------------

    def _send(self, frames: list[bytes]) -> bool:
        try:
            self._sock.send_multipart(frames, flags=zmq.NOBLOCK)
            return True
        except zmq.Again:
            self._counts["dropped"] += 1
            return False
        except zmq.ZMQError as exc:
            self._fail("zmq", f"ZeroMQ refused a message: {exc}")
            return False

    def _emit(self, topic: str, encode: Callable, what: str, counter: str, wall, **kw) -> None:
        """`encode(**kw)` with this stream's ids and the topic's next seq, sent; a failure is
        counted and logged."""
        try:
            ids = dict(stream_id=self.stream_id, session=self.session, publish_wall=wall)
            frames = encode(seq=self._seq[topic], **ids, **kw)
        except Exception as exc:  # noqa: BLE001 - whatever it is, the stream goes on
            self._fail(topic, f"{what} not sent: {exc}")
            return
        self._seq[topic] += 1
        if self._send(frames):
            self._counts[counter] = self._counts.get(counter, 0) + 1

    def _send_metadata(self, wall: float) -> None:
        next_seq = self._seq["prediction"]  # set_metadata checked it: should not fail
        self._emit("metadata", encode_metadata, "metadata", "metadata_sent", wall,
                   metadata=self._metadata, next_seq=next_seq)  # fmt: skip

    def _fail(self, kind: str, message: str) -> None:
        self._counts["errors"] += 1
        if kind in self._warned:
            log.debug(message)
        else:
            self._warned.add(kind)
            log.warning("%s (further ones are counted in status as publisher.errors)", message)

    def _serve(self) -> None:
        """Count subscribers and greet each new metadata subscriber with the metadata."""
        meta = TOPICS["metadata"]
        while not self._stop.wait(SUBSCRIPTION_POLL_S):
            with self._lock:
                if self._closed:
                    return
                greet = False
                seen: list[tuple[int, bool, bytes]] = []
                while True:
                    try:
                        frame = self._sock.recv(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    except zmq.ZMQError:
                        return
                    event = frame.bytes
                    if not event or event[0] not in (0, 1):
                        continue
                    subscribe, prefix = event[0] == 1, event[1:]
                    greet |= subscribe and meta.startswith(prefix)
                    try:
                        fd = frame.get(zmq.SRCFD)
                    except zmq.ZMQError:  # ZeroMQ's own notice for a closed peer (or inproc)
                        continue
                    seen.append((fd, subscribe, prefix))
                    self._subscription(fd, subscribe, prefix)
                self._connections(seen)
                self._subscribers = sum(1 for prefixes in self._peers.values() if prefixes)
                if greet:
                    self._send_metadata(time.time())
                    for ch in self._channels:
                        ch._send_metadata(time.time())

    def _subscription(self, fd: int, subscribe: bool, prefix: bytes) -> None:
        if not TOPICS["prediction"].startswith(prefix):
            return
        prefixes = self._peers.setdefault(fd, set())
        if subscribe:
            prefixes.add(prefix)
        else:
            prefixes.discard(prefix)

    def _connections(self, seen: list[tuple[int, bool, bytes]]) -> None:
        """Apply the monitor's connection events, read after the notices in `seen`: a notice from
        an fd accepted in this batch is the new connection's, applied again after the reset (one
        an old connection on that fd sent just before it closed is the rare miscount)."""
        while True:
            try:
                event = recv_monitor_message(self._mon, zmq.NOBLOCK)
            except zmq.ZMQError:  # zmq.Again: none left
                return
            fd = int(event["value"])
            if event["event"] == zmq.EVENT_ACCEPTED:
                self._peers[fd] = set()
                for sfd, subscribe, prefix in seen:
                    if sfd == fd:
                        self._subscription(fd, subscribe, prefix)
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                self._peers.pop(fd, None)


class _Channel(Publisher):
    """A stream sharing a Publisher's socket, lock and subscriber count (see `channel`)."""

    def __init__(self, parent: Publisher, stream_id: str, clock: StreamClock | None = None):
        self._parent, self.dtype, self.session = parent, parent.dtype, parent.session
        self.curve_public_key, self.url = parent.curve_public_key, parent.url
        self.atlas, self._head_atlases = parent.atlas, parent._head_atlases
        self._lock, self._sock = parent._lock, parent._sock
        t0_wall = clock.t0_wall if clock is not None else parent._t0_wall
        self._init_stream(stream_id, clock or parent._clock, parent._model, dict(parent._mesh),
                          t0_wall, dict(parent._extra))  # fmt: skip

    @property
    def _subscribers(self) -> int:  # type: ignore[override]
        return self._parent._subscribers

    @property
    def _closed(self) -> bool:  # type: ignore[override]
        return self._parent._closed

    def close(self) -> None:
        """This stream leaves the publisher with its last heartbeat (`ended`); the socket is
        the parent's, and stays."""
        with self._lock:
            if self in self._parent._channels:
                self._parent._channels.remove(self)
                if not self._closed:
                    own = {f"publisher.{k}": v for k, v in self._counts.items()}
                    self._emit("status", encode_status, "last heartbeat", "status_sent",
                               time.time(), counters=own, next_seq=self._seq["prediction"],
                               stream_time=None, ended=True)  # fmt: skip
