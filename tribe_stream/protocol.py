"""The wire format (docs/PROTOCOL.md): the only code that turns a Prediction into bytes and back.

A message is three ZeroMQ frames `[topic, header, payload]`: the topic names the kind, the header
is a UTF-8 JSON object whose fields `HEADERS` declares, the payload raw little-endian values or
empty. `decode` validates every field and raises only `MessageRejected` (a short reason code),
whatever the bytes: what it accepts, every consumer can use as is. The CURVE key helpers and the
subscribers' command-line options live here too (how a peer joins; no `zmq` at CLI start-up).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import reprlib
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import numpy as np

from tribe_stream import HEMODYNAMIC_OFFSET_S, N_VERTICES, N_VERTICES_HEMI, __version__
from tribe_stream.errors import InputError, ProtocolError
from tribe_stream.types import Prediction, Word

PROTOCOL_VERSION = 1
"""Bumped only for an incompatible change; new header fields do not bump it (ignore unknown keys)."""

DEFAULT_URL = os.environ.get("TRIBE_STREAM_URL") or "tcp://127.0.0.1:5556"
"""Where streams publish and viewers subscribe unless told otherwise: `$TRIBE_STREAM_URL` (one
setting for a lab's machines, or a port per parallel test worker), else loopback port 5556."""

TOPICS: dict[str, bytes] = {
    "prediction": b"tribe.prediction",
    "status": b"tribe.status",
    "metadata": b"tribe.metadata",
    "roi": b"tribe.roi",
    "subcortical": b"tribe.subcortical",
    "structures": b"tribe.structures",
}
"""Short name -> topic frame. ZeroMQ filters on prefixes, so no topic is a prefix of another
(a cortex subscriber of `tribe.prediction` never receives `tribe.subcortical`)."""
HEADS = {"subcortical": ("subcortical", "structures")}
"""A second head's name -> (its prediction topic, its region-means topic)."""
_TOPIC_NAMES = {v: k for k, v in TOPICS.items()}

DTYPES: dict[str, np.dtype] = {"float16": np.dtype("<f2"), "float32": np.dtype("<f4")}
"""Payload dtypes; the payload is always little-endian."""

MAX_TOPIC_BYTES = 64
MAX_HEADER_BYTES = 64 * 1024
MAX_PAYLOAD_BYTES = N_VERTICES * 4
"""Largest valid payload: one float32 prediction. Anything bigger is rejected as oversized."""
MAX_DEPTH = 32
MAX_WORDS = 256
"""Most words one prediction header carries (the newest; texts cut at MAX_WORD_CHARS)."""
MAX_WORD_CHARS = 100
"""Deepest nesting of arrays and objects in a header (a flat object is 1; ours reach 4)."""

_I64 = 2**63
_F64_MAX = int(sys.float_info.max)  # float64's largest as an int: int-int compares are fast

FSAVERAGE5 = {
    "name": "fsaverage5",
    "n_vertices": N_VERTICES,
    "hemispheres": {"left": [0, N_VERTICES_HEMI], "right": [N_VERTICES_HEMI, N_VERTICES]},
}
"""The mesh of every v1 prediction: left hemisphere rows [0, 10242), right [10242, 20484)."""


REJECT_REASONS = frozenset(
    (
        "frame-count foreign-topic oversized bad-header non-finite version kind-mismatch "
        "missing-field bad-field dtype shape payload-size"
    ).split()
)
"""Every `MessageRejected.reason` of `decode` (docs/PROTOCOL.md, "Validation"; the Subscriber
adds `stale-seq`)."""


class MessageRejected(ProtocolError):
    """A message that breaks docs/PROTOCOL.md; `reason` is a short code for counting."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(slots=True)
class Message:
    """One decoded message; `values` a read-only view over the received frame (no copy). The
    subscriber fills in `received` (Unix time) and `missed_before` (lost just before this one)."""

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
        if self.topic not in ("prediction", "subcortical") or self.values is None:
            raise ProtocolError(f"a {self.topic} message carries no prediction")
        h = self.header
        return Prediction(
            space=None if self.topic == "prediction" else h["space"]["name"],
            second=h["second"],
            values=self.values.astype(np.float32),
            stimulus=(float(h["stimulus"][0]), float(h["stimulus"][1])),
            bold_time=float(h["bold_time"]),
            timings={k: v for k, v in h.get("timings", {}).items() if v is not None},
            counters=dict(h.get("counters", {})),
            words=[Word(t, float(on), float(d)) for t, on, d in h.get("words", ())],
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
    """A flat str -> number dict as the protocol carries it: bools as 0/1, and numbers JSON or
    float64 cannot hold (NaN, infinities, integers beyond float64's range) as null."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if v is None:
            out[str(k)] = None
        elif isinstance(v, bool | int | np.integer):
            i = int(v)
            out[str(k)] = i if -_F64_MAX <= i <= _F64_MAX else None
        else:
            f = float(v)
            out[str(k)] = f if math.isfinite(f) else None
    return out


def _check_tree(value: Any, what: str) -> None:
    """Raise InputError if `value` (JSON data) nests deeper than a decoder accepts."""
    problem = _tree_problem(value)
    if problem is not None and problem.reason == "bad-header":
        raise InputError(f"{what} nests deeper than {MAX_DEPTH} levels; flatten it")


def _payload(values: np.ndarray, wire: np.dtype) -> bytes:
    """Values as little-endian `wire` bytes (beyond float16's +-65504: +-inf).

    With torch already loaded (never imported here), float32 -> float16 is its F16C cast: NumPy's
    bits (but a signalling NaN comes out quiet), about 5x faster. Arrays torch cannot wrap as
    they are (read-only, strided, not float32) take NumPy's cast.
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


def _base(kind: str, *, stream_id: str, session: str, seq: int, publish_wall: float) -> dict:
    """The fields every header has; the encoders' `**ids` are these keyword arguments."""
    ids = dict(v=PROTOCOL_VERSION, kind=kind, stream_id=stream_id, session=session)
    return dict(ids, seq=seq, publish_wall=publish_wall)


class PredictionEncoder:
    """Encodes the predictions of one publisher session: the fields fixed for the session (ids,
    dtype, shape, mesh, model, `t0_wall`) serialised once, each prediction's own ones each time."""

    def __init__(
        self,
        *,
        stream_id: str,
        session: str,
        dtype: str = "float16",
        model: Mapping[str, Any] | None = None,
        mesh: Mapping[str, Any] | None = None,
        t0_wall: float | None = None,
        space: Mapping[str, Any] | None = None,
    ):
        if dtype not in DTYPES:
            raise InputError(f"dtype {dtype!r} is not supported; use one of {sorted(DTYPES)}")
        self.dtype = dtype
        self._wire = DTYPES[dtype]
        self.topic = "prediction" if space is None else str(space.get("name"))
        self.n_outputs = N_VERTICES
        fixed = dict(v=PROTOCOL_VERSION, kind=self.topic, stream_id=stream_id, session=session)
        fixed.update(t0_wall=jsonable(t0_wall), dtype=dtype)
        if space is None:
            fixed.update(shape=[N_VERTICES], mesh=jsonable(mesh or FSAVERAGE5))
        else:
            fixed["space"] = jsonable(space)
            if self.topic not in HEADS or not _is_space(fixed["space"]):
                raise InputError(
                    f"output space {fixed['space']!r:.80} is not one the protocol carries: "
                    f"{{name: one of {sorted(HEADS)}, kind: str, n_outputs: 1..{N_VERTICES}}}"
                )
            self.n_outputs = fixed["space"]["n_outputs"]
        fixed["model"] = jsonable(model or {})
        _check_tree(fixed, "the stream's mesh or model identity")
        if space is None and not _is_mesh(fixed["mesh"]):
            raise InputError(f"mesh {fixed['mesh']!r:.80} is not a mesh (docs/PROTOCOL.md)")
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
        if values.shape != (self.n_outputs,):
            where = "fsaverage5 values (left hemisphere first)" if self.topic == "prediction" else (
                f"{self.topic} outputs")  # fmt: skip
            raise InputError(
                f"prediction values have shape {values.shape}; the protocol carries "
                f"({self.n_outputs},) {where}"
            )
        second = int(prediction.second)
        if not -_I64 <= second < _I64:
            raise InputError(f"second {second} does not fit the protocol's 64-bit integer")
        timings = _numbers(prediction.timings)
        if publish_time is not None:
            timings["publish"] = publish_time
        own = {
            "seq": seq,
            "publish_wall": publish_wall,
            "second": second,
            "stimulus": [float(prediction.stimulus[0]), float(prediction.stimulus[1])],
            "bold_time": float(prediction.bold_time),
            "timings": timings,
            "counters": _numbers(prediction.counters),
        }
        if prediction.words:
            own["words"] = _words(prediction.words)
        header = _dumps(own)[:-1] + self._fixed
        return [TOPICS[self.topic], header, _payload(values, self._wire)]


def _words(words: Sequence[Word]) -> list[list]:
    """Words as a header carries them: `[text, onset, duration]`, the newest MAX_WORDS, texts
    cut at MAX_WORD_CHARS (lone surrogates replaced), words with non-finite times left out."""
    out = []
    for w in list(words)[-MAX_WORDS:]:
        onset, duration = float(w.onset), float(w.duration)
        if math.isfinite(onset) and math.isfinite(duration):
            text = str(w.text)[:MAX_WORD_CHARS].encode("utf-8", "replace").decode()
            out.append([text, onset, duration])
    return out


def encode_prediction(
    prediction: Prediction,
    *,
    seq: int,
    publish_wall: float,
    publish_time: float | None = None,
    **session: Any,
) -> list[bytes]:
    """Frames for one prediction, from a one-off PredictionEncoder (publishers keep theirs) of
    `session`, its arguments (`stream_id`, `session`, `dtype`, `model`, `mesh`, `t0_wall`)."""
    encoder = PredictionEncoder(**session)
    return encoder.encode(prediction, seq=seq, publish_wall=publish_wall, publish_time=publish_time)


def encode_status(
    counters: Mapping[str, Any],
    *,
    next_seq: int,
    stream_time: float | None = None,
    ended: bool = False,
    **ids: Any,
) -> list[bytes]:
    """Frames for a heartbeat. `next_seq` is the seq the next prediction will carry; `ended`:
    the stream's last message (its publisher is closing); `ids`: `stream_id`, `session`, `seq`,
    `publish_wall`."""
    header = _base("status", **ids)
    header.update(next_seq=next_seq, stream_time=stream_time, counters=_numbers(counters))
    if ended:
        header["ended"] = True
    return [TOPICS["status"], _dumps(header), b""]


def encode_roi(
    means: np.ndarray,
    prediction: Prediction,
    *,
    atlas: str,
    prediction_seq: int,
    topic: str = "roi",
    **ids: Any,
) -> list[bytes]:
    """Frames for one prediction's region means (`(R,)`, float32 on the wire): the `tribe.roi`
    topic, region names in the metadata's `regions`, in payload order; `topic="structures"`: a
    subcortical prediction's structure means, named by the metadata's
    `spaces.subcortical.regions`. `ids`: as status."""
    values = np.ascontiguousarray(means, dtype=DTYPES["float32"])
    if values.ndim != 1 or not 1 <= len(values) <= N_VERTICES:
        raise InputError(
            f"region means of shape {values.shape}; expected (R,), 1 <= R <= {N_VERTICES}"
        )
    header = _base(topic, **ids)
    header.update(
        second=int(prediction.second),
        stimulus=[float(prediction.stimulus[0]), float(prediction.stimulus[1])],
        bold_time=float(prediction.bold_time),
        atlas=str(atlas),
        n_regions=len(values),
        dtype="float32",
        prediction_seq=int(prediction_seq),
    )
    if not math.isfinite(header["bold_time"]):
        raise InputError(f"bold_time {header['bold_time']} is not finite")
    return [TOPICS[topic], _dumps(header), values.tobytes()]


def encode_metadata(metadata: Mapping[str, Any], *, next_seq: int, **ids: Any) -> list[bytes]:
    """Frames for the stream metadata (`metadata` must be JSON data; reserved keys are set here;
    `ids` as status). Raises InputError for metadata a decoder would reject (too deep, too big).
    """
    header = dict(metadata)
    header.update(_base("metadata", **ids))
    header["next_seq"] = next_seq
    _check_tree(header, "the stream metadata")
    data = _dumps(header)
    if len(data) > MAX_HEADER_BYTES:
        raise InputError(
            f"the stream metadata is {len(data)} bytes as JSON; the protocol allows "
            f"{MAX_HEADER_BYTES} per header"
        )
    return [TOPICS["metadata"], data, b""]


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
#
# HEADERS declares each topic's header fields once: name, type, required or not, and the reason
# a bad value gets. `decode` derives from it both its fast path (`Schema.accepts`: the common
# case, in one pass) and the first thing wrong (`_validate`); tests/test_protocol_doc.py holds
# docs/PROTOCOL.md's tables to it.


class _NonFinite(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NonFinite(name)


_DECODER = json.JSONDecoder(parse_constant=_no_constant)
_scan = _DECODER.scan_once


def _parse(header_mv: memoryview) -> dict[str, Any]:
    """The header frame as a dict, or MessageRejected: UTF-8 JSON without NaN/Infinity, an object."""
    try:
        text = str(header_mv, "utf-8")
    except UnicodeDecodeError as exc:
        raise MessageRejected(
            "bad-header", f"header is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    try:
        try:  # the scanner alone (no whitespace around a header we sent): faster than loads
            header, end = _scan(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            header = _DECODER.decode(text)  # whitespace around it, or the error
    except _NonFinite as exc:
        raise MessageRejected(
            "non-finite", f"header has a {exc} literal (non-finite numbers are sent as null)"
        ) from None
    except RecursionError:
        raise MessageRejected(
            "bad-header", f"header nests deeper than {MAX_DEPTH} levels"
        ) from None
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4300 digits
        raise MessageRejected("bad-header", f"header is not JSON ({exc})") from None
    if type(header) is not dict:
        raise MessageRejected("bad-header", f"header is a JSON {type(header).__name__}, not object")
    return header


def _tree_problem(value: Any, limit: int = MAX_DEPTH) -> MessageRejected | None:
    """Why JSON data `value` cannot be accepted: nested more than `limit` arrays/objects, or a
    number that overflowed float64 (`1e400` parses as inf). Iterative: deep data cannot recurse."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        kind = type(node)
        if kind is float:
            if node - node != 0.0:  # inf - inf is NaN
                return MessageRejected("non-finite", "header has a number beyond float64's range")
        elif kind is dict or kind is list:
            if depth > limit:
                return MessageRejected("bad-header", f"header nests deeper than {MAX_DEPTH} levels")
            for child in node.values() if kind is dict else node:
                if type(child) in _WALK:
                    stack.append((child, depth + 1))
    return None


_WALK = frozenset({dict, list, float})


def _is_num(x: Any) -> bool:
    """A finite number that float64 holds (bools are not numbers)."""
    kind = type(x)
    if kind is float:
        return x - x == 0.0  # inf - inf and NaN - NaN are NaN
    return kind is int and -_F64_MAX <= x <= _F64_MAX


def _is_numbers(x: Any) -> bool:
    """`{str: number | null}` (JSON keys are always strings)."""
    if type(x) is not dict:
        return False
    for v in x.values():
        if v is not None and not ((type(v) is float and v - v == 0.0) or _is_num(v)):
            return False
    return True


def _is_text(x: Any) -> bool:
    """A string that is valid Unicode (JSON's \\ud800 escapes can make lone surrogates)."""
    return type(x) is str and (x.isascii() or _SURROGATE.search(x) is None)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _is_rows(x: Any) -> bool:
    """[start, stop): two ints, 0 <= start <= stop <= N_VERTICES."""
    two_ints = type(x) is list and len(x) == 2 and type(x[0]) is type(x[1]) is int
    return two_ints and 0 <= x[0] <= x[1] <= N_VERTICES


def _is_mesh(x: Any) -> bool:
    """An object; where present, `name` a str, `n_vertices` an int, `hemispheres` an object with
    `left` and `right` as [start, stop) rows of the payload (what the LSL bridge labels)."""
    if type(x) is not dict:
        return False
    if x == FSAVERAGE5:
        return True
    hemispheres = x.get("hemispheres", FSAVERAGE5["hemispheres"])
    return (
        type(x.get("name", "")) is str
        and type(x.get("n_vertices", 0)) is int
        and type(hemispheres) is dict
        and _is_rows(hemispheres.get("left"))
        and _is_rows(hemispheres.get("right"))
        and _is_shallow(x)
    )


def _is_regions(x: Any) -> bool:
    """The metadata's `regions`: {atlas: str, names: [str, ...], units: str (optional)}."""
    if type(x) is not dict or not _is_text(x.get("atlas")) or not _is_text(x.get("units", "")):
        return False
    names = x.get("names")
    ok = type(names) is list and 0 < len(names) <= N_VERTICES and all(map(_is_text, names))
    return ok and _is_shallow(x)


def _is_space(x: Any) -> bool:
    """An output space: {name: str, kind: str, n_outputs: int in [1, N_VERTICES], ...}."""
    if type(x) is not dict or not _is_text(x.get("name")) or not _is_text(x.get("kind")):
        return False
    n = x.get("n_outputs")
    return type(n) is int and 1 <= n <= N_VERTICES and _is_shallow(x)


def _is_spaces(x: Any) -> bool:
    """The metadata's `spaces`: {head name: space, its `regions` (optional) as `_is_regions`}."""
    if type(x) is not dict:
        return False
    for v in x.values():
        if not _is_space(v) or ("regions" in v and not _is_regions(v["regions"])):
            return False
    return True


def _is_words(x: Any) -> bool:
    """A prediction's `words`: at most MAX_WORDS `[text, onset, duration]`."""
    if type(x) is not list or len(x) > MAX_WORDS:
        return False
    for w in x:
        if not (type(w) is list and len(w) == 3 and _is_text(w[0]) and len(w[0]) <= MAX_WORD_CHARS):
            return False
        if not (_is_num(w[1]) and _is_num(w[2])):
            return False
    return True


def _is_shallow(x: dict | list) -> bool:
    """A field's value nests at most MAX_DEPTH - 1 levels and holds only finite numbers (a flat
    one is seen at once). Checks of types that may nest end with it."""
    for v in x.values() if type(x) is dict else x:
        kind = type(v)
        if kind is dict or kind is list or (kind is float and v - v != 0.0):
            return _tree_problem(x, MAX_DEPTH - 1) is None
    return True


class Type(NamedTuple):
    """A header value's type: `doc`, its wording in PROTOCOL.md and rejections; `test`, a Python
    expression (constant text) true when `x` is one, nothing too deep or non-finite in it."""

    doc: str
    test: str


class Field(NamedTuple):
    """A header field. `reason`: the rejection when its value fails, and when it is absent
    (`missing-field` instead where that is `bad-field`)."""

    name: str
    type: Type
    required: bool = True
    reason: str = "bad-field"


class Schema(NamedTuple):
    """A topic's header fields in judging order, its payload bytes (a number or a function of a
    valid header), and its fast path, made from the fields."""

    fields: tuple[Field, ...]
    payload: int | Callable[[dict], int]
    accepts: Callable[[dict, int], bool]


@functools.cache
def _check(test: str) -> Callable[[Any], bool]:
    """A Type's test as a function, for `_validate`."""
    return eval(f"lambda x: {test}")  # in this module's globals


TEXT = Type("str", "type(x) is str and (x.isascii() or _is_text(x))")
SEQ = Type("int in [0, 2⁶³)", "type(x) is int and 0 <= x < _I64")
INT64 = Type("int64", "type(x) is int and -_I64 <= x < _I64")
FLOAT = Type("float", "(type(x) is float and x - x == 0.0) or _is_num(x)")
OPT_FLOAT = Type("float|null", "x is None or _is_num(x)")
NUMBERS = Type("{str: number|null}", "_is_numbers(x)")
STIMULUS = Type(
    "[float, float]", "type(x) is list and len(x) == 2 and _is_num(x[0]) and _is_num(x[1])"
)
OBJECT = Type("object", "type(x) is dict and _is_shallow(x)")
MESH = Type("mesh", "x == FSAVERAGE5 or _is_mesh(x)")
DTYPE = Type("float16|float32", "type(x) is str and x in DTYPES")
SHAPE = Type(f"[{N_VERTICES}]", "x == [N_VERTICES] and type(x[0]) is int")
WORDS = Type("[[str, float, float], …]", "_is_words(x)")
N_REGIONS = Type(f"int in [1, {N_VERTICES}]", "type(x) is int and 1 <= x <= N_VERTICES")
SPACE = Type("space", "_is_space(x)")


def _schema(topic: str, payload: int | Callable[[dict], int], *own: Field) -> Schema:
    """A topic's Schema: the fields every header has, then `own`.

    Its fast path has every field's test inlined in one function (a call per field would cost
    as much again as the tests); it refuses a header with fields it does not know (walked then).
    """
    fields = (
        Field("v", Type("1 (int)", "type(x) is int and x == PROTOCOL_VERSION"), reason="version"),
        Field("kind", Type("the topic's name (str)", f"x == {topic!r}"), reason="kind-mismatch"),
        Field("stream_id", TEXT),
        Field("session", TEXT),
        Field("seq", SEQ),
        Field("publish_wall", FLOAT),
        *own,
    )
    src = [
        "def accepts(h, n, names=names, size=size):",
        " if not names.issuperset(h): return False",
        " try:",
    ]
    for f in fields:
        if f.required:
            src += [f"  x = h[{f.name!r}]", f"  if not ({f.type.test}): return False"]
    src.append(" except KeyError: return False")
    for f in fields:
        if not f.required:
            test = f"x is h or ({f.type.test})"  # h: absent (no value is the header itself)
            src += [f" x = h.get({f.name!r}, h)", f" if not ({test}): return False"]
    src.append(f" return n == {payload if type(payload) is int else 'size(h)'}")
    scope = {"names": frozenset(f.name for f in fields), "size": payload}
    exec("\n".join(src), globals(), scope)  # the module's globals: its helpers, live
    return Schema(fields, payload, scope["accepts"])


_N_COMMON = 6  # the fields every header has: the first six of each schema

_PREDICTION_FIELDS = (
    Field("second", INT64),
    Field("stimulus", STIMULUS),
    Field("bold_time", FLOAT),
    Field("timings", NUMBERS),
    Field("counters", NUMBERS, required=False),
    Field("words", WORDS, required=False),
    Field("t0_wall", OPT_FLOAT, required=False),
)
_ROI_FIELDS = (
    Field("second", INT64),
    Field("stimulus", STIMULUS),
    Field("bold_time", FLOAT),
    Field("atlas", TEXT),
    Field("prediction_seq", SEQ),
    Field("n_regions", N_REGIONS),
    Field("dtype", Type("float32", "x == 'float32'"), reason="dtype"),
)

HEADERS: dict[str, Schema] = {
    "prediction": _schema("prediction", lambda h: N_VERTICES * DTYPES[h["dtype"]].itemsize,
        *_PREDICTION_FIELDS,
        Field("mesh", MESH),
        Field("model", OBJECT),
        Field("dtype", DTYPE, reason="dtype"),
        Field("shape", SHAPE, reason="shape")),
    "status": _schema("status", 0,
        Field("next_seq", SEQ),
        Field("counters", NUMBERS),
        Field("stream_time", OPT_FLOAT, required=False),
        Field("ended", Type("true", "x is True"), required=False)),
    "metadata": _schema("metadata", 0,
        Field("next_seq", SEQ),
        Field("dtype", Type("str", "type(x) is str"), required=False),
        Field("shape", Type("list", "type(x) is list and _is_shallow(x)"), required=False),
        Field("mesh", MESH, required=False),
        Field("model", OBJECT, required=False),
        Field("software", OBJECT, required=False),
        Field("t0_wall", OPT_FLOAT, required=False),
        Field("hemodynamic_offset_s", FLOAT, required=False),
        Field("regions", Type("regions", "_is_regions(x)"), required=False),
        Field("spaces", Type("spaces", "_is_spaces(x)"), required=False)),
    "roi": _schema("roi", lambda h: 4 * h["n_regions"], *_ROI_FIELDS),
    "subcortical": _schema("subcortical",
        lambda h: h["space"]["n_outputs"] * DTYPES[h["dtype"]].itemsize,
        *_PREDICTION_FIELDS,
        Field("space", SPACE, reason="shape"),
        Field("model", OBJECT),
        Field("dtype", DTYPE, reason="dtype")),
    "structures": _schema("structures", lambda h: 4 * h["n_regions"], *_ROI_FIELDS),
}  # fmt: skip
"""Every topic's header schema (docs/PROTOCOL.md, "Messages"); unknown fields are allowed."""


def _judge(field: Field, header: dict) -> None:
    name, (doc, test), required, reason = field
    if name not in header:
        if required:
            missing = "missing-field" if reason == "bad-field" else reason
            raise MessageRejected(missing, f"header has no {name!r}")
    elif not _check(test)(header[name]):
        shown = reprlib.repr(header[name])  # short, whatever the depth
        raise MessageRejected(reason, f"header field {name!r} must be {doc}, got {shown}")


def _validate(topic: str, header: dict, payload_bytes: int) -> None:
    """Raise MessageRejected for the first thing wrong, or return (unknown fields are fine).

    `v` and `kind` first (another version or topic may differ in anything), then the header's
    depth and numbers, then the fields in order; the payload's size after the common fields where
    it is fixed (status, metadata), else after all.
    """
    schema = HEADERS[topic]
    for field in schema.fields[:2]:
        _judge(field, header)
    problem = _tree_problem(header)
    if problem is not None:
        raise problem
    fixed = type(schema.payload) is int
    split = _N_COMMON if fixed else len(schema.fields)
    for field in schema.fields[2:split]:
        _judge(field, header)
    expected = schema.payload if fixed else schema.payload(header)
    if payload_bytes != expected:
        raise MessageRejected(
            "payload-size",
            f"payload of {payload_bytes} bytes; this {topic} header needs {expected}",
        )
    for field in schema.fields[split:]:
        _judge(field, header)


def decode(frames: Sequence[Any]) -> Message:
    """Validate and decode `[topic, header, payload]` (bytes, memoryviews or zmq.Frames).

    Values come back as a read-only NumPy view over the payload frame (no copy). Raises only
    MessageRejected (with `.reason`), whatever the frames; what it returns has every field right.
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
    if header_mv.nbytes > MAX_HEADER_BYTES or payload_mv.nbytes > MAX_PAYLOAD_BYTES:
        sizes = f"header {header_mv.nbytes}, payload {payload_mv.nbytes}"
        limits = f"{MAX_HEADER_BYTES} and {MAX_PAYLOAD_BYTES}"
        raise MessageRejected("oversized", f"frames of {sizes} bytes (limits {limits})")
    header = _parse(header_mv)
    if not HEADERS[topic].accepts(header, payload_mv.nbytes):
        _validate(topic, header, payload_mv.nbytes)
    if topic == "status" or topic == "metadata":
        return Message(topic, header)
    values = np.frombuffer(payload_mv, dtype=DTYPES[header["dtype"]])
    values.flags.writeable = False
    return Message(topic, header, values)


# ---------------------------------------------------------------------------------------------
# CURVE keys (ZeroMQ's Z85 text form, 40 characters; files as written by zmq.auth)

_Z85 = re.compile(rb"^[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}$")


def _key(spec: str | bytes | os.PathLike, neither: str) -> bytes | tuple[Path, Any, Any]:
    """The Z85 key text `spec` is, else (path, public, secret) of the key file it names."""
    if not isinstance(spec, os.PathLike):
        raw = (spec.encode() if isinstance(spec, str) else spec).strip()
        if _Z85.match(raw):
            return raw
    path = Path(os.fsdecode(spec))
    if not path.is_file():
        raise InputError(f"{spec!s:.60} is neither {neither}")
    import zmq.auth

    try:
        return path, *zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise InputError(
            f"cannot read the CURVE key file {path}: {exc}; make keys with `tribe-stream keys DIR`"
        ) from None


def load_public_key(spec: str | bytes | os.PathLike) -> bytes:
    """A public key from its 40-character Z85 text or a key file (`NAME.key`)."""
    key = _key(spec, "a 40-character Z85 public key nor a key file; make keys with "
                     "`tribe-stream keys DIR`")  # fmt: skip
    if isinstance(key, tuple) and key[1] is None:
        raise InputError(f"{key[0]} holds no public key")
    return key[1] if isinstance(key, tuple) else key


def load_keypair(spec: str | bytes | os.PathLike) -> tuple[bytes, bytes]:
    """(public, secret) from a secret key file (`NAME.key_secret`) or a Z85 secret key."""
    import zmq

    key = _key(spec, "a Z85 secret key nor a secret key file (NAME.key_secret from "
                     "`tribe-stream keys DIR`)")  # fmt: skip
    if not isinstance(key, tuple):
        return zmq.curve_public(key), key
    if None in key:
        raise InputError(f"{key[0]} holds no secret key: pass the NAME.key_secret file")
    return key[1], key[2]


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


def check_endpoint(url: str, *, bind: bool = True) -> str:
    """`url` if it is a ZeroMQ endpoint we can use: tcp://HOST:PORT (PORT 1-65535, or * to bind
    any free port), ipc://PATH or inproc://NAME; else one InputError line naming the fix."""
    parts = urlsplit(str(url))
    if parts.scheme in ("ipc", "inproc") and (parts.netloc or parts.path):
        return url
    if parts.scheme != "tcp" or not parts.hostname:
        raise InputError(
            f"{url!r} is not a ZeroMQ endpoint: use tcp://HOST:PORT, e.g. {DEFAULT_URL}"
        )
    port = parts.netloc.rsplit(":", 1)[-1] if ":" in parts.netloc else ""
    if port == "*" and bind:
        return url
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InputError(f"{url!r}: the port must be a number from 1 to 65535 (or * for any)")
    return url


def is_local(url: str) -> bool:
    """True for endpoints only this machine can reach (loopback TCP, ipc, inproc)."""
    parts = urlsplit(url)
    if parts.scheme in ("ipc", "inproc"):
        return True
    host = (parts.hostname or "").strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


# ---------------------------------------------------------------------------------------------
# Command-line options (here, not in publish/client, so that building the CLI imports no zmq)


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
