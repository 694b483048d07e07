"""The web viewer's server (aiohttp): the page, the mesh and colormaps, and one WebSocket per page.

Routes: `/` the page, `/static/...` its script and style, `/scene.json` (views, panels,
colormaps, defaults), `/mesh.bin`, `/lut/NAME.bin`, `/stats` (counters, JSON) and `/ws`.

Security (docs/WEB.md): it binds 127.0.0.1 unless told otherwise. Beyond loopback a token is
required (one is made and printed with the URL when none is given) and every HTTP and WebSocket
request checks it (`?token=` once, then an HttpOnly same-site cookie). On loopback the `Host`
header must name loopback (no DNS rebinding), and a WebSocket must come from the page's own
origin (a foreign web page cannot read the stream or send frames). Page messages are parsed by
`wire` with bounded sizes; a bad one is counted by reason and dropped, never fatal.

With `--capture` each capturing page has a stream of its own (`capture.py`), and `CaptureRelay`
sends a page only its own stream: its predictions, region means, status and metadata.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import secrets
import ssl
import threading
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tribe_stream.errors import InputError, install_hint
from tribe_stream.protocol import DEFAULT_URL, check_endpoint
from tribe_stream.surface.colors import COLORMAPS
from tribe_stream.surface.views import VIEWS
from tribe_stream.web import assets
from tribe_stream.web.relay import Page, PageSettings, Relay, page_settings
from tribe_stream.web.wire import (
    MAX_MESSAGE_BYTES,
    Rejected,
    closed_reason,
    encode_json,
    parse_packet,
    parse_text,
)

log = logging.getLogger("tribe_stream.web")

STATIC = resources.files("tribe_stream.web") / "static"
COOKIE = "tribe_web_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
AIOHTTP_HINT = "the web viewer needs aiohttp: {hint}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class WebOptions:
    """How the web viewer serves (the `web` command's flags). `validate()` checks them."""

    url: str = DEFAULT_URL
    """The ZeroMQ stream to show (with capture: where the engine publishes)."""
    host: str = "127.0.0.1"
    port: int = 8080
    """0: any free port (printed)."""
    token: str | None = None
    """Required beyond loopback (made when not given); optional on loopback."""
    capture: bool = False
    cert: str | None = None
    key: str | None = None
    """TLS certificate and key: browsers give the camera only to loopback or https pages."""
    view: str = "both"
    cmap: str = "cold_hot"
    threshold_pct: float = 50.0
    transition_s: float = 0.5
    limits_tau_s: float = 5.0
    subscriber: dict[str, Any] = field(default_factory=dict)
    """Extra Subscriber arguments (CURVE keys)."""

    @property
    def local(self) -> bool:
        return is_loopback(self.host)

    def validate(self) -> WebOptions:
        check_endpoint(self.url, bind=self.capture)
        if self.view not in VIEWS:
            raise InputError(f"unknown view {self.view!r}; choose one of: {', '.join(VIEWS)}")
        if self.cmap not in COLORMAPS:
            raise InputError(
                f"unknown colormap {self.cmap!r}; choose one of: {', '.join(COLORMAPS)}"
            )
        if not 0 <= int(self.port) <= 65535:
            raise InputError(f"--port {self.port}: use 1-65535 (or 0 for any free port)")
        if self.token is not None and (len(self.token) < 8 or not self.token.isprintable()):
            raise InputError("--token must be at least 8 printable characters")
        if not self.local and self.token is None:
            self.token = secrets.token_urlsafe(18)
        if (self.cert is None) != (self.key is None):
            raise InputError("--cert and --key go together (a TLS certificate and its key)")
        for path in (self.cert, self.key):
            if path is not None and not Path(path).is_file():
                raise InputError(f"{path}: no such file (TLS certificate or key)")
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.cert is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as exc:
            raise InputError(f"cannot use the TLS certificate {self.cert}: {exc}") from None
        return ctx


def require_aiohttp():
    try:
        import aiohttp.web as web
    except ImportError:
        raise InputError(AIOHTTP_HINT.format(hint=install_hint("web"))) from None
    return web


def require_web() -> None:
    """What the page needs here: aiohttp, and nilearn (the meshes) and matplotlib (colormaps)."""
    from importlib.util import find_spec

    require_aiohttp()
    for name in ("nilearn", "matplotlib"):
        if find_spec(name) is None:
            raise InputError(f"the web viewer needs {name}: {install_hint('web')}")


class CaptureRelay(Relay):
    """The relay of a `--capture` server: each page sees its own stream only (`page.stream`,
    the `stream_id` it captures into; None: nothing), never another visitor's."""

    def _on_frame(self, frame) -> None:
        self.latest = frame
        self.received += 1
        for page in self._of(frame.header.get("stream_id")):
            page.offer_frame(frame)
            page.last = frame

    def _roi_text(self, msg) -> str:
        body = json.loads(super()._roi_text(msg))
        body["stream_id"] = msg.header.get("stream_id")
        return json.dumps(body)

    def _on_text(self, kind: str, text: str) -> None:
        if kind == "roi":
            for page in self._of(json.loads(text).get("stream_id")):
                page.offer_text(kind, text)
        elif kind == "meta":
            sid = (json.loads(text).get("metadata") or {}).get("stream_id")
            self.texts[f"meta:{sid}"] = text
            for page in self._of(sid):
                page.offer_text(kind, text)

    def _on_status(self, status: dict[str, Any], text: str) -> None:
        self.status = status
        for page in self._of(status.get("stream_id")):
            page.offer_text("status", text)
        if status.get("ended"):  # that stream is over: its metadata goes too
            self.texts.pop(f"meta:{status.get('stream_id')}", None)

    def _of(self, stream_id) -> list[Page]:
        return [p for p in self.pages if p.stream is not None and p.stream == stream_id]

    def join(self, page: Page) -> None:
        page.stream, page.last = None, None
        self.pages.add(page)

    def watch(self, page: Page, stream_id: str | None) -> None:
        """`page` shows `stream_id` from now on (its own capture; None: nothing)."""
        page.stream, page.last = stream_id, None
        meta = self.texts.get(f"meta:{stream_id}")
        if meta is not None:
            page.offer_text("meta", meta)

    def resend(self, page: Page) -> None:
        page.reset_limits()
        if page.last is not None and page.frame is None:
            page.offer_frame(page.last)


class WebServer:
    """The app and its state: the relay, the optional capture engine, what it rejected."""

    heartbeat_s = 20.0
    """A ping this often; a page that answers none within half of it is closed."""

    def __init__(self, options: WebOptions, engine=None) -> None:
        self.opt = options
        self.engine = engine
        relay = CaptureRelay if engine is not None else Relay
        self.relay = relay(options.url, subscriber_kwargs=options.subscriber)
        self.rejected: Counter[str] = Counter()
        self.denied: Counter[str] = Counter()
        self._assets: asyncio.Future | None = None

    # ----- the app -----

    def app(self):
        web = require_aiohttp()
        app = web.Application(middlewares=[self._make_guard()], client_max_size=64 * 1024)
        app.router.add_get("/", self._index)
        app.router.add_get("/scene.json", self._scene)
        app.router.add_get("/mesh.bin", self._mesh)
        app.router.add_get("/lut/{name}.bin", self._lut)
        app.router.add_get("/stats", self._stats)
        app.router.add_get("/ws", self._ws)
        app.router.add_static("/static/", Path(str(STATIC)), show_index=False)
        app.on_startup.append(self._startup)
        app.on_shutdown.append(self._shutdown)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _startup(self, app) -> None:
        loop = asyncio.get_running_loop()
        self._assets = loop.create_future()
        # nilearn's import takes seconds: load in a daemon thread (the server answers at once,
        # and a stop does not wait for it), pages wait for the future
        threading.Thread(
            target=_load_assets, args=(loop, self._assets), name="tribe-web-assets", daemon=True
        ).start()
        self.relay.start(loop)

    async def _shutdown(self, app) -> None:
        """Close every page's socket (their handlers would hold the stop up; pages reconnect)."""
        from aiohttp import WSCloseCode

        for page in list(self.relay.pages):
            await page.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopped")

    async def _cleanup(self, app) -> None:
        self.relay.stop()

    # ----- security -----

    def _deny(self, reason: str, text: str):
        web = require_aiohttp()
        self.denied[reason] += 1
        return web.Response(status=403, text=f"forbidden: {text}\n")

    def _make_guard(self):
        web = require_aiohttp()

        @web.middleware
        async def guard(request, handler):
            try:
                host = urlsplit(f"//{request.host}").hostname or ""
                origin = request.headers.get("Origin")
                foreign = origin is not None and urlsplit(origin).netloc != request.host
            except ValueError:  # `[::1` and the like
                return self._deny("malformed", "a malformed Host or Origin header")
            if self.opt.local and host not in LOOPBACK_NAMES and not is_loopback(host):
                return self._deny("host", "this server answers loopback names only")
            via_query = False
            if self.opt.token is not None:
                token = self.opt.token.encode()
                via_query = hmac.compare_digest((request.query.get("token") or "").encode(), token)
                cookie = request.cookies.get(COOKIE, "").encode()
                if not via_query and not hmac.compare_digest(cookie, token):
                    return self._deny("token", "open the URL with its ?token=... as printed")
            if request.path == "/ws" and foreign:
                return self._deny("origin", "WebSocket from another site")
            response = await handler(request)
            if via_query and not response.prepared:
                response.set_cookie(
                    COOKIE,
                    self.opt.token,
                    httponly=True,
                    samesite="Strict",
                    secure=self.opt.cert is not None,
                )
            return response

        return guard

    # ----- HTTP -----

    async def _index(self, request):
        web = require_aiohttp()
        page = (STATIC / "index.html").read_text()
        return web.Response(text=page, content_type="text/html", headers=_NO_CACHE)

    async def _scene(self, request):
        web = require_aiohttp()
        scene = dict((await self._assets)["scene"])
        scene["defaults"] = {
            "view": self.opt.view,
            "cmap": self.opt.cmap if self.opt.cmap in scene["colormaps"] else "cold_hot",
            "threshold_pct": self.opt.threshold_pct,
            "transition_s": self.opt.transition_s,
        }
        scene["capture"] = self.engine is not None
        scene["url"] = self.opt.url
        return web.json_response(scene, headers=_NO_CACHE)

    async def _mesh(self, request):
        web = require_aiohttp()
        return web.Response(
            body=(await self._assets)["mesh"], content_type="application/octet-stream"
        )

    async def _lut(self, request):
        web = require_aiohttp()
        name = request.match_info["name"]
        if name not in assets.available_colormaps():
            raise web.HTTPNotFound(text=f"no colormap {name[:40]!r}\n")
        return web.Response(body=assets.lut_bytes(name), content_type="application/octet-stream")

    async def _stats(self, request):
        web = require_aiohttp()
        body = {
            "relay": self.relay.stats(),
            "rejected": dict(self.rejected),
            "denied": dict(self.denied),
            "capture": self._capture_stats(),
        }
        return web.json_response(body, headers=_NO_CACHE)

    def _capture_stats(self) -> dict[str, Any] | None:
        if self.engine is None:
            return None
        try:
            return self.engine.stats()
        except RuntimeError:  # counters changing under us: next time
            return {"predictions": self.engine.predictions}

    # ----- the WebSocket -----

    async def _ws(self, request):
        web = require_aiohttp()
        # no permessage-deflate: float noise does not compress, and it costs a thread hop per message
        ws = web.WebSocketResponse(
            max_msg_size=MAX_MESSAGE_BYTES, heartbeat=self.heartbeat_s, compress=False
        )
        await ws.prepare(request)
        page = Page(
            ws,
            PageSettings(cmap=self.opt.cmap, threshold_pct=self.opt.threshold_pct),
            self.opt.limits_tau_s,
        )
        self.relay.join(page)
        pump = asyncio.create_task(self._pump(page))
        capture_session: str | None = None
        try:
            async for msg in ws:
                try:
                    if msg.type == web.WSMsgType.TEXT:
                        capture_session = self._text(page, msg.data, capture_session)
                    elif msg.type == web.WSMsgType.BINARY:
                        self._packet(page, msg.data, capture_session)
                    elif msg.type == web.WSMsgType.ERROR:
                        self._reject(page, Rejected(closed_reason(msg.data), str(msg.data)))
                except Rejected as exc:
                    self._reject(page, exc)
        finally:
            self.relay.leave(page)
            if self.engine is not None:
                self.engine.release(page)
            pump.cancel()
        return ws

    async def _pump(self, page: Page) -> None:
        try:
            await self.relay.pump(page)
        except (ConnectionError, RuntimeError) as exc:  # the page went away mid-send
            log.debug("page gone: %s", exc)

    def _text(self, page: Page, text: str, session: str | None) -> str | None:
        msg = parse_text(text)
        if msg["type"] == "settings":
            settings = page_settings(page.settings, msg)
            if settings != page.settings:  # the newest map again, in its new look
                page.settings = settings
                self.relay.resend(page)
            return session
        if self.engine is None:
            raise Rejected("capture-off", "this server was started without --capture")
        if msg.get("action", "start") == "stop":
            self.engine.release(page)
            page.offer_text("capture", encode_json("capture", {"ok": True, "capturing": False}))
            return None
        why = self.engine.claim(page)
        sid = self.engine.stream_id(page)
        self.relay.watch(page, sid)
        body = {"ok": why is None, "capturing": why is None, "reason": why, "stream_id": sid}
        page.offer_text("capture", encode_json("capture", body))
        return str(msg.get("session", "")) if why is None else None

    def _packet(self, page: Page, data: bytes, session: str | None) -> None:
        if self.engine is None:
            raise Rejected("capture-off", "this server was started without --capture")
        if session is None:
            raise Rejected("not-capturing", "send a capture start message first")
        if not self.engine.offer(page, parse_packet(data, session)):
            raise Rejected("not-capturing", "another page is capturing")

    def _reject(self, page: Page, exc: Rejected) -> None:
        if exc.reason not in self.rejected:
            log.warning(
                "dropped a page message (%s): %s; further ones are counted", exc.reason, exc
            )
        self.rejected[exc.reason] += 1
        body = {"reason": exc.reason, "detail": str(exc)[:200], "count": self.rejected[exc.reason]}
        page.offer_text("rejected", encode_json("rejected", body))

    # ----- serving -----

    async def serve(self, stop: asyncio.Event, on_ready=None) -> None:
        web = require_aiohttp()
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        site = web.TCPSite(
            runner, self.opt.host, int(self.opt.port), ssl_context=self.opt.ssl_context()
        )
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise InputError(
                f"cannot serve on {self.opt.host}:{self.opt.port}: {exc.strerror or exc} "
                "(is another server there? choose --port)"
            ) from None
        try:
            port = runner.addresses[0][1]
            if on_ready is not None:
                on_ready(self.page_url(port))
            await stop.wait()
        finally:
            await runner.cleanup()

    def page_url(self, port: int) -> str:
        scheme = "https" if self.opt.cert else "http"
        host = self.opt.host if ":" not in self.opt.host else f"[{self.opt.host}]"
        token = f"?token={self.opt.token}" if self.opt.token else ""
        return f"{scheme}://{host}:{port}/{token}"


_NO_CACHE = {"Cache-Control": "no-store"}


def _load_assets(loop: asyncio.AbstractEventLoop, future: asyncio.Future) -> None:
    try:
        result: Any = {"scene": assets.scene(), "mesh": assets.mesh_bytes()}
        setter = future.set_result
    except Exception as exc:  # noqa: BLE001 - every page request reports it
        result, setter = exc, future.set_exception
    if not loop.is_closed():
        loop.call_soon_threadsafe(lambda: None if future.done() else setter(result))
