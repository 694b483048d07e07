"""A live progress line for the terminal (rich), or plain lines when output is not a terminal."""

from __future__ import annotations

import sys
import time

from tribe_stream.types import Prediction
from tribe_stream.viewer.hud import drops_text, stream_drops


class ProgressLine:
    """Seconds processed, real-time factor, drops and latency, updated per prediction."""

    def __init__(self, label: str = "", total: float | None = None):
        self.label = label
        self.total = total
        self.t0 = time.monotonic()
        self.tty = sys.stdout.isatty()
        self._live = None
        if self.tty:
            from rich.live import Live

            self._live = Live("", refresh_per_second=8, transient=False)
            self._live.start()

    def line(self, p: Prediction) -> str:
        c = p.counters
        wall = time.monotonic() - self.t0
        seconds = p.second + 1
        drops = drops_text(stream_drops(c))  # by what they count: sound, frames, bins, seconds
        load = c.get("busy_s", 0.0) / max(seconds, 1e-9)
        of = f"/{self.total:g}" if self.total else ""
        return (
            f"{self.label}second {seconds}{of}  stream/wall {seconds / max(wall, 1e-9):.2f}x  "
            f"compute {load:.2f} s per s  latency {c.get('behind_s', 0.0):.2f} s  "
            f"model {p.timings.get('model_ms', 0.0):.1f} ms  words {int(c.get('words', 0))}  "
            f"{drops}  errors "
            f"{int(c.get('extractor_errors', 0) + c.get('engine_errors', 0))}"
        )

    def update(self, p: Prediction) -> None:
        text = self.line(p)
        if self._live is not None:
            self._live.update(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
