"""`tribe-stream serve --ray`: the command as a user runs it, on a local (loopback) Ray cluster of
two replicas (demo weights). Two file streams added through the control endpoint land on the two
replicas; a Subscriber on the URLs the answers give hears both; one is ended; Ctrl-C exits 130
with the cluster's processes gone. And the one-line refusals, before any cluster starts."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tribe_stream.cli import main
from tribe_stream.client import Subscriber
from tribe_stream.errors import install_hint
from tribe_stream.stream.control import request

CLIP_S = 20


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--streams", "2"], "--streams N is not taken there"),
        (["--out", "x"], "--out DIR is not taken there; subscribe"),
        (["--publish", "tcp://127.0.0.1:5999"], "--publish URL is not taken there"),
        (["--device", "cpu"], "--device is not taken there; Ray gives each replica its GPU"),
        (["--curve-secret", "k.key"], "--curve-secret is not taken there"),
    ],
)
def test_options_that_mean_nothing_on_ray_are_refused_in_one_line(extra, says, tmp_path, capsys):
    clip = tmp_path / "clip.mp4"  # never read: the refusal comes first
    assert main(["serve", "--ray", "--file", str(clip), *extra]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1, err


def test_ray_missing_nothing_to_serve_and_replicas_without_ray(tmp_path, capsys, monkeypatch):
    assert main(["serve", "--replicas", "2", "--file", "x.mp4"]) == 2
    assert "--replicas N spreads streams over Ray Serve: add --ray" in capsys.readouterr().err
    assert main(["serve", "--ray"]) == 2
    assert "nothing to serve" in capsys.readouterr().err
    assert main(["serve", "--ray", "--file", str(tmp_path / "none.mp4")]) == 2
    assert "none.mp4" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: `import ray` fails
    assert main(["serve", "--ray", "--control", "tcp://127.0.0.1:5999"]) == 2
    err = capsys.readouterr().err
    assert install_hint("ray") in err and len(err.strip().splitlines()) == 1, err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> set[int]:
    import psutil

    return {p.pid for p in psutil.Process(pid).children(recursive=True)}


def _alive(pids: set[int]) -> set[int]:
    import psutil

    left = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                left.add(pid)
        except psutil.NoSuchProcess:
            pass
    return left


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None or importlib.util.find_spec("fastapi") is None,
    reason="needs Ray Serve: pip install 'ray[serve]'",
)
def test_serve_ray_takes_streams_through_control_and_stops_cleanly_on_ctrl_c(tmp_path):
    from tribe_stream.sources.clip import make_clip

    clip = str(make_clip(tmp_path / "clip.mp4", float(CLIP_S), width=96, height=64))
    url = f"tcp://127.0.0.1:{_free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # another cluster's
    cmd = [sys.executable, "-m", "tribe_stream.cli", "serve", "--ray", "--replicas", "2",
           "--control", url, "--checkpoint", "demo", "--no-text", "--max-streams", "4"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=tmp_path)  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    sub = None
    try:
        deadline = time.monotonic() + 300
        while True:  # busy ("the replicas are starting") until the cluster is up
            a = request(url, {"add": {"file": clip, "stream_id": "a"}}, timeout=120)
            if not a.get("busy") or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(1.0)
        assert a["ok"], (a, lines)
        b = request(url, {"add": {"file": clip}}, timeout=120)
        assert b["ok"] and b["stream_id"] == "tribe-stream-0", b  # named over the cluster
        assert a["replica"] != b["replica"], (a, b)  # the one with the most room
        urls = {a["url"], b["url"]}
        assert all(u.startswith("tcp://127.0.0.1:") for u in urls), urls  # loopback only
        listed = request(url, {"list": True})
        assert sorted(listed["streams"]) == ["a", "tribe-stream-0"], listed
        assert listed["urls"] == {"a": a["url"], "tribe-stream-0": b["url"]}

        sub = Subscriber(sorted(urls), topics=("prediction", "status"))
        heard: dict[str, set[int]] = {"a": set(), "tribe-stream-0": set()}
        ended: set[str] = set()
        deadline = time.monotonic() + 120
        while min(map(len, heard.values())) < 2 and time.monotonic() < deadline:
            msg = sub.recv(timeout=1.0)
            if msg is not None and msg.topic == "prediction":
                heard[msg.stream_id].add(msg.second)
                assert msg.values.shape == (20484,)
        assert min(map(len, heard.values())) >= 2, (heard, lines)

        assert request(url, {"end": "a"}) == {"ok": True}
        assert request(url, {"end": "a"}) == {"ok": False}  # gone already
        assert request(url, {"list": True})["streams"] == ["tribe-stream-0"]
        deadline = time.monotonic() + 60
        while "a" not in ended and time.monotonic() < deadline:
            msg = sub.recv(timeout=1.0)  # its replica says it ended, before the clip's end
            if msg is not None and msg.topic == "status" and msg.header.get("ended"):
                ended.add(msg.stream_id)
            elif msg is not None and msg.topic == "prediction":
                heard[msg.stream_id].add(msg.second)
        assert "a" in ended, (heard, lines)
        assert max(heard["a"]) < CLIP_S - 1, heard  # ended early, not at the clip's end

        ray = _descendants(proc.pid)
        assert ray, "no Ray process under the command"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130, lines
        reader.join(10)
        deadline = time.monotonic() + 60
        while _alive(ray) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _alive(ray), (_alive(ray), lines)  # the cluster shut down with it
    finally:
        if sub is not None:
            sub.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(lines)
    assert "stopped by SIGINT" in out and "Traceback" not in out, out
    assert "2 replicas: tcp://127.0.0.1:" in out and "control on " + url in out, out
