"""Live streams over a two-replica Ray Serve deployment on a local (loopback) Ray cluster: four
file streams placed two by two; one replica SIGKILLed mid-stream. The survivor's streams go on
with their seconds contiguous; the dead one's are reported ended on the cluster's status URL and
start again from their first second on the survivor."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import threading
import time
from collections import defaultdict

import pytest

from tribe_stream.client import Subscriber
from tribe_stream.cluster.serve_ray import LiveCluster
from tribe_stream.options import StreamOptions

# not imported here: a local cluster chooses loopback only when Ray is imported after `connect`
if importlib.util.find_spec("ray") is None or importlib.util.find_spec("fastapi") is None:
    pytest.skip("needs Ray Serve: pip install 'ray[serve]'", allow_module_level=True)

CLIP_S = 12


class Listener:
    """A Subscriber on every URL in a thread: each (publisher session, stream)'s seconds, and
    the streams heard `ended`."""

    def __init__(self, urls: list[str]):
        self.sub = Subscriber(urls, topics=("prediction", "status"))
        self.got: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.ended: dict[str, str] = {}  # stream id -> the session that said so
        self.cond = threading.Condition()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            msg = self.sub.recv(timeout=0.2)
            if msg is None:
                continue
            with self.cond:
                if msg.topic == "prediction":
                    self.got[(msg.header["session"], msg.stream_id)].append(msg.second)
                elif msg.header.get("ended"):
                    self.ended.setdefault(msg.stream_id, msg.header["session"])
                self.cond.notify_all()

    def seconds(self, sid: str) -> dict[str, list[int]]:
        with self.cond:
            return {s: list(v) for (s, i), v in self.got.items() if i == sid}

    def wait(self, what, timeout: float = 60.0) -> None:
        with self.cond:
            assert self.cond.wait_for(what, timeout), (dict(self.got), self.ended)

    def close(self) -> None:
        self.done.set()
        self.thread.join(10)
        self.sub.close()


def test_a_replica_killed_mid_stream_leaves_the_others_contiguous_and_its_streams_restart(
    tmp_path, request
):
    if "ray" in sys.modules:  # an earlier test of this process imported Ray (with its settings:
        # another cluster's token authentication, no loopback): this one in a fresh interpreter
        import subprocess

        here = f"{__file__}::{request.node.name}"
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", here],
                           capture_output=True, text=True, timeout=600)  # fmt: skip
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
        return
    from tribe_stream.sources.clip import make_clip

    clip = str(make_clip(tmp_path / "clip.mp4", float(CLIP_S), width=96, height=64))
    loopback = True  # Ray imported after `connect`: a local cluster on 127.0.0.1 only
    options = StreamOptions(checkpoint="demo", realtime=True, text=False)
    cluster = LiveCluster(options, replicas=2, max_streams=4, cpus_per_replica=0.5)
    with cluster:
        assert len(cluster.urls) == 2, cluster.urls
        if loopback:
            assert all(u.startswith("tcp://127.0.0.1:") for u in cluster.urls.values()), (
                cluster.urls
            )
        listener = Listener([*cluster.urls.values(), cluster.status_url])
        try:
            time.sleep(1.0)  # the subscriptions reach the publishers
            placed = [cluster.add({"file": clip, "stream_id": f"s{i}"}) for i in range(4)]
            by_replica = defaultdict(list)
            for p in placed:
                by_replica[p["replica"]].append(p["stream_id"])
            assert sorted(len(v) for v in by_replica.values()) == [2, 2], placed
            victim, survivor = list(by_replica)
            for sid in cluster.list():  # every stream is under way
                listener.wait(lambda sid=sid: sum(map(len, listener.seconds(sid).values())) >= 2)
            os.kill(cluster.pids()[victim], signal.SIGKILL)

            lost = by_replica[victim]
            listener.wait(lambda: set(lost) <= set(listener.ended))
            assert sorted(cluster.ended) == sorted(lost)
            for sid in lost:  # restarted on the survivor, from its first second
                listener.wait(lambda sid=sid: len(listener.seconds(sid)) == 2)
                assert cluster.streams[sid].replica == survivor
                assert cluster.streams[sid].restarts == 1
            for sid in by_replica[survivor]:  # the survivor's own streams play to their end
                listener.wait(lambda sid=sid: max(listener.seconds(sid).popitem()[1]) >= CLIP_S - 1)
            (there,) = listener.seconds(by_replica[survivor][0])  # the survivor's session
            for sid in lost:  # their second run goes on there
                listener.wait(lambda sid=sid: len(listener.seconds(sid).get(there, ())) >= 3)
        finally:
            listener.close()
    for sid in by_replica[survivor]:
        (seconds,) = listener.seconds(sid).values()  # one session: never restarted
        assert seconds == list(range(CLIP_S)), (sid, seconds)  # contiguous, to the end
    for sid in lost:
        runs = listener.seconds(sid)
        assert len(runs) == 2, runs  # before the kill, and again on the survivor
        for seconds in runs.values():
            assert seconds == list(range(len(seconds))), (sid, runs)
        assert listener.ended[sid] not in runs  # said by the cluster, not a replica
