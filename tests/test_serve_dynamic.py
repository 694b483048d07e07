"""Streams that come and go in one running server (`Stream.serve`, `add`, `end`): each one that
leaves gives back its threads, sockets and memory; beyond `max_streams` the caller hears
"busy, try again" and the others go on with their seconds contiguous."""

from __future__ import annotations

import gc
import socket
import threading
import time
from collections import Counter

import pytest

from tribe_stream import Stream
from tribe_stream.options import StreamOptions
from tribe_stream.stream.producer import Media
from tribe_stream.stream.serve import ServerBusy, open_fds, rss_mb


def free_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate())


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from tribe_stream.sources.clip import make_clip

    return make_clip(tmp_path_factory.mktemp("dyn") / "clip.mp4", 3.0, width=96, height=64)


class Serving:
    """An open, serving Stream iterated in a thread; `got[sid]` lists each stream's seconds."""

    def __init__(self, max_streams: int, **options):
        options = {"checkpoint": "demo", "realtime": False, "text": False, **options}
        self.url = free_url()
        self.stream = Stream([], StreamOptions(**options)).publish(self.url).serve(max_streams)
        self.got: dict[str, list[int]] = {}
        self.cond = threading.Condition()
        self.session = self.stream.open().__enter__()
        self.thread = threading.Thread(target=self._run, name="test-serving", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.stream.server.running:
            assert time.monotonic() < deadline, "the server never started"
            time.sleep(0.01)

    def _run(self) -> None:
        for p in self.session:
            with self.cond:
                self.got.setdefault(str(p.stream_id), []).append(p.second)
                self.cond.notify_all()

    def wait_seconds(self, sid: str, n: int, timeout: float = 60.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.got.get(sid, [])) >= n, timeout), sid

    def wait_gone(self, sid: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while sid in self.stream.server.ids():
            assert time.monotonic() < deadline, f"{sid} never left"
            time.sleep(0.02)
        assert self.stream.server.released(timeout)

    def close(self) -> None:
        self.stream.stop()
        self.thread.join(60)
        self.session.__exit__(None, None, None)


@pytest.fixture(scope="module")
def serving():
    serving = Serving(max_streams=2)
    yield serving
    serving.close()
    assert serving.stream.server.ids() == []


def test_twenty_streams_one_after_another_give_everything_back(clip, serving):
    for i in range(20):
        sid = serving.stream.add(Media(file=str(clip)))
        serving.wait_gone(sid)
        assert serving.got[sid] == [0, 1, 2], (i, serving.got[sid])
        if i == 0:
            gc.collect()
            first = (rss_mb(), threads(), open_fds())
    gc.collect()
    rss, names, (n_fds, n_socks) = rss_mb(), threads(), open_fds()
    assert rss - first[0] < 50, f"host memory grew {rss - first[0]:.0f} MB over 19 streams"
    # every source and recogniser thread joined, every file and socket closed (compared as
    # "none more": a thread or file an earlier test in this worker left may end meanwhile)
    assert not Counter(names) - Counter(first[1]), Counter(names) - Counter(first[1])
    assert n_fds <= first[2][0] and n_socks <= first[2][1], (n_fds, n_socks, first[2])
    assert not serving.stream.publisher._channels  # every channel left the publisher
    ended = dict(serving.stream.server.history)
    assert len(ended) >= 20 and all(c["predictions"] == 3 for c in ended.values())


def test_beyond_max_streams_the_caller_hears_busy_and_the_others_go_on(clip, serving):
    """Through the control endpoint (loopback ZeroMQ, JSON), as `serve --control` takes them."""
    from tribe_stream.stream.control import ControlServer, request

    camera = "lavfi:testsrc=size=96x64:rate=16"
    url = f"ipc://{clip.parent}/control"
    control = ControlServer(serving.stream, url)
    try:
        assert request(url, {"add": {"camera": camera, "stream_id": "a"}}) == {
            "ok": True,
            "stream_id": "a",
        }
        b = serving.stream.add(Media(camera=camera, stream_id="b"))
        serving.wait_seconds("a", 2)
        busy = request(url, {"add": {"file": str(clip)}})
        assert busy["ok"] is False and busy["busy"] is True
        assert "busy" in busy["error"] and "try again" in busy["error"]
        with pytest.raises(ServerBusy, match="busy.*try again"):
            serving.stream.add(Media(file=str(clip)))
        assert "nothing to listen to" in request(url, {"add": {}})["error"]
        assert "keys among" in request(url, {"add": {"url": "x"}})["error"]
        assert request(url, {"list": True}) == {"ok": True, "streams": ["a", "b"]}
        serving.wait_seconds(b, 3)
        assert request(url, {"end": "a"}) == {"ok": True}
        assert request(url, {"end": "nobody"}) == {"ok": False}
        serving.wait_gone("a")
        c = serving.stream.add(Media(file=str(clip), stream_id="c"))  # room again
        serving.wait_gone(c)
        n = len(serving.got[b])
        serving.wait_seconds(b, n + 2)
        assert serving.stream.end(b)
        serving.wait_gone(b)
    finally:
        control.close()
    for sid in ("a", b, c):
        seconds = serving.got[sid]
        assert seconds == list(range(len(seconds))), (sid, seconds)  # contiguous
    assert len(serving.got["b"]) >= 5


def test_the_control_endpoint_listens_on_loopback_only():
    from tribe_stream.errors import InputError
    from tribe_stream.stream.control import check_control_url

    for url in ("tcp://0.0.0.0:5560", "tcp://*:5560", "tcp://10.0.0.1:5560", "tcp://127.0.0.1"):
        with pytest.raises(InputError, match="--control"):
            check_control_url(url)
    assert check_control_url("tcp://127.0.0.1:5560") == "tcp://127.0.0.1:5560"


def test_serve_refuses_a_control_endpoint_beyond_loopback_in_one_line(clip):
    from conftest import run_cli

    r = run_cli("serve", "--file", str(clip), "--control", "tcp://0.0.0.0:5560", timeout=120)
    assert r.returncode == 2, r.stderr
    assert "loopback only" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("web", "--max-streams", "2", timeout=120)
    assert r.returncode == 2 and "--capture" in r.stderr, r.stderr
