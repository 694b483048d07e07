"""The wire format (docs/PROTOCOL.md): the only code that turns a Prediction into bytes and back.

A message is three ZeroMQ frames `[topic, header, payload]`: the topic names the kind
(`tribe.prediction`, `tribe.status`, `tribe.metadata`), the header is a UTF-8 JSON object, the
payload is raw little-endian values (predictions) or empty. `decode` validates every field it
relies on and raises `MessageRejected` with a short reason code, so a consumer can count bad input
and go on. The CURVE key helpers and the shared command-line options (endpoint, keys) live here
too: they are part of how a peer joins a stream, and keep `zmq` out of CLI start-up.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from tribe_stream import HEMODYNAMIC_OFFSET_S, N_VERTICES, N_VERTICES_HEMI, __version__
from tribe_stream.errors import InputError, ProtocolError
from tribe_stream.types import Prediction

PROTOCOL_VERSION = 1
"""Bumped only for an incompatible change; new header fields do not bump it (ignore unknown keys)."""

DEFAULT_URL = "tcp://127.0.0.1:5556"

TOPICS: dict[str, bytes] = {
    "prediction": b"tribe.prediction",
    "status": b"tribe.status",
    "metadata": b"tribe.metadata",
}
"""Short name -> topic frame. ZeroMQ filters on prefixes, so no topic is a prefix of another."""
_TOPIC_NAMES = {v: k for k, v in TOPICS.items()}

DTYPES: dict[str, np.dtype] = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}
"""Payload dtypes; the payload is always little-endian."""

MAX_TOPIC_BYTES = 64
MAX_HEADER_BYTES = 64 * 1024
MAX_PAYLOAD_BYTES = N_VERTICES * 4
"""Largest valid payload: one float32 prediction. Anything bigger is rejected as oversized."""

FSAVERAGE5 = {
    "name": "fsaverage5",
    "n_vertices": N_VERTICES,
    "hemispheres": {"left": [0, N_VERTICES_HEMI], "right": [N_VERTICES_HEMI, N_VERTICES]},
}
"""The mesh of every v1 prediction: left hemisphere rows [0, 10242), right [10242, 20484)."""


class MessageRejected(ProtocolError):
    """A message that breaks docs/PROTOCOL.md; `reason` is a short code for counting."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(slots=True)
class Message:
    """One decoded message. `values` is a read-only view over the received frame (no copy).

    `received` (Unix time) and `missed_before` (predictions lost in transport just before this one)
    are filled in by the subscriber.
    """

    topic: str
    header: dict[str, Any]
    values: np.ndarray | None = None
    received: float = 0.0
    missed_before: int = 0

    @property
    def seq(self) -> int:
        return self.header["seq"]

    @property
    def second(self) -> int | None:
        return self.header.get("second")

    @property
    def stream_id(self) -> str:
        return self.header["stream_id"]

    def to_prediction(self) -> Prediction:
        """The Prediction this message carries (values copied to float32)."""
        if self.topic != "prediction" or self.values is None:
            raise ProtocolError(f"a {self.topic} message carries no prediction")
        h = self.header
        return Prediction(
            second=h["second"],
            values=self.values.astype(np.float32),
            stimulus=(float(h["stimulus"][0]), float(h["stimulus"][1])),
            bold_time=float(h["bold_time"]),
            timings={k: v for k, v in h.get("timings", {}).items() if v is not None},
            counters=dict(h.get("counters", {})),
        )


# ---------------------------------------------------------------------------------------------
# Encoding


def jsonable(value: Any) -> Any:
    """`value` as plain JSON data: NumPy scalars to Python, non-finite floats to null."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in value]
    raise TypeError(f"{type(value).__name__} is not JSON data")


def _dumps(header: dict[str, Any]) -> bytes:
    return json.dumps(header, separators=(",", ":"), allow_nan=False).encode()


def _numbers(d: Mapping[str, Any]) -> dict[str, Any]:
    """A flat str -> number dict; non-finite numbers become null (JSON has no NaN)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, bool) or v is None:
            out[str(k)] = v
        elif isinstance(v, int | np.integer):
            out[str(k)] = int(v)
        else:
            f = float(v)
            out[str(k)] = f if math.isfinite(f) else None
    return out


def _payload(values: np.ndarray, wire: np.dtype) -> bytes:
    """Values as little-endian `wire` bytes (values beyond float16's +-65504 become +-inf).

    If torch is already loaded (it is in the pipeline), its F16C float32 -> float16 cast is used:
    the same IEEE round-to-nearest-even bits as NumPy's, about 5x faster. Never imported here.
    """
    torch = sys.modules.get("torch")
    if (
        torch is not None
        and wire.itemsize == 2
        and values.dtype == np.float32
        and values.flags.c_contiguous
        and values.flags.writeable
        and sys.byteorder == "little"
    ):
        return torch.from_numpy(values).to(torch.float16).numpy().tobytes()
    with np.errstate(over="ignore"):
        return values.astype(wire, copy=False).tobytes()


def _base(kind: str, stream_id: str, session: str, seq: int, publish_wall: float) -> dict:
    return {
        "v": PROTOCOL_VERSION,
        "kind": kind,
        "stream_id": stream_id,
        "session": session,
        "seq": seq,
        "publish_wall": publish_wall,
    }


class PredictionEncoder:
    """Encodes the predictions of one publisher session.

    The header fields that never change within a session (ids, dtype, shape, mesh, model,
    `t0_wall`) are serialised once; each prediction serialises only its own fields.
    """

    def __init__(
        self,
        *,
        stream_id: str,
        session: str,
        dtype: str = "float16",
        model: Mapping[str, Any] | None = None,
        mesh: Mapping[str, Any] | None = None,
        t0_wall: float | None = None,
    ):
        if dtype not in DTYPES:
            raise InputError(f"dtype {dtype!r} is not supported; use one of {sorted(DTYPES)}")
        self.dtype = dtype
        self._wire = DTYPES[dtype]
        fixed = {
            "v": PROTOCOL_VERSION,
            "kind": "prediction",
            "stream_id": stream_id,
            "session": session,
            "t0_wall": t0_wall,
            "dtype": dtype,
            "shape": [N_VERTICES],
            "mesh": jsonable(mesh or FSAVERAGE5),
            "model": jsonable(model or {}),
        }
        self._fixed = b"," + _dumps(fixed)[1:]  # `,"v":1,...}`: appended to the per-message part

    def encode(
        self,
        prediction: Prediction,
        *,
        seq: int,
        publish_wall: float,
        publish_time: float | None = None,
    ) -> list[bytes]:
        """Frames for one prediction; `publish_time` (stream clock) joins the timings if known."""
        values = np.asarray(prediction.values)
        if values.shape != (N_VERTICES,):
            raise InputError(
                f"prediction values have shape {values.shape}; the protocol carries "
                f"({N_VERTICES},) fsaverage5 values (left hemisphere first)"
            )
        timings = _numbers(prediction.timings)
        if publish_time is not None:
            timings["publish"] = publish_time
        own = {
            "seq": seq,
            "publish_wall": publish_wall,
            "second": int(prediction.second),
            "stimulus": [float(prediction.stimulus[0]), float(prediction.stimulus[1])],
            "bold_time": float(prediction.bold_time),
            "timings": timings,
            "counters": _numbers(prediction.counters),
        }
        header = _dumps(own)[:-1] + self._fixed
        return [TOPICS["prediction"], header, _payload(values, self._wire)]


def encode_prediction(
    prediction: Prediction,
    *,
    stream_id: str,
    session: str,
    seq: int,
    publish_wall: float,
    dtype: str = "float16",
    model: Mapping[str, Any] | None = None,
    mesh: Mapping[str, Any] | None = None,
    t0_wall: float | None = None,
    publish_time: float | None = None,
) -> list[bytes]:
    """Frames for one prediction (a one-off PredictionEncoder; publishers keep theirs)."""
    encoder = PredictionEncoder(
        stream_id=stream_id, session=session, dtype=dtype, model=model, mesh=mesh, t0_wall=t0_wall
    )
    return encoder.encode(prediction, seq=seq, publish_wall=publish_wall, publish_time=publish_time)


def encode_status(
    counters: Mapping[str, Any],
    *,
    stream_id: str,
    session: str,
    seq: int,
    publish_wall: float,
    next_seq: int,
    stream_time: float | None = None,
) -> list[bytes]:
    """Frames for a heartbeat. `next_seq` is the seq the next prediction will carry."""
    header = _base("status", stream_id, session, seq, publish_wall)
    header.update(next_seq=next_seq, stream_time=stream_time, counters=_numbers(counters))
    return [TOPICS["status"], _dumps(header), b""]


def encode_metadata(
    metadata: Mapping[str, Any],
    *,
    stream_id: str,
    session: str,
    seq: int,
    publish_wall: float,
    next_seq: int,
) -> list[bytes]:
    """Frames for the stream metadata (`metadata` must be JSON data; reserved keys are set here)."""
    header = dict(metadata)
    header.update(_base("metadata", stream_id, session, seq, publish_wall))
    header["next_seq"] = next_seq
    return [TOPICS["metadata"], _dumps(header), b""]


def stream_metadata(
    *,
    stream_id: str,
    dtype: str,
    model: Mapping[str, Any] | None,
    mesh: Mapping[str, Any] | None = None,
    t0_wall: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata a publisher announces (see PROTOCOL.md, 'metadata')."""
    meta: dict[str, Any] = dict(jsonable(extra or {}))
    meta.update(
        stream_id=stream_id,
        dtype=dtype,
        shape=[N_VERTICES],
        mesh=jsonable(mesh or FSAVERAGE5),
        model=jsonable(model or {}),
        t0_wall=t0_wall,
        hemodynamic_offset_s=HEMODYNAMIC_OFFSET_S,
        software={"tribe_stream": __version__, "protocol": PROTOCOL_VERSION},
    )
    return meta


RESERVED_KEYS = frozenset(
    {"v", "kind", "stream_id", "session", "seq", "publish_wall", "next_seq", "dtype", "shape"}
)


# ---------------------------------------------------------------------------------------------
# Decoding


def _is_int(x: Any) -> bool:
    return type(x) is int


def _is_num(x: Any) -> bool:
    return type(x) is int or type(x) is float


def _require(header: dict, key: str, check, what: str) -> Any:
    if key not in header:
        raise MessageRejected("missing-field", f"header has no {key!r}")
    value = header[key]
    if not check(value):
        raise MessageRejected(
            "bad-field", f"header field {key!r} must be {what}, got {value!r:.80}"
        )
    return value


def _looks_valid(h: dict, payload_bytes: int) -> bool:
    """All of a prediction header's checks at once (the common case); False means look closer."""
    try:
        seq, stim, dtype = h["seq"], h["stimulus"], DTYPES.get(h["dtype"])
        return (
            type(h["stream_id"]) is str
            and type(h["session"]) is str
            and type(seq) is int
            and seq >= 0
            and _is_num(h["publish_wall"])
            and type(h["second"]) is int
            and type(stim) is list
            and len(stim) == 2
            and _is_num(stim[0])
            and _is_num(stim[1])
            and _is_num(h["bold_time"])
            and type(h["timings"]) is dict
            and type(h["mesh"]) is dict
            and type(h["model"]) is dict
            and dtype is not None
            and h["shape"] == [N_VERTICES]
            and payload_bytes == N_VERTICES * dtype.itemsize
        )
    except (KeyError, TypeError):
        return False


def decode(frames: Sequence[Any]) -> Message:
    """Validate and decode `[topic, header, payload]` (bytes, memoryviews or zmq.Frames).

    Prediction values come back as a read-only NumPy view over the payload frame (no copy).
    Raises MessageRejected (with `.reason`) for anything that breaks the protocol.
    """
    if len(frames) != 3:
        raise MessageRejected(
            "frame-count", f"expected 3 frames [topic, header, payload], got {len(frames)}"
        )
    topic_mv, header_mv, payload_mv = (memoryview(f) for f in frames)
    if topic_mv.nbytes > MAX_TOPIC_BYTES:
        raise MessageRejected("oversized", f"topic frame of {topic_mv.nbytes} bytes")
    topic = _TOPIC_NAMES.get(topic_mv.tobytes())
    if topic is None:
        raise MessageRejected("foreign-topic", f"unknown topic {topic_mv.tobytes()[:40]!r}")
    if header_mv.nbytes > MAX_HEADER_BYTES:
        raise MessageRejected(
            "oversized", f"header of {header_mv.nbytes} bytes (limit {MAX_HEADER_BYTES})"
        )
    if payload_mv.nbytes > MAX_PAYLOAD_BYTES:
        raise MessageRejected(
            "oversized", f"payload of {payload_mv.nbytes} bytes (limit {MAX_PAYLOAD_BYTES})"
        )
    try:
        header = json.loads(header_mv.tobytes())
    except (UnicodeDecodeError, ValueError) as exc:
        raise MessageRejected("bad-header", f"header is not UTF-8 JSON ({exc})") from None
    if not isinstance(header, dict):
        raise MessageRejected("bad-header", f"header is a JSON {type(header).__name__}, not object")
    version = header.get("v")
    if version != PROTOCOL_VERSION:
        raise MessageRejected(
            "version", f"protocol version {version!r}; this library speaks {PROTOCOL_VERSION}"
        )
    if header.get("kind") != topic:
        raise MessageRejected("kind-mismatch", f"kind {header.get('kind')!r} on topic {topic!r}")
    if topic == "prediction" and _looks_valid(header, payload_mv.nbytes):
        values = np.frombuffer(payload_mv, dtype=DTYPES[header["dtype"]])
        values.flags.writeable = False
        return Message(topic, header, values)
    # the slow path: find what is wrong, and say so
    _require(header, "stream_id", lambda x: isinstance(x, str), "a string")
    _require(header, "session", lambda x: isinstance(x, str), "a string")
    _require(header, "seq", lambda x: _is_int(x) and x >= 0, "an integer >= 0")
    _require(header, "publish_wall", _is_num, "a number")
    if topic != "prediction":
        if payload_mv.nbytes:
            raise MessageRejected("payload-size", f"{topic} payload must be empty")
        if topic == "status":
            _require(header, "counters", lambda x: isinstance(x, dict), "an object")
        _require(header, "next_seq", lambda x: _is_int(x) and x >= 0, "an integer >= 0")
        return Message(topic, header)
    _require(header, "second", _is_int, "an integer")
    _require(
        header,
        "stimulus",
        lambda x: isinstance(x, list) and len(x) == 2 and all(map(_is_num, x)),
        "[start, end]",
    )
    _require(header, "bold_time", _is_num, "a number")
    _require(header, "timings", lambda x: isinstance(x, dict), "an object")
    _require(header, "mesh", lambda x: isinstance(x, dict), "an object")
    _require(header, "model", lambda x: isinstance(x, dict), "an object")
    dtype = DTYPES.get(header.get("dtype"))  # type: ignore[arg-type]
    if dtype is None:
        raise MessageRejected(
            "dtype", f"dtype {header.get('dtype')!r}; expected one of {sorted(DTYPES)}"
        )
    if header.get("shape") != [N_VERTICES]:
        raise MessageRejected("shape", f"shape {header.get('shape')!r}; expected [{N_VERTICES}]")
    if payload_mv.nbytes != N_VERTICES * dtype.itemsize:
        raise MessageRejected(
            "payload-size",
            f"payload of {payload_mv.nbytes} bytes; {N_VERTICES} x {header['dtype']} is "
            f"{N_VERTICES * dtype.itemsize}",
        )
    values = np.frombuffer(payload_mv, dtype=dtype)
    values.flags.writeable = False
    return Message(topic, header, values)


# ---------------------------------------------------------------------------------------------
# CURVE keys (ZeroMQ's Z85 text form, 40 characters; files as written by zmq.auth)

_Z85 = re.compile(rb"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


def _z85(spec: str | bytes) -> bytes | None:
    raw = spec.encode() if isinstance(spec, str) else spec
    raw = raw.strip()
    return raw if _Z85.match(raw) else None


def _load_key_file(path: Path) -> tuple[bytes | None, bytes | None]:
    import zmq.auth

    try:
        return zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise InputError(
            f"cannot read the CURVE key file {path}: {exc}; make keys with `tribe-stream keys DIR`"
        ) from None


def load_public_key(spec: str | bytes | os.PathLike) -> bytes:
    """A public key from its 40-character Z85 text or a key file (`NAME.key`)."""
    if not isinstance(spec, os.PathLike):
        key = _z85(spec)
        if key is not None:
            return key
    path = Path(os.fsdecode(spec))
    if not path.is_file():
        raise InputError(
            f"{spec!s:.60} is neither a 40-character Z85 public key nor a key file; "
            "make keys with `tribe-stream keys DIR`"
        )
    public, _ = _load_key_file(path)
    if public is None:
        raise InputError(f"{path} holds no public key")
    return public


def load_keypair(spec: str | bytes | os.PathLike) -> tuple[bytes, bytes]:
    """(public, secret) from a secret key file (`NAME.key_secret`) or a Z85 secret key."""
    import zmq

    if not isinstance(spec, os.PathLike):
        secret = _z85(spec)
        if secret is not None:
            return zmq.curve_public(secret), secret
    path = Path(os.fsdecode(spec))
    if not path.is_file():
        raise InputError(
            f"{spec!s:.60} is neither a Z85 secret key nor a secret key file "
            "(NAME.key_secret from `tribe-stream keys DIR`)"
        )
    public, secret = _load_key_file(path)
    if secret is None or public is None:
        raise InputError(f"{path} holds no secret key: pass the NAME.key_secret file")
    return public, secret


def load_allowed_keys(specs: Iterable[str | bytes | os.PathLike]) -> set[bytes]:
    """Public keys from Z85 texts, key files, or folders of `*.key` files."""
    keys: set[bytes] = set()
    for spec in specs:
        if not isinstance(spec, bytes) and Path(os.fsdecode(spec)).is_dir():
            found = sorted(Path(os.fsdecode(spec)).glob("*.key"))
            if not found:
                raise InputError(f"no *.key public key files in {spec}")
            keys.update(load_public_key(p) for p in found)
        else:
            keys.add(load_public_key(spec))
    return keys


def is_local(url: str) -> bool:
    """True for endpoints only this machine can reach (loopback TCP, ipc, inproc)."""
    parts = urlsplit(url)
    if parts.scheme in ("ipc", "inproc"):
        return True
    host = (parts.hostname or "").strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


# ---------------------------------------------------------------------------------------------
# Command-line options (here, not in publish/client, so that building the CLI imports no zmq)


def add_publisher_arguments(
    parser: argparse.ArgumentParser, *, default_url: str = DEFAULT_URL
) -> None:
    """The publishing options shared by commands that publish (`run`, `replay`)."""
    g = parser.add_argument_group("publishing")
    g.add_argument(
        "--publish",
        metavar="URL",
        default=default_url,
        help=f"ZeroMQ endpoint to bind (default {default_url}; other interfaces only if you say so)",
    )
    g.add_argument("--dtype", choices=sorted(DTYPES), default="float16", help="payload dtype")
    g.add_argument("--stream-id", help="name of this stream in every header")
    g.add_argument(
        "--curve-secret",
        metavar="FILE",
        help="server secret key (NAME.key_secret from `tribe-stream keys`): encrypt with CURVE",
    )
    g.add_argument(
        "--allow-client",
        metavar="KEY",
        action="append",
        help="client public key, NAME.key file or folder of them; repeat; needs --curve-secret",
    )


def add_subscriber_arguments(parser: argparse.ArgumentParser) -> None:
    """The CURVE options shared by commands that subscribe (`record`, `lsl`)."""
    g = parser.add_argument_group("CURVE (when the publisher encrypts)")
    g.add_argument(
        "--curve-server-key",
        metavar="KEY",
        help="the publisher's public key: Z85 text or its NAME.key file",
    )
    g.add_argument(
        "--curve-keypair",
        metavar="FILE",
        help="our NAME.key_secret file (its public key must be on the publisher's allow-list)",
    )
