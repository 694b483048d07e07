"""A serving stream's control endpoint: add a stream and end one while it runs (`serve --control`).

ZeroMQ REQ/REP on loopback only (a TCP port of 127.0.0.1 or an `ipc://` path), one JSON object a
request, one JSON answer:

    {"add": {"file": "clip.mp4"}}             -> {"ok": true, "stream_id": "tribe-stream-3"}
    {"add": {"camera": "/dev/video0", "mic": "default", "stream_id": "lab"}}
    {"end": "lab"}                            -> {"ok": true} (false: no such stream)
    {"list": true}                            -> {"ok": true, "streams": ["lab", ...]}

A stream beyond the server's limit is answered `{"ok": false, "busy": true, "error": "busy: ...
try again ..."}`; a bad request `{"ok": false, "error": "..."}` (the problem and the fix).

The same protocol fronts a serving `Stream` (`serve --control`) or any object with `add(media
dict) -> answer dict`, `end(id) -> bool` and `list()` (`LiveCluster`, `serve --ray --control`:
its add answers also say the stream's `url` and `replica`, and list gives `urls`, id -> URL).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import zmq

from tribe_stream.errors import InputError

log = logging.getLogger("tribe_stream.control")

MAX_REQUEST_BYTES = 16 * 1024
MEDIA_KEYS = ("file", "camera", "mic", "stream_id")


def check_control_url(url: str) -> str:
    """Loopback only: `tcp://127.0.0.1:PORT` (or localhost, ::1) or `ipc://PATH`."""
    from urllib.parse import urlsplit

    if url.startswith("ipc://"):
        return url
    parts = urlsplit(url)
    if parts.scheme != "tcp" or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise InputError(
            f"--control {url}: the control endpoint listens on loopback only; give "
            "tcp://127.0.0.1:PORT or ipc://PATH"
        )
    try:
        port = parts.port
    except ValueError:
        port = None
    if not port:
        raise InputError(f"--control {url}: give a port, e.g. tcp://127.0.0.1:5560")
    return url


class StreamControl:
    """A serving `Stream` seen as a control target (`add`, `end`, `list` on media dicts)."""

    def __init__(self, stream):
        self.stream = stream

    def add(self, media: dict[str, str]) -> dict[str, Any]:
        from tribe_stream.stream.producer import Media

        return {"stream_id": self.stream.add(Media(**media))}  # ServerBusy: busy

    def end(self, stream_id: str) -> bool:
        return self.stream.end(stream_id)

    def list(self) -> list[str]:
        return self.stream.server.ids()


class ControlServer:
    """Answers control requests in a thread of its own for `target`: a serving `Stream`, or
    any object with `add(media dict) -> {stream_id, ...} or {busy/error}`, `end(id) -> bool`
    and `list() -> ids or {id: url}` (a `LiveCluster`)."""

    def __init__(self, target, url: str):
        from tribe_stream.stream.producer import Stream

        self.target = StreamControl(target) if isinstance(target, Stream) else target
        self.url = check_control_url(url)
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.REP)
        self._sock.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        self._sock.setsockopt(zmq.LINGER, 0)
        try:
            self._sock.bind(self.url)
        except zmq.ZMQError as exc:
            self._sock.close()
            self._ctx.term()
            raise InputError(f"cannot listen for control on {self.url}: {exc}") from None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tribe-control", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._sock.poll(100):
                continue
            try:
                raw = self._sock.recv()
            except zmq.ZMQError:
                continue
            try:
                answer = self.answer(json.loads(raw))
            except (ValueError, TypeError, UnicodeDecodeError):
                answer = {
                    "ok": False,
                    "error": 'send one JSON object: {"add": {...}} or {"end": ID}',
                }
            except Exception as exc:  # noqa: BLE001 - answered: the endpoint keeps serving
                log.warning("control request failed", exc_info=True)
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            try:
                self._sock.send(json.dumps(answer).encode())
            except zmq.ZMQError as exc:
                log.warning("control answer not sent: %s", exc)

    def answer(self, req: Any) -> dict[str, Any]:
        """The answer to one request (see the module docs)."""
        from tribe_stream.stream.serve import ServerBusy

        if not isinstance(req, dict):
            raise TypeError("not an object")
        try:
            if "add" in req:
                spec = req["add"]
                if not isinstance(spec, dict) or not set(spec) <= set(MEDIA_KEYS):
                    raise InputError(f"add takes an object with keys among {', '.join(MEDIA_KEYS)}")
                if not all(isinstance(v, str) for v in spec.values()):
                    raise InputError("add: every value is a string")
                got = self.target.add(spec)
                if "stream_id" not in got:  # busy, or the media's problem
                    return {"ok": False, **got}
                return {"ok": True, **got}
            if "end" in req:
                return {"ok": bool(self.target.end(str(req["end"])))}
            if "list" in req:
                streams = self.target.list()
                if isinstance(streams, dict):  # id -> the URL it is published on
                    return {"ok": True, "streams": list(streams), "urls": streams}
                return {"ok": True, "streams": list(streams)}
        except ServerBusy as exc:
            return {"ok": False, "busy": True, "error": str(exc)}
        except InputError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": False, "error": "unknown request: give add, end or list"}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        self._ctx.term()


def request(url: str, message: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one control request and wait for its answer (a client for `ControlServer`)."""
    with zmq.Context() as ctx, ctx.socket(zmq.REQ) as sock:
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(url)
        sock.send(json.dumps(message).encode())
        if not sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"no answer from {url} within {timeout:g} s")
        return json.loads(sock.recv())
