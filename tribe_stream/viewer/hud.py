"""The viewer's heads-up line: second, stimulus time, end-to-end latency, drops (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def end_to_end_latency(header: Mapping[str, Any], now_wall: float) -> tuple[float | None, str]:
    """Seconds from the end of the stimulus second to `now_wall`, and what it is measured from.

    With the stream's `t0_wall` the stimulus end is `t0_wall + stimulus[1]` (capture to screen);
    without it, the publisher's `publish_wall` (publish to screen).
    """
    t0 = header.get("t0_wall")
    stim = header.get("stimulus")
    if isinstance(t0, int | float) and isinstance(stim, list | tuple) and len(stim) == 2:
        return now_wall - (float(t0) + float(stim[1])), "stimulus end"
    pub = header.get("publish_wall")
    if isinstance(pub, int | float):
        return now_wall - float(pub), "publish"
    return None, ""


def stream_drops(*counter_sets: Mapping[str, Any] | None) -> int:
    """Sum of the counters whose name says a drop (`dropped`, `frames_dropped`, ...).

    Pass the prediction's counters and the heartbeat's (which adds `publisher.dropped`); a name
    present in both is counted once, from the later set.
    """
    merged: dict[str, Any] = {}
    for counters in counter_sets:
        merged.update(counters or {})
    return int(
        sum(v for k, v in merged.items() if "drop" in k and isinstance(v, int | float) and v > 0)
    )


def hud_line(
    header: Mapping[str, Any] | None,
    latency: tuple[float | None, str] = (None, ""),
    lost: int = 0,
    skipped: int = 0,
    fps: float = 0.0,
    status: Mapping[str, Any] | None = None,
) -> str:
    """`second 42 | stimulus 42.0-43.0 s | BOLD 47.0 s | latency 840 ms | drops 0 ... | 60 fps`.

    `latency` is `end_to_end_latency` taken when the prediction first reached the screen;
    `lost`: predictions missing from the sequence (transport); `skipped`: older predictions the
    latest-only viewer passed over because a newer one was already waiting.
    """
    if header is None:
        return f"no prediction yet  |  {fps:.0f} fps"
    parts = [f"second {header.get('second')}"]
    stim = header.get("stimulus")
    if isinstance(stim, list | tuple) and len(stim) == 2:
        parts.append(f"stimulus {float(stim[0]):.1f}-{float(stim[1]):.1f} s")
    if isinstance(header.get("bold_time"), int | float):
        parts.append(f"BOLD {float(header['bold_time']):.1f} s")
    lat, ref = latency
    if lat is not None:
        parts.append(
            f"latency {lat * 1000:.0f} ms" + ("" if ref == "stimulus end" else f" ({ref})")
        )
    status_counters = (status or {}).get("counters")
    drops = stream_drops(header.get("counters"), status_counters)
    parts.append(f"drops {drops}  lost {lost}  skipped {skipped}")
    parts.append(f"{fps:.0f} fps")
    return "  |  ".join(parts)
