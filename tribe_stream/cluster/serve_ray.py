"""Live streams spread over a Ray cluster with Ray Serve: one replica per GPU (or per CPU slot),
each holding one serving `Stream` that publishes on its own ZeroMQ URL, bound to its node's
address (the cluster's private network; loopback on a local cluster).

`LiveCluster` (in the driver) places each new stream on the replica with the most room, keeps
which replica holds which stream and its media, and polls the replicas: a replica whose calls
fail with ActorDiedError (or that stops answering) is dead. Its subscribers then hear an `ended`
heartbeat for each of its streams from the cluster's own status publisher (`status_url`; the
dead replica's publisher just went silent), and each stream whose source is a file starts again
from its beginning on a replica with room (a camera or microphone was on the dead node: it is
not restarted). Ray Serve starts a new replica in the dead one's place; the cluster finds it on
its next poll. A `LiveRouter` sends each call to the replica it names (`replica=` a replica id,
or `nth=` for finding them). Serve's HTTP proxy is off: nothing listens beyond the ZeroMQ URLs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tribe_stream.cluster.ray_pool import connect, import_ray
from tribe_stream.errors import InputError
from tribe_stream.options import StreamOptions

log = logging.getLogger("tribe_stream.cluster")
APP = "tribe-live"
MEDIA_KEYS = ("file", "camera", "mic", "stream_id")


def _router() -> type:
    """`LiveRouter`, made on first use: importing Ray Serve imports Ray, which must come after
    `connect` chose loopback for a local cluster."""
    from ray.serve.request_router import RequestRouter

    class LiveRouter(RequestRouter):
        """Each call goes to the replica its `replica=` keyword names (no other), or to the
        `nth=` replica in id order (finding them); else to any."""

        async def choose_replicas(self, candidate_replicas, pending_request=None):
            kw = pending_request.kwargs if pending_request is not None else {}
            if kw.get("replica"):
                return [[r for r in candidate_replicas if r.replica_id.unique_id == kw["replica"]]]
            if kw.get("nth") is not None and candidate_replicas:
                ranked = sorted(candidate_replicas, key=lambda r: r.replica_id.unique_id)
                return [[ranked[kw["nth"] % len(ranked)]]]
            return [candidate_replicas]

    LiveRouter.__module__, LiveRouter.__qualname__ = __name__, "LiveRouter"
    globals()["LiveRouter"] = LiveRouter
    return LiveRouter


def __getattr__(name: str) -> Any:
    if name == "LiveRouter":  # what Serve imports by name, in the driver and its controller
        return _router()
    raise AttributeError(name)


class LiveReplica:
    """The deployment's class: one serving `Stream` kept open in a thread. Every method takes
    `replica`/`nth` (read by `LiveRouter` only)."""

    def __init__(self, options: StreamOptions, max_streams: int | None):
        import ray
        from ray import serve

        from tribe_stream import Stream

        self.id = serve.get_replica_context().replica_id.unique_id
        node = ray.get_runtime_context().get_node_id()  # its address as the cluster knows it
        host = next(n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node)
        self.stream = Stream([], options).publish(f"tcp://{host}:*").serve(max_streams)
        self.session = self.stream.open().__enter__()
        self.max_streams = self.stream.server.max_streams  # None given: what fits, measured
        self.thread = threading.Thread(target=self._run, name="tribe-live", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 300
        while not self.stream.server.running and self.thread.is_alive():
            if time.monotonic() > deadline:
                raise RuntimeError("the serving stream did not start in 300 s")
            time.sleep(0.02)
        self.url = self.stream.publisher.url

    def _run(self) -> None:
        for _ in self.session:  # the predictions go out through the publisher
            pass

    def info(self, **_: Any) -> dict[str, Any]:
        import ray

        name = ray.get_runtime_context().get_actor_name()  # its Ray actor: alive while named
        return {"replica": self.id, "actor": name, "pid": os.getpid(), "url": self.url}

    def room(self, **_: Any) -> int:
        return self.max_streams - len(self.stream.server.ids())

    def add(self, media: dict[str, Any], **_: Any) -> dict[str, Any]:
        from tribe_stream.stream.producer import Media
        from tribe_stream.stream.serve import ServerBusy

        try:
            sid = self.stream.add(Media(**media))
        except ServerBusy as exc:
            return {"busy": True, "error": str(exc)}
        except InputError as exc:  # the media's problem (a missing file, ...): said as it is
            return {"error": str(exc)}
        return {"stream_id": sid, "url": self.url, "replica": self.id}

    def end(self, stream_id: str, **_: Any) -> bool:
        return self.stream.end(stream_id)

    def list(self, **_: Any) -> list[str]:
        return [str(s) for s in self.stream.server.ids()]

    def __del__(self) -> None:
        self.stream.stop()


@dataclass
class Placed:
    """A stream the cluster placed: its media, and where it runs now."""

    media: dict[str, Any]
    replica: str
    url: str
    restarts: int = 0
    since: float = field(default_factory=time.monotonic)


@dataclass
class LiveCluster:
    """Live streams over `replicas` Serve replicas (default: one per GPU, else one) of the
    cluster at `address` (`ray_pool.connect`), each serving up to `max_streams` (None: what it
    measured fits). `status_url`: where the `ended` heartbeats of a dead replica's streams go
    (loopback by default). A stream added without a `stream_id` is named `NAME-0`, `NAME-1`,
    ... (`name`)."""

    options: StreamOptions = field(default_factory=StreamOptions)
    address: str | None = None
    replicas: int | None = None
    max_streams: int | None = None
    cpus_per_replica: float = 1.0
    status_url: str = "tcp://127.0.0.1:*"
    poll_s: float = 0.5
    prune_s: float = 2.0
    """How often the replicas are asked which streams they still serve (ended ones leave)."""
    name: str = "tribe-stream"
    call_timeout_s: float = 60.0
    streams: dict[str, Placed] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    """Live replica id -> its publisher URL."""
    ended: list[str] = field(default_factory=list)
    """Streams reported ended because their replica died (restarted or not)."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._actors: dict[str, str] = {}
        self._named = 0

    def start(self) -> LiveCluster:
        self._owned = connect(self.address)  # before Ray Serve is imported (see `_router`)
        try:
            self._deploy()
        except BaseException:  # a failed start (or a second Ctrl-C) leaves nothing running
            self.close()
            raise
        return self

    def _deploy(self) -> None:
        ray = import_ray()
        try:
            from ray import serve
        except ImportError:
            from tribe_stream.errors import install_hint

            raise InputError(f"live streams on Ray need Ray Serve: {install_hint('ray')}") from None
        from ray.serve.config import RequestRouterConfig

        from tribe_stream.publish import Publisher

        logging.getLogger("ray.serve").setLevel(logging.WARNING)  # not a line per step

        probe = Publisher(self.status_url)  # a bad URL fails here; `*` becomes a fixed port
        self.status_url = probe.url
        probe.close()
        gpus = int(ray.cluster_resources().get("GPU", 0))
        self.n = self.replicas or gpus or 1
        actor = {"num_gpus": 1} if gpus else {"num_cpus": self.cpus_per_replica}
        serve.start(proxy_location="Disabled")
        deployment = serve.deployment(
            LiveReplica,
            name="live",
            num_replicas=self.n,
            ray_actor_options=actor,
            max_ongoing_requests=16,
            request_router_config=RequestRouterConfig(
                request_router_class=f"{__name__}.LiveRouter"
            ),
        )
        self.handle = serve.run(
            deployment.bind(self.options, self.max_streams), name=APP, route_prefix=None
        )
        self._find()
        self._thread = threading.Thread(target=self._watch, name="tribe-live-watch", daemon=True)
        self._thread.start()

    # ----- calls -----

    def _call(self, method: str, *args: Any, timeout: float | None = None, **kw: Any) -> Any:
        response = getattr(self.handle, method).remote(*args, **kw)
        try:
            return response.result(timeout_s=timeout or self.call_timeout_s)
        except TimeoutError:
            response.cancel()  # else it waits in the router for a replica that is gone
            raise

    def _find(self) -> None:
        """Ask each replica in turn who it is (the new ones join `urls`)."""
        for i in range(self.n):
            try:
                info = self._call("info", nth=i)
            except Exception:  # noqa: BLE001 - one still starting or dying: the next poll
                continue
            with self._lock:
                self.urls.setdefault(info["replica"], info["url"])
                self._actors[info["replica"]] = info["actor"]

    def add(self, media: dict[str, Any]) -> dict[str, Any]:
        """Start a stream (`media`: `file`, `camera`, `mic`, `stream_id`) on the replica with
        the most room; `{stream_id, url, replica}`, or `{busy, error}` when every one is full."""
        unknown = set(media) - set(MEDIA_KEYS)
        if unknown:
            raise InputError(f"media keys {sorted(unknown)}: give keys among {list(MEDIA_KEYS)}")
        if not hasattr(self, "_thread"):  # a control endpoint may ask before `start` ends
            return {"busy": True, "error": "busy: the replicas are starting; try again"}
        with self._lock:  # unique over the cluster (each replica would count on its own)
            if not media.get("stream_id"):
                while f"{self.name}-{self._named}" in self.streams:
                    self._named += 1
                media = dict(media, stream_id=f"{self.name}-{self._named}")
                self._named += 1
            elif media["stream_id"] in self.streams:
                sid = media["stream_id"]
                return {"error": f"a stream {sid!r} is running already; give another stream_id"}
        rooms = []
        for rid in list(self.urls):
            try:
                rooms.append((self._call("room", replica=rid, timeout=10.0), rid))
            except Exception as exc:  # noqa: BLE001 - dead or stuck: the watcher decides
                log.warning("replica %s: no room answer (%s)", rid, exc)
        for room, rid in sorted(rooms, reverse=True):
            if room <= 0:
                break
            try:
                got = self._call("add", media, replica=rid)
            except Exception as exc:  # noqa: BLE001
                log.warning("replica %s: the stream did not start (%s)", rid, exc)
                continue
            if "stream_id" in got:
                with self._lock:
                    self.streams[got["stream_id"]] = Placed(media, rid, got["url"])
                return got
            if not got.get("busy"):  # the media's problem: no other replica would do better
                return got
        return {"busy": True, "error": "busy: every replica is serving its most streams; try again"}

    def end(self, stream_id: str) -> bool:
        with self._lock:
            placed = self.streams.pop(stream_id, None)
        return bool(placed) and bool(self._call("end", stream_id, replica=placed.replica))

    def list(self) -> dict[str, str]:
        """Stream id -> the URL it is published on."""
        with self._lock:
            return {sid: p.url for sid, p in self.streams.items()}

    def pids(self) -> dict[str, int]:
        """Replica id -> its process id (on its node)."""
        return {rid: self._call("info", replica=rid)["pid"] for rid in list(self.urls)}

    # ----- a replica that dies -----

    def _watch(self) -> None:
        ray = import_ray()
        pruned = time.monotonic()
        while not self._stop.wait(self.poll_s):
            for rid in list(self.urls):
                try:  # a dead actor's name is free again at once
                    ray.get_actor(self._actors[rid], namespace="serve")
                except ValueError:
                    self._died(rid)
            if len(self.urls) < self.n:
                self._find()
            if time.monotonic() - pruned >= self.prune_s:
                pruned = time.monotonic()
                self._prune()

    def _prune(self) -> None:
        """Forget the streams that ended on their replica (a file played to its end, ...)."""
        for rid in list(self.urls):
            asked = time.monotonic()
            try:
                live = set(self._call("list", replica=rid, timeout=10.0))
            except Exception:  # noqa: BLE001 - dead or stuck: the watcher decides
                continue
            with self._lock:
                for sid in [s for s, p in self.streams.items() if p.replica == rid]:
                    if sid not in live and self.streams[sid].since < asked:
                        del self.streams[sid]

    def _died(self, rid: str) -> None:
        from tribe_stream.publish import Publisher

        with self._lock:
            self.urls.pop(rid, None)
            lost = {sid: p for sid, p in self.streams.items() if p.replica == rid}
            for sid in lost:
                del self.streams[sid]
        log.warning("replica %s died with streams %s", rid, sorted(lost))
        if not lost:
            return
        sids = sorted(lost)
        self.ended.extend(sids)
        pub = Publisher(self.status_url, stream_id=sids[0])
        for sid in sids[1:]:
            pub.channel(sid)
        pub.wait_for_subscribers(1, timeout=3.0)
        pub.close()  # an `ended` heartbeat for each of them
        for sid, placed in lost.items():
            if placed.media.get("file"):  # a file plays again from its start
                got = self.add(placed.media)
                if "stream_id" in got:
                    self.streams[sid].restarts = placed.restarts + 1
                else:
                    log.warning("%s not restarted: %s", sid, got.get("error"))

    def close(self) -> None:
        """Stop the replicas (and the cluster, when `start` started it); also after a `start`
        that failed half-way."""
        if not hasattr(self, "_owned"):
            return
        self._stop.set()
        if hasattr(self, "_thread"):
            self._thread.join(30)
        try:
            from ray import serve

            if hasattr(self, "handle"):
                serve.delete(APP)  # the replicas end their streams; Serve's own actors go with
        finally:  # the cluster (Ray drops this process's stale Serve client when it next starts)
            if self._owned:
                import_ray().shutdown()

    def __enter__(self) -> LiveCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["LiveCluster", "LiveReplica", "Placed"]
