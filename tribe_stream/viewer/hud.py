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


DROP_UNITS: tuple[tuple[str, str], ...] = (
    ("sound_s", "s of sound"),
    ("frames", "frames"),
    ("bins", "bins"),
    ("seconds", "seconds"),
    ("messages", "messages"),
    ("other", "other"),
)
"""What a drop counts, in the order the heads-up line says them: seconds of sound (dropped
16 kHz samples / 16000), video frames, empty bins, predicted seconds skipped, published
messages (the publisher's), and drops of anything else."""


_LEAF_UNITS = (("sample", "sound_s"), ("frame", "frames"), ("bin", "bins"), ("second", "seconds"))


def _unit(name: str) -> str | None:
    """The unit of a drop counter (`source0.dropped_samples` -> sound), None when the counter
    is not a drop or repeats others (a source's dropped chunks are its frames and samples)."""
    if "drop" not in name:
        return None
    leaf = name.rsplit(".", 1)[-1]
    for part, unit in _LEAF_UNITS:
        if part in leaf:
            return unit
    if leaf == "dropped_chunks" and "." in name:
        return None  # a source's: counted as the frames and samples they held
    if name.startswith("publisher."):
        return "messages"
    return "other"


def stream_drops(*counter_sets: Mapping[str, Any] | None) -> dict[str, float]:
    """Drops by what they count (`DROP_UNITS`; sound in seconds), from the counters whose name
    says a drop. Pass the prediction's counters and the heartbeat's (which adds
    `publisher.dropped`); a name present in both is counted once, from the later set."""
    from tribe_stream import AUDIO_RATE

    merged: dict[str, Any] = {}
    for counters in counter_sets:
        merged.update(counters or {})
    out = dict.fromkeys((u for u, _ in DROP_UNITS), 0.0)
    for k, v in merged.items():
        unit = _unit(k)
        if unit is None or not isinstance(v, int | float) or isinstance(v, bool) or v <= 0:
            continue
        out[unit] += v / AUDIO_RATE if unit == "sound_s" else v
    return out


def drops_text(drops: Mapping[str, float]) -> str:
    """`drops none`, or `drops 1.2 s of sound, 3 frames`: each unit that dropped something."""
    parts = []
    for unit, label in DROP_UNITS:
        v = float(drops.get(unit, 0.0))
        if v > 0:
            parts.append(f"{v:.1f} {label}" if unit == "sound_s" else f"{v:.0f} {label}")
    return "drops " + (", ".join(parts) if parts else "none")


def hud_line(
    header: Mapping[str, Any] | None,
    latency: tuple[float | None, str] = (None, ""),
    lost: int = 0,
    skipped: int = 0,
    fps: float = 0.0,
    status: Mapping[str, Any] | None = None,
) -> str:
    """`second 42 | stimulus 42.0-43.0 s | BOLD 47.0 s | latency 840 ms | drops none ... | 60 fps`.

    `latency` is `end_to_end_latency` taken when the prediction first reached the screen;
    `lost`: predictions missing from the sequence (transport); `skipped`: older predictions the
    latest-only viewer passed over because a newer one was already waiting.
    """
    if header is None:
        return f"no prediction yet  |  {fps:.0f} fps"
    from tribe_stream.untrained import UNTRAINED_TAG, is_untrained

    parts = [UNTRAINED_TAG] if is_untrained(header) else []
    parts.append(f"second {header.get('second')}")
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
    drops = drops_text(stream_drops(header.get("counters"), status_counters))
    parts.append(f"{drops}  lost {lost}  skipped {skipped}")
    parts.append(f"{fps:.0f} fps")
    return "  |  ".join(parts)
