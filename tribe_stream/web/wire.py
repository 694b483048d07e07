"""The WebSocket messages between the web page and the server (docs/WEB.md, "Messages").

Server to page: a prediction is one binary message, `b"PRED"`, the header's length (uint32
little-endian), the header (UTF-8 JSON: the stream's prediction header plus `relay`, what the
page needs to draw it), zero padding to a multiple of 4 bytes, then 20,484 float32 values; the
rest (metadata, region means, status, capture replies) are JSON text messages with a `type`.

Page to server: JSON text messages (`settings`, `capture`), at most `MAX_TEXT_BYTES`, and
binary capture packets: a 16-byte head (4-byte tag, uint32 sample rate, float64 page time in
ms) and the payload: `JPEG` a JPEG picture (at most `MAX_JPEG_BYTES`), `PCMF` float32 or
`PCMS` int16 mono samples (at most one second). `parse_text` and `parse_packet` turn any bytes
into a value or a `Rejected` with a reason, never another exception: the server counts and
drops what they reject.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

from tribe_stream.sources.browser import CapturePacket

MAX_TEXT_BYTES = 4096
MAX_JPEG_BYTES = 1 << 20
RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)
"""The audio rates devices use: another rate's resampling filter is far larger (95,999 Hz to
16 kHz took the capture thread minutes), so a page stating one is refused."""
MAX_MESSAGE_BYTES = 4 << 20
"""aiohttp's own limit: a message larger than this closes that connection (the page reconnects)."""
HEAD = struct.Struct("<4sId")
AUDIO_TAGS = {b"PCMF": np.dtype("<f4"), b"PCMS": np.dtype("<i2")}

REJECT_REASONS = (
    "oversized",  # beyond the limit for its kind
    "truncated",  # shorter than its head, or samples cut in half
    "bad-tag",  # a binary message that is not JPEG, PCMF or PCMS
    "bad-time",  # a page time that is not a finite, non-negative number
    "bad-rate",  # not one of the audio rates devices use (`RATES`)
    "bad-json",  # a text message that is not a JSON object
    "bad-type",  # a JSON message of an unknown `type`, or with fields of the wrong type
    "capture-off",  # capture data sent to a server started without --capture
    "not-capturing",  # capture data from a page that has not started capturing, or another
    # page already captures
    "closed-oversized",  # beyond MAX_MESSAGE_BYTES: aiohttp closed that connection
    "closed-heartbeat",  # the page answered no ping in time (it stopped reading): closed
    "closed-broken",  # any other error that closed the connection (a malformed frame, a reset)
)


class Rejected(Exception):
    """A message the server drops (and counts by `reason`)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def closed_reason(exc: BaseException | None) -> str:
    """Why aiohttp closed a page's connection, by the error it gave (one of the `closed-` reasons)."""
    if getattr(exc, "code", None) == 1009:  # WSCloseCode.MESSAGE_TOO_BIG
        return "closed-oversized"
    return "closed-heartbeat" if isinstance(exc, TimeoutError) else "closed-broken"


def encode_prediction(header: dict[str, Any], values_f32: bytes) -> bytes:
    """The binary message of one prediction: tag, header length, header, padding, values."""
    head = json.dumps(header, separators=(",", ":"), allow_nan=False).encode()
    pad = b"\0" * (-(8 + len(head)) % 4)
    return b"PRED" + struct.pack("<I", len(head)) + head + pad + values_f32


def encode_json(kind: str, body: dict[str, Any]) -> str:
    return json.dumps({"type": kind, **body}, separators=(",", ":"), allow_nan=False)


def parse_text(text: str) -> dict[str, Any]:
    """A page's JSON message: an object with a known `type` and sound fields."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        raise Rejected("oversized", f"a text message over {MAX_TEXT_BYTES} bytes")
    try:
        msg = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise Rejected("bad-json", f"not JSON: {exc}") from None
    if type(msg) is not dict:
        raise Rejected("bad-json", "a text message must be a JSON object")
    kind = msg.get("type")
    if kind == "settings":
        _check(msg, "cmap", str)
        _check(msg, "threshold_pct", float, lo=0.0, hi=100.0)
        _check(msg, "vmax", float, lo=0.0, optional_null=True)
    elif kind == "capture":
        _check(msg, "session", str)
        _check(msg, "action", str)
        if msg.get("action", "start") not in ("start", "stop"):
            raise Rejected("bad-type", "capture action must be start or stop")
        if len(msg.get("session", "")) > 64:
            raise Rejected("bad-type", "a capture session name is at most 64 characters")
    else:
        raise Rejected("bad-type", f"unknown message type {str(kind)[:40]!r}")
    return msg


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number")


def _check(
    msg: dict,
    key: str,
    kind: type,
    lo: float | None = None,
    hi: float | None = None,
    optional_null: bool = False,
) -> None:
    if key not in msg or (optional_null and msg[key] is None):
        return
    value = msg[key]
    if kind is float:
        ok = type(value) in (int, float) and math.isfinite(value)
        ok = ok and (lo is None or value >= lo) and (hi is None or value <= hi)
    else:
        ok = type(value) is kind
    if not ok:
        raise Rejected("bad-type", f"field {key!r} has a bad value {str(value)[:40]}")


def parse_packet(data: bytes, session: str) -> CapturePacket:
    """A page's binary capture message as a `CapturePacket` (see the module docs)."""
    if len(data) < HEAD.size:
        raise Rejected("truncated", f"a capture message of {len(data)} bytes has no head")
    tag, rate, t_ms = HEAD.unpack_from(data)
    payload = memoryview(data)[HEAD.size :]
    if not (math.isfinite(t_ms) and t_ms >= 0):
        raise Rejected("bad-time", f"page time {t_ms!r} ms")
    if tag == b"JPEG":
        if len(payload) > MAX_JPEG_BYTES:
            raise Rejected("oversized", f"a JPEG of {len(payload)} bytes (limit {MAX_JPEG_BYTES})")
        if not len(payload):
            raise Rejected("truncated", "an empty JPEG")
        return CapturePacket("video", t_ms / 1000.0, bytes(payload), session=session)
    dtype = AUDIO_TAGS.get(tag)
    if dtype is None:
        raise Rejected("bad-tag", f"unknown capture tag {tag[:4]!r}")
    if rate not in RATES:
        raise Rejected(
            "bad-rate", f"sample rate {rate} Hz (use one of {', '.join(map(str, RATES))})"
        )
    if len(payload) % dtype.itemsize or not len(payload):
        raise Rejected("truncated", f"{len(payload)} bytes of {dtype.itemsize}-byte samples")
    n = len(payload) // dtype.itemsize
    if n > rate:
        raise Rejected("oversized", f"{n} samples at {rate} Hz: at most one second a message")
    samples = np.frombuffer(payload, dtype=dtype).astype(np.float32)
    if tag == b"PCMS":
        samples /= 32768.0
    return CapturePacket("audio", t_ms / 1000.0, samples, rate=int(rate), session=session)
