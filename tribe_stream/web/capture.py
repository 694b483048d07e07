"""The live pipeline on the browsers' cameras and microphones (`tribe-stream web --capture`).

One serving `tribe_stream.Stream` (`Stream.serve`), publishing on the page's ZeroMQ URL: each
page that starts capturing gets a stream of its own (its own `BrowserSource`, clock, speech
recogniser and publisher channel, `stream_id` `page-N`), and the relay sends each page only its
own stream's predictions. A page that stops capturing, or closes, ends its stream, which gives
back what it held. Beyond `max_streams` pages at once, the next is told "busy, try again". The
models load when the server starts (a bad checkpoint is one line before anything serves).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from tribe_stream.errors import InputError
from tribe_stream.sources.browser import BrowserSource, CapturePacket
from tribe_stream.stream.producer import Media, PublishOptions, Stream, StreamOptions

log = logging.getLogger("tribe_stream.web")


class CaptureEngine:
    """Streams of predictions from the capturing pages (see the module docs)."""

    def __init__(
        self, options: StreamOptions, publish: PublishOptions, max_streams: int | None = None
    ) -> None:
        self.stream = Stream([], options).publish(publish).serve(max_streams)
        self.pages: dict[Any, tuple[str, BrowserSource]] = {}
        self.predictions = 0
        self.error: str | None = None
        self._session = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._made = 0

    @property
    def url(self) -> str:
        return self.stream.publisher.url if self.stream.publisher is not None else ""

    def open(self, timeout: float = 60.0) -> list[str]:
        """Load the models, bind the publisher and start serving; returns the notes to show."""
        self._session = self.stream.open().__enter__()
        self._thread = threading.Thread(target=self._run, name="tribe-web-capture", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.stream.server.running and self._thread.is_alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        return list(self.stream.notes)

    def claim(self, page: Any) -> str | None:
        """Let `page` capture, on a stream of its own: None if it may, else why not (busy)."""
        with self._lock:
            if page in self.pages:
                return None
            self._made += 1
            sid = f"page-{self._made}"
        source = BrowserSource()
        try:
            self.stream.add(Media(source=source, stream_id=sid))
        except InputError as exc:  # ServerBusy: the most pages capture already
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - the page hears why; the server goes on
            log.warning("a page's capture could not start: %s: %s", type(exc).__name__, exc)
            return f"capture could not start ({type(exc).__name__}: {exc})"
        with self._lock:
            self.pages[page] = (sid, source)
        return None

    def stream_id(self, page: Any) -> str | None:
        """The stream `page` captures into (None when it does not capture)."""
        entry = self.pages.get(page)
        return entry[0] if entry is not None else None

    def release(self, page: Any) -> None:
        """`page` stopped capturing or left: its stream ends and gives back what it held."""
        with self._lock:
            entry = self.pages.pop(page, None)
        if entry is not None:
            self.stream.end(entry[0])

    def offer(self, page: Any, packet: CapturePacket) -> bool:
        """Hand a packet from `page` to its stream's source; False if that page does not capture."""
        entry = self.pages.get(page)
        if entry is None:
            return False
        entry[1].offer(packet)
        return True

    def _run(self) -> None:
        try:
            for _ in self._session:
                self.predictions += 1
        except Exception as exc:  # noqa: BLE001 - reported on /stats and in the log
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("capture server stopped: %s", self.error)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            pages = list(self.pages.values())
        source: dict[str, float] = {}
        for _, src in pages:
            for k, v in src.counters.items():
                source[k] = source.get(k, 0) + v
        return {
            "predictions": self.predictions,
            "capturing": len(pages),
            "streams": [sid for sid, _ in pages],
            "max_streams": self.stream.server.max_streams if self.stream.server else None,
            "error": self.error,
            "source": source,
            "counters": self.stream.server.all_counters() if self.stream.server else {},
        }

    def close(self) -> None:
        self.stream.stop()
        if self._thread is not None:
            self._thread.join(30)
        if self._session is not None:
            self._session.__exit__(None, None, None)
            self._session = None
