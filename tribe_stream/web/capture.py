"""The live pipeline on the browser's camera and microphone (`tribe-stream web --capture`).

A `tribe_stream.Stream` over one `BrowserSource`, publishing on the page's ZeroMQ URL, so the
page (through the relay) and any other subscriber (record, lsl, the desktop viewer) see its
predictions. The models load when the server starts (a bad checkpoint is one line before
anything serves); the stream's clock starts with the first packet a page sends, and it runs
until the server stops (a page that stops capturing leaves empty bins, counted). Only one page captures at a time (`claim`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from tribe_stream.sources.browser import BrowserSource, CapturePacket
from tribe_stream.stream.producer import Media, PublishOptions, Stream, StreamOptions

log = logging.getLogger("tribe_stream.web")


class CaptureEngine:
    """A stream of predictions from the capturing page (see the module docs)."""

    def __init__(self, options: StreamOptions, publish: PublishOptions) -> None:
        self.source = BrowserSource()
        self.stream = Stream(Media(source=self.source), options).publish(publish)
        self.owner: Any = None
        self.predictions = 0
        self.error: str | None = None
        self._session = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.stream.publisher.url if self.stream.publisher is not None else ""

    def open(self) -> list[str]:
        """Load the models and bind the publisher; returns the stream's notes to show."""
        self._session = self.stream.open().__enter__()
        return list(self.stream.notes)

    def claim(self, page: Any) -> str | None:
        """Let `page` capture: None if it may, else why not."""
        if self.owner is not None and self.owner is not page:
            return "another page is capturing; close it first"
        self.owner = page
        return None

    def release(self, page: Any) -> None:
        if self.owner is page:
            self.owner = None

    def offer(self, page: Any, packet: CapturePacket) -> bool:
        """Hand a packet from `page` to the source; False if that page is not the one capturing."""
        if self.owner is not page:
            return False
        self.source.offer(packet)
        if self._thread is None:  # the stream's clock starts with the first picture or sound
            self._thread = threading.Thread(target=self._run, name="tribe-web-capture", daemon=True)
            self._thread.start()
        return True

    def _run(self) -> None:
        try:
            for _ in self._session:
                self.predictions += 1
        except Exception as exc:  # noqa: BLE001 - reported on /stats and in the log
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("capture stream stopped: %s", self.error)

    def stats(self) -> dict[str, Any]:
        return {
            "predictions": self.predictions,
            "capturing": self.owner is not None,
            "error": self.error,
            "source": self.source.counters,
            "counters": self.stream.counters,
        }

    def close(self) -> None:
        self.stream.stop()
        if self._thread is not None:
            self._thread.join(30)
        if self._session is not None:
            self._session.__exit__(None, None, None)
            self._session = None
