"""The web server's edges, in process: a real aiohttp server on loopback, raw requests and real
WebSockets (no browser; the page itself is tested in test_web.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import socket
import threading
import time

import pytest

aiohttp = pytest.importorskip("aiohttp", reason="pip install 'tribe-stream[web]'")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    """`WebServer.serve` in a thread of its own, on a free loopback port (1 s heartbeat)."""
    from tribe_stream.web.server import WebOptions, WebServer

    srv = WebServer(WebOptions(url=f"tcp://127.0.0.1:{free_port()}", port=0).validate())
    srv.heartbeat_s = 1.0
    ready: queue.Queue = queue.Queue()
    held: dict = {}

    async def main():
        held["loop"], held["stop"] = asyncio.get_running_loop(), asyncio.Event()
        await srv.serve(held["stop"], ready.put)

    def run():
        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            ready.put(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    url = ready.get(timeout=60)
    if isinstance(url, BaseException):
        raise url
    yield srv, url
    held["loop"].call_soon_threadsafe(held["stop"].set)
    thread.join(30)


def raw_status(port: int, head: str) -> int:
    """Send `head` (a request without its final blank line) and read the status it gets."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall((head + "\r\n").encode("latin-1"))
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split()[1])


def stats(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(url + "stats", timeout=10) as r:
        return json.loads(r.read())


def test_malformed_host_or_origin_is_refused_not_a_crash(server, caplog):
    """`Host: [::1` (or such an Origin) raised in the guard: 500 and a traceback in the log."""
    srv, url = server
    port = int(url.rsplit(":", 1)[1].strip("/"))
    here = f"Host: 127.0.0.1:{port}\r\n"
    upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    upgrade += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    with caplog.at_level(logging.DEBUG):
        assert raw_status(port, "GET / HTTP/1.1\r\nHost: [::1\r\nConnection: close\r\n") == 403
        bad_origin = "Origin: http://[::1\r\n"
        assert raw_status(port, f"GET /stats HTTP/1.1\r\n{here}{bad_origin}") == 403
        assert raw_status(port, f"GET /ws HTTP/1.1\r\n{here}{bad_origin}{upgrade}") == 403
        assert raw_status(port, f"GET /stats HTTP/1.1\r\n{here}Connection: close\r\n") == 200
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert stats(url)["denied"]["malformed"] == 3


def test_pages_closed_by_the_heartbeat_are_counted_as_such(server):
    """A page that stops reading answers no ping: aiohttp closes it, and /stats said
    `closed-oversized` for it. Each closed page is counted by its true reason."""
    srv, url = server
    origin = url.rstrip("/")

    async def talk():
        async with aiohttp.ClientSession() as s:
            quiet = await s.ws_connect(url + "ws", origin=origin)  # never reads: no pong
            deadline = time.monotonic() + 20
            while not srv.rejected and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            async with s.ws_connect(url + "ws", origin=origin, max_msg_size=0) as big:
                try:  # beyond aiohttp's limit: the server closes this socket, maybe mid-send
                    await big.send_bytes(b"x" * (5 << 20))
                    while not big.closed:
                        await asyncio.wait_for(big.receive(), 10)
                except ConnectionError:
                    pass
            await quiet.close()

    asyncio.run(talk())
    deadline = time.monotonic() + 10
    while sum(srv.rejected.values()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stats(url)["rejected"] == {"closed-heartbeat": 1, "closed-oversized": 1}
