"""The one stream clock: monotonic seconds since the stream started, and its mapping to wall time."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class StreamClock:
    """Monotonic stream time, zero at start; `wall(t)` maps a stream time to Unix wall time.

    Every timestamp inside tribe-stream is stream time; wall and LSL times are derived here only.
    """

    t0_monotonic: float = field(default_factory=time.monotonic)
    t0_wall: float = field(default_factory=time.time)

    def restart(self) -> None:
        """Make 'now' stream time zero (just before the sources start)."""
        self.t0_monotonic = time.monotonic()
        self.t0_wall = time.time()

    def now(self) -> float:
        """Seconds since the stream started."""
        return time.monotonic() - self.t0_monotonic

    def wall(self, t: float) -> float:
        """Unix time of stream time `t`."""
        return self.t0_wall + t

    def lsl(self, t: float, lsl_now: float | None = None) -> float:
        """LSL clock (pylsl.local_clock) of stream time `t`, via the current offset between the two."""
        if lsl_now is None:
            import pylsl

            lsl_now = pylsl.local_clock()
        return lsl_now - (self.now() - t)
