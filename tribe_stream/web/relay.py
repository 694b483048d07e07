"""The ZeroMQ stream to every open page, latest-only.

One `Subscriber` (with the region-means topic) runs in a thread and hands each message to the
server's event loop. Every page (`Page`) holds at most one prediction waiting to be sent: a newer
one replaces it (the older counted as skipped), so a slow page never holds up the stream or the
other pages. A page that joins late gets the newest prediction, metadata, region means and status.

Colour limits are the viewer's: `surface.colors.robust_limits` per prediction (with the page's
colormap and threshold percentile), smoothed over `limits_tau_s` with `ColorLimits.blend`, and
sent with each prediction, so the page's shader only maps values through them.

A stream's subcortical head (`tribe.subcortical`) reaches each page as its three slices, drawn
here in the page's colormap (`viewer/slices.py`, the atlas from our cache or `$FSLDIR`; its own
limits) and sent as RGBA (a `subcortical` text message), then its structure means (`structures`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tribe_stream.surface.colors import ColorLimits, robust_limits
from tribe_stream.viewer.hud import drops_text, end_to_end_latency, stream_drops
from tribe_stream.web import assets
from tribe_stream.web.wire import encode_json, encode_prediction

log = logging.getLogger("tribe_stream.web")


@dataclass
class PageSettings:
    """What a page chose: its colormap and the threshold percentile (as the viewer's keys)."""

    cmap: str = "cold_hot"
    threshold_pct: float = 50.0


@dataclass(frozen=True)
class Frame:
    """One prediction as it arrived, shared by every page."""

    header: dict[str, Any]
    values: np.ndarray  # float32 (20484,)
    payload: bytes  # the same, little-endian bytes
    arrived: float  # Unix time


class Page:
    """One connected WebSocket: its settings, what waits to be sent, its smoothed limits."""

    def __init__(self, ws, settings: PageSettings, limits_tau_s: float = 5.0) -> None:
        self.ws = ws
        self.settings = settings
        self.limits_tau_s = limits_tau_s
        self.limits: ColorLimits | None = None
        self._limits_time: float | None = None
        self.frame: Frame | None = None
        self.volume: Frame | None = None  # the newest subcortical prediction not yet sent
        self.texts: dict[str, str] = {}
        self.skipped = 0
        self.sent = 0
        self.wake = asyncio.Event()

    def offer_frame(self, frame: Frame) -> None:
        if self.frame is not None:
            self.skipped += 1
        self.frame = frame
        self.wake.set()

    def offer_volume(self, frame: Frame) -> None:
        self.volume = frame
        self.wake.set()

    def offer_text(self, kind: str, text: str) -> None:
        self.texts[kind] = text
        self.wake.set()

    def reset_limits(self) -> None:
        """After a change of colormap or threshold: the next map takes its own limits at once."""
        self.limits = None

    def limits_for(self, values: np.ndarray, now: float) -> ColorLimits:
        diverging = assets.colormap(self.settings.cmap).diverging
        target = robust_limits(values, diverging, threshold_percentile=self.settings.threshold_pct)
        if self.limits is None or self._limits_time is None:
            self.limits = target
        else:
            weight = 1 - math.exp(-(now - self._limits_time) / self.limits_tau_s)
            self.limits = self.limits.blend(target, weight)
        self._limits_time = now
        return self.limits


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


class Relay:
    """Subscribes to `url` and keeps every registered `Page` fed (see the module docs)."""

    def __init__(self, url: str, *, subscriber_kwargs: dict[str, Any] | None = None) -> None:
        self.url = url
        self.subscriber_kwargs = subscriber_kwargs or {}
        self.pages: set[Page] = set()
        self.latest: Frame | None = None
        self.latest_volume: Frame | None = None
        self._mask: Any = None  # the subcortical atlas (spaces.VolumeMask), or its error line
        self.texts: dict[str, str] = {}  # newest metadata, status and region means
        self.status: dict[str, Any] | None = None
        self.received = 0
        self.sub_stats: dict[str, Any] = {}
        self.errors: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._sub = None

    # ----- the subscriber thread -----

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Connect (a bad URL raises here, one line) and start listening in a thread."""
        from tribe_stream.client import Subscriber

        self._loop = loop
        # every message, not latest_only: each page keeps only what it draws (cheap at 1-10 Hz)
        topics = ("prediction", "roi", "subcortical", "structures")
        self._sub = Subscriber(self.url, topics=topics, **self.subscriber_kwargs)
        self._thread = threading.Thread(target=self._listen, name="tribe-web-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._sub is not None:
            self._sub.stop()
        if self._thread is not None:
            self._thread.join(5)
        if self._sub is not None:
            self._sub.close()

    def _listen(self) -> None:
        sub, meta, status = self._sub, None, None
        while not self._stop.is_set():
            try:
                msg = sub.recv(timeout=0.25)
                if msg is not None and msg.topic == "prediction":
                    values = np.asarray(msg.values, dtype="<f4")
                    frame = Frame(dict(msg.header), values, values.tobytes(), time.time())
                    self._call(self._on_frame, frame)
                elif msg is not None and msg.topic == "subcortical":
                    values = np.asarray(msg.values, dtype="<f4")
                    self._call(self._on_volume, Frame(dict(msg.header), values, b"", time.time()))
                elif msg is not None and msg.topic == "roi":
                    self._call(self._on_text, "roi", self._roi_text(msg))
                elif msg is not None and msg.topic == "structures":
                    self._call(
                        self._on_text, "structures", Relay._roi_text(self, msg, "structures")
                    )
                if sub.metadata is not meta:
                    meta = sub.metadata
                    self._call(self._on_text, "meta", encode_json("meta", {"metadata": meta}))
                if sub.status is not status:
                    status = sub.status
                    self._call(self._on_status, status, self._status_text(status))
                self.sub_stats = sub.stats
            except Exception as exc:  # noqa: BLE001 - one bad message must not end the relay
                self.errors[type(exc).__name__] += 1
                log.warning("relay: %s: %s", type(exc).__name__, exc)

    def _roi_text(self, msg, kind: str = "roi") -> str:
        body = {k: msg.header[k] for k in ("second", "atlas", "prediction_seq")}
        body["values"] = [_finite_or_none(v) for v in np.asarray(msg.values, dtype=np.float64)]
        return encode_json(kind, body)

    def _status_text(self, status: dict[str, Any]) -> str:
        subscriber = {k: v for k, v in self._sub.stats.items() if k != "last_error"}
        return encode_json(
            "status", {"counters": status.get("counters", {}), "subscriber": subscriber}
        )

    def _call(self, fn, *args) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn, *args)
            except RuntimeError:  # the loop closed meanwhile: the server is going down
                pass

    # ----- in the event loop -----

    def _on_frame(self, frame: Frame) -> None:
        self.latest = frame
        self.received += 1
        for page in self.pages:
            page.offer_frame(frame)

    def _on_volume(self, frame: Frame) -> None:
        self.latest_volume = frame
        sid = frame.header.get("stream_id")
        for page in self.pages:  # a capturing page (`page.stream`) sees only its own stream's
            if getattr(page, "stream", sid) == sid:
                page.offer_volume(frame)

    def _on_text(self, kind: str, text: str) -> None:
        self.texts[kind] = text
        for page in self.pages:
            page.offer_text(kind, text)

    def _on_status(self, status: dict[str, Any], text: str) -> None:
        self.status = status
        self._on_text("status", text)

    def join(self, page: Page) -> None:
        """Register a page and give it everything a late joiner needs."""
        self.pages.add(page)
        for kind, text in self.texts.items():
            page.offer_text(kind, text)
        if self.latest is not None:
            page.offer_frame(self.latest)
        if self.latest_volume is not None:
            page.offer_volume(self.latest_volume)

    def leave(self, page: Page) -> None:
        self.pages.discard(page)

    def resend(self, page: Page) -> None:
        """The newest prediction again (its look changed: colormap, threshold)."""
        page.reset_limits()
        if self.latest is not None and page.frame is None:
            page.offer_frame(self.latest)
        if self.latest_volume is not None and page.volume is None:
            page.offer_volume(self.latest_volume)

    def encode_for(self, page: Page, frame: Frame) -> bytes:
        """The binary message of `frame` for `page`: its header plus what the page draws with."""
        now = time.time()
        latency, ref = end_to_end_latency(frame.header, now)
        limits = page.limits_for(frame.values, now)
        counters = (self.status or {}).get("counters")
        stats = self.sub_stats
        header = dict(frame.header)
        header["relay"] = {
            "wall": now,
            "latency_s": _finite_or_none(latency),
            "latency_ref": ref,
            "drops": drops_text(stream_drops(frame.header.get("counters"), counters)),
            "lost": int(stats.get("missed", 0)),
            "skipped": int(stats.get("skipped", 0)) + page.skipped,
            "cmap": page.settings.cmap,
            "limits": {k: float(v) for k, v in asdict(limits).items()},
            "pages": len(self.pages),
        }
        return encode_prediction(header, frame.payload)

    def volume_text(self, page: Page, frame: Frame) -> str:
        """A subcortical prediction as `page` draws it: its three slices in the page's colormap
        (`viewer.slices`), RGBA in base64, or the one line saying why they cannot be drawn."""
        from tribe_stream.errors import InputError
        from tribe_stream.spaces import subcortical_mask
        from tribe_stream.viewer.slices import slice_picture

        body: dict[str, Any] = {"second": frame.header.get("second")}
        if self._mask is None:
            try:
                self._mask = subcortical_mask()
            except InputError as exc:
                self._mask = str(exc)
        if isinstance(self._mask, str) or len(self._mask) != len(frame.values):
            n = "" if isinstance(self._mask, str) else f" of {len(self._mask)} voxels"
            why = self._mask if isinstance(self._mask, str) else "it is another atlas"
            body["error"] = f"{len(frame.values)} values; the atlas here{n}: {why}"
            return encode_json("subcortical", body)
        cmap = assets.colormap(page.settings.cmap)
        limits = robust_limits(
            frame.values, cmap.diverging, threshold_percentile=page.settings.threshold_pct
        )
        pic = slice_picture(self._mask, frame.values, cmap, limits)
        body.update(
            width=pic.rgba.shape[1],
            height=pic.rgba.shape[0],
            rgba=base64.b64encode(pic.rgba.tobytes()).decode(),
            caption=f"subcortical second {body['second']}: {pic.caption()}; own scale "
            f"±{max(abs(limits.vmin), abs(limits.vmax)):.2g}; axial, coronal, sagittal",
            structure=pic.structure,
            columns=[list(c) for c in pic.columns],
            limits={k: float(v) for k, v in asdict(limits).items()},
        )
        return encode_json("subcortical", body)

    async def pump(self, page: Page) -> None:
        """Send `page` what waits for it, newest only, until its socket closes."""
        ws = page.ws
        order = ("meta", "status", "capture", "rejected")
        while not ws.closed:
            await page.wake.wait()
            page.wake.clear()
            for kind in [k for k in order if k in page.texts] + [
                k for k in page.texts if k not in order and k not in ("roi", "structures")
            ]:
                await ws.send_str(page.texts.pop(kind))
            frame, page.frame = page.frame, None
            if frame is not None:
                await ws.send_bytes(self.encode_for(page, frame))
                page.sent += 1
            if "roi" in page.texts:  # after its prediction
                await ws.send_str(page.texts.pop("roi"))
            volume, page.volume = page.volume, None
            if volume is not None:
                await ws.send_str(self.volume_text(page, volume))
            if "structures" in page.texts:  # after its subcortical prediction
                await ws.send_str(page.texts.pop("structures"))

    def stats(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "received": self.received,
            "pages": len(self.pages),
            "sent": sum(p.sent for p in self.pages),
            "page_skipped": sum(p.skipped for p in self.pages),
            "subscriber": dict(self.sub_stats),
            "relay_errors": dict(self.errors),
        }


def page_settings(defaults: PageSettings, msg: dict[str, Any]) -> PageSettings:
    """A page's `settings` message applied to what it had (the colormap must exist here)."""
    cmap = msg.get("cmap", defaults.cmap)
    if cmap not in assets.available_colormaps():
        from tribe_stream.web.wire import Rejected

        raise Rejected("bad-type", f"unknown colormap {json.dumps(cmap)[:40]}")
    return PageSettings(
        cmap=cmap, threshold_pct=float(msg.get("threshold_pct", defaults.threshold_pct))
    )
