"""Property-based fuzzing of the wire format (hypothesis).

(a) `decode` of any frames raises nothing but MessageRejected (with a documented reason), and
    what it accepts has every field a consumer relies on of the right type;
(b) whatever `decode` accepts, `RecordingWriter` writes and `read_recording` reads back;
(c) valid predictions round-trip exactly (and take the decoder's fast path).

Headers are made from valid ones with fields set to arbitrary JSON, huge integers, deep nesting,
NaN/Infinity literals, overflowing numbers and wrong types. Sized for a 2-core CI machine.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tribe_stream import N_VERTICES
from tribe_stream.protocol import (
    DTYPES,
    FSAVERAGE5,
    HEADERS,
    MAX_DEPTH,
    REJECT_REASONS,
    TOPICS,
    MessageRejected,
    _parse,
    _validate,
    decode,
    encode_metadata,
    encode_prediction,
    encode_roi,
    encode_status,
    stream_metadata,
)
from tribe_stream.recording import RecordingWriter, _metadata_from_header, read_recording
from tribe_stream.types import Prediction

FUZZ: dict[str, Any] = dict(
    deadline=None,
    database=None,  # no .hypothesis/ folder in the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
I64 = 2**63
IDS = {"stream_id": "fuzz", "session": "0123456789abcdef"}
RNG_VALUES = np.random.default_rng(0).standard_normal(N_VERTICES).astype(np.float32)


class Raw:
    """JSON text put into a header as is (what json.dumps would not write)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:30]!r}{'...' if len(self.text) > 30 else ''})"


RAW = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-2.5E+999",
    "1" + "0" * 400,  # an int beyond float64
    "9" * 4000,
    "9" * 5000,  # beyond Python's int-from-text limit
    "9223372036854775808",
    "-9223372036854775809",
    '"\\ud800"',  # a lone surrogate
    "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1),
    "[" * MAX_DEPTH + "]" * MAX_DEPTH,
    "[" * 900 + "]" * 900,  # parses, too deep for a recorder's json.dumps
    "[" * 20_000 + "]" * 20_000,  # RecursionError in the parser
    "[" * 30_000,  # unbalanced
    '{"a":' * 2_000 + "1" + "}" * 2_000,
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([I64 - 1, I64, -I64, -I64 - 1, 2**70, 10**308, 10**309, -(10**400)]),
    st.floats(),  # NaN and infinities included: json.dumps writes them as literals
    st.text(max_size=12),
    st.integers(0, len(RAW) - 1).map(lambda i: Raw(RAW[i])),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [
    *"v kind stream_id session seq publish_wall second stimulus bold_time timings counters".split(),
    *"t0_wall dtype shape mesh model next_seq stream_time hemodynamic_offset_s software".split(),
]
keys = st.one_of(st.sampled_from(FIELDS), st.text(max_size=8))
paths = st.one_of(
    st.tuples(keys),
    st.tuples(st.sampled_from(["timings", "counters", "model", "mesh", "software"]), keys),
    st.tuples(st.sampled_from(["stimulus", "shape"]), st.integers(0, 2)),
    st.tuples(st.just("mesh"), st.just("hemispheres"), st.sampled_from(["left", "right"])),
)
edges = st.one_of(
    st.sampled_from([I64, -I64 - 1, 2**70, -1, 10**309, True, None, "7", [], {}, [1, 2], 1.5]),
    st.integers(0, len(RAW) - 1).map(lambda i: Raw(RAW[i])),
)
mutation = st.one_of(
    st.tuples(st.just("set"), paths, json_values),
    st.tuples(st.just("set"), st.tuples(st.sampled_from(FIELDS)), edges),  # a known field, hard
    st.tuples(st.just("set"), st.tuples(st.sampled_from(["timings", "counters"]), keys), edges),
    st.tuples(st.just("del"), paths, st.none()),
)
# mutations that keep a header valid, so that (b) sees plenty of accepted messages
finite = st.one_of(st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False))
harmless = st.one_of(
    st.tuples(st.just("set"), st.tuples(st.sampled_from(["timings", "counters"]), st.text(max_size=6)), finite | st.none()),
    st.tuples(st.just("set"), st.tuples(st.just("model"), st.text(max_size=6)), json_values),
    st.tuples(st.just("set"), st.tuples(st.text(min_size=1, max_size=6).map(lambda k: "x-" + k)), json_values),
    st.tuples(st.just("set"), st.tuples(st.sampled_from(["bold_time", "publish_wall", "t0_wall"])), finite),
    st.tuples(st.just("set"), st.tuples(st.sampled_from(["seq", "second"])), st.integers(0, I64 - 1)),
)  # fmt: skip


def apply(header: dict, change: tuple) -> None:
    op, path, value = change
    value = copy.deepcopy(value)  # sampled_from hands out the same [] and {} every time
    node: Any = header
    for key in path[:-1]:
        if isinstance(node, dict) and isinstance(node.get(key), dict | list):
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            break
    last = path[-1]
    if isinstance(node, list):
        if isinstance(last, int) and last < len(node):
            if op == "del":
                del node[last]
            else:
                node[last] = value
        elif op == "set":
            node.append(value)
    elif isinstance(node, dict):
        if op == "del":
            node.pop(last, None)
        else:
            node[str(last)] = value


def dumps(header: Any) -> bytes:
    """JSON text of a header, with each Raw value spliced in as it is."""
    raws: list[str] = []

    def mark(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"@@raw{len(raws) - 1}@@"
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    text = json.dumps(mark(header))
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@raw{i}@@"', raw, 1)
    return text.encode("utf-8", "surrogatepass")


def base_frames(kind: str, seq: int) -> list[bytes]:
    if kind == "prediction":
        p = Prediction(seq, RNG_VALUES, (seq, seq + 1.0), seq + 5.0, {"capture": 0.5}, {"d": 1})
        return encode_prediction(
            p, **IDS, seq=seq, publish_wall=1.7e9, model={"name": "m"}, t0_wall=1.6e9
        )
    if kind == "status":
        return encode_status({"lag_s": 0.1}, **IDS, seq=seq, publish_wall=1.7e9, next_seq=seq)
    if kind == "roi":
        p = Prediction(seq, RNG_VALUES, (seq, seq + 1.0), seq + 5.0)
        means = RNG_VALUES[:9].astype(np.float32)
        return encode_roi(
            means, p, atlas="a", **IDS, seq=seq, publish_wall=1.7e9, prediction_seq=seq
        )
    meta = stream_metadata(stream_id="fuzz", dtype="float16", model={"name": "m"}, extra={"a": 1})
    return encode_metadata(meta, **IDS, seq=seq, publish_wall=1.7e9, next_seq=seq)


@st.composite
def near_valid(draw, changes=mutation) -> list[bytes]:
    kind = draw(st.sampled_from(["prediction", "prediction", "status", "metadata", "roi"]))
    frames = base_frames(kind, draw(st.integers(0, 1000)))
    header = json.loads(frames[1])
    own_field = st.tuples(st.just("set"), st.tuples(st.sampled_from(sorted(header))), edges)
    for change in draw(st.lists(own_field | own_field | changes, max_size=3)):
        apply(header, change)
    topic = draw(st.sampled_from([frames[0]] * 8 + [*TOPICS.values(), b"tribe.prediction.v9"]))
    payload = frames[2]
    cut = draw(st.sampled_from([None] * 10 + [0, 1, 2, 40_968, 81_936, 81_937]))
    if cut is not None:
        payload = (payload * 3)[:cut]
    return [topic, dumps(header), payload]


def checked_decode(frames: list) -> Any:
    """decode, and check the contract: MessageRejected with a known reason, or a sound message."""
    try:
        msg = decode(frames)
    except MessageRejected as exc:
        assert exc.reason in REJECT_REASONS, exc.reason
        event(f"rejected: {exc.reason}")
        return None
    event(f"accepted: {msg.topic}")
    h = msg.header
    assert msg.topic in TOPICS and h["kind"] == msg.topic and h["v"] == 1
    json.dumps(h, allow_nan=False)  # no NaN/inf anywhere, and not too deep to write again
    assert isinstance(h["stream_id"], str) and isinstance(h["session"], str)
    h["stream_id"].encode("utf-8")
    assert type(h["seq"]) is int and 0 <= h["seq"] < I64
    assert math.isfinite(float(h["publish_wall"]))
    if msg.topic == "prediction":
        assert type(h["second"]) is int and -I64 <= h["second"] < I64
        assert len(h["stimulus"]) == 2 and all(math.isfinite(float(x)) for x in h["stimulus"])
        assert math.isfinite(float(h["bold_time"]))
        for numbers in (h["timings"], h.get("counters", {})):
            assert all(v is None or math.isfinite(float(v)) for v in numbers.values())
            assert not any(isinstance(v, bool) for v in numbers.values())
        assert h.get("t0_wall") is None or math.isfinite(float(h["t0_wall"]))
        assert msg.values.shape == (N_VERTICES,) and msg.values.dtype == DTYPES[h["dtype"]]
        assert not msg.values.flags.writeable
        msg.to_prediction()
    elif msg.topic == "roi":
        assert type(h["second"]) is int and -I64 <= h["second"] < I64
        assert math.isfinite(float(h["bold_time"])) and isinstance(h["atlas"], str)
        assert msg.values.shape == (h["n_regions"],) and msg.values.dtype == np.float32
        assert 1 <= h["n_regions"] <= N_VERTICES and not msg.values.flags.writeable
    else:
        assert msg.values is None and type(h["next_seq"]) is int and 0 <= h["next_seq"] < I64
        if msg.topic == "status":
            assert all(v is None or math.isfinite(float(v)) for v in h["counters"].values())
    return msg


# -- (a) decode never raises anything but MessageRejected ------------------------------------------


@settings(max_examples=600, **FUZZ)
@given(near_valid())
def test_decode_of_near_valid_headers_raises_only_message_rejected(frames):
    checked_decode(frames)
    try:  # the fast path never accepts what the slow one refuses
        header = _parse(memoryview(frames[1]))
    except MessageRejected:
        return
    v = header.get("v")  # compared on prediction headers of this version
    if type(v) is int and v == 1 and header.get("kind") == "prediction":
        if HEADERS["prediction"].accepts(header, len(frames[2])):
            _validate("prediction", header, len(frames[2]))


any_frame = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([*TOPICS.values(), b"{}", b"[]", b'{"v":1}', b"\0" * 40_968]),
)


@settings(max_examples=300, **FUZZ)
@given(
    st.lists(any_frame, min_size=3, max_size=3) | st.lists(any_frame, max_size=5),
    st.sampled_from([None, *TOPICS.values()]),
)
def test_decode_of_arbitrary_frames_raises_only_message_rejected(frames, topic):
    if topic is not None and frames:
        frames[0] = topic
    checked_decode(frames)


@settings(max_examples=300, **FUZZ)
@given(
    st.sampled_from(["prediction", "status", "metadata"]),
    st.lists(st.tuples(st.integers(0, 600), st.binary(min_size=1, max_size=6)), max_size=4),
    st.integers(0, 600),
)
def test_decode_of_corrupted_header_bytes_raises_only_message_rejected(kind, edits, cut):
    frames = base_frames(kind, 3)
    text = bytearray(frames[1])
    for at, data in edits:
        text[at : at + len(data)] = data
    checked_decode([frames[0], bytes(text[: max(cut, 1)] if cut < 40 else text), frames[2]])


def _finite(x: Any) -> bool:
    """An independent oracle: JSON data with no NaN or infinity in it."""
    if isinstance(x, float):
        return math.isfinite(x)
    if isinstance(x, dict):
        return all(map(_finite, x.values()))
    if isinstance(x, list):
        return all(map(_finite, x))
    return True


def _num(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, int):
        return abs(x) <= 1.7976931348623157e308
    return isinstance(x, float) and math.isfinite(x)


def _int_in(lo: int, hi: int):
    return lambda x: isinstance(x, int) and not isinstance(x, bool) and lo <= x < hi


def _mesh(x: Any) -> bool:
    if not isinstance(x, dict):
        return False
    hemis = x.get("hemispheres", {"left": [0, 1], "right": [1, 2]})

    def rows(r: Any) -> bool:
        return (
            isinstance(r, list)
            and len(r) == 2
            and all(type(i) is int for i in r)
            and 0 <= r[0] <= r[1] <= N_VERTICES
        )

    return (
        isinstance(x.get("name", ""), str)
        and type(x.get("n_vertices", 0)) is int
        and isinstance(hemis, dict)
        and rows(hemis.get("left"))
        and rows(hemis.get("right"))
    )


def _numbers_obj(x: Any) -> bool:
    return isinstance(x, dict) and all(v is None or _num(v) for v in x.values())


_COMMON = {
    "stream_id": (True, lambda x: isinstance(x, str)),
    "session": (True, lambda x: isinstance(x, str)),
    "seq": (True, _int_in(0, I64)),
    "publish_wall": (True, _num),
}
SPEC = {  # field: (required, accepted values), written from docs/PROTOCOL.md
    "prediction": {
        **_COMMON,
        "second": (True, _int_in(-I64, I64)),
        "stimulus": (True, lambda x: isinstance(x, list) and len(x) == 2 and all(map(_num, x))),
        "bold_time": (True, _num),
        "timings": (True, _numbers_obj),
        "counters": (False, _numbers_obj),
        "t0_wall": (False, lambda x: x is None or _num(x)),
        "mesh": (True, _mesh),
        "model": (True, lambda x: isinstance(x, dict)),
        "dtype": (True, lambda x: x == "float16"),  # the payload is float16
        "shape": (True, lambda x: x == [N_VERTICES] and type(x[0]) is int),
        "v": (True, lambda x: type(x) is int and x == 1),
    },
    "status": {
        **_COMMON,
        "next_seq": (True, _int_in(0, I64)),
        "counters": (True, _numbers_obj),
        "stream_time": (False, lambda x: x is None or _num(x)),
    },
    "metadata": {
        **_COMMON,
        "next_seq": (True, _int_in(0, I64)),
        "dtype": (False, lambda x: isinstance(x, str)),
        "shape": (False, lambda x: isinstance(x, list)),
        "mesh": (False, _mesh),
        "model": (False, lambda x: isinstance(x, dict)),
        "software": (False, lambda x: isinstance(x, dict)),
        "t0_wall": (False, lambda x: x is None or _num(x)),
        "hemodynamic_offset_s": (False, _num),
    },
}
plain_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from([I64 - 1, I64, -I64, -I64 - 1, 2**70, 10**308, 10**309, 20484]),
        st.floats(),
        st.text(max_size=8),
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)  # fmt: skip


field_values = st.one_of(
    plain_json,
    st.sampled_from(
        [I64 - 1, I64, -I64 - 1, 2**70, -1, 0, 10**309, 1.5, -0.0, True, None, "7", [], {},
         [1, 2], [1.0, 2**1100], {"a": 1}, {"a": "x"}, {"a": None, "b": 1e300}, [N_VERTICES],
         "float16", "float32", 1, FSAVERAGE5, {"hemispheres": {"left": [0, 9], "right": [9, 20]}},
         {"name": 5}, {"hemispheres": {"left": [0, 10242]}}, {"hemispheres": [[0, 1], [1, 2]]},
         {"hemispheres": {"left": [5, 1], "right": [0, 1]}}, {"n_vertices": "20484"}]
    ),
)  # fmt: skip


@pytest.mark.parametrize(
    "kind,field", [(kind, field) for kind, spec in SPEC.items() for field in sorted(spec)]
)
@settings(max_examples=30, **FUZZ)
@given(value=field_values, delete=st.integers(0, 9).map(lambda i: i == 0))
def test_each_field_is_accepted_exactly_when_the_protocol_allows_it(kind, field, value, delete):
    frames = base_frames(kind, 5)
    header = json.loads(frames[1])
    if delete:
        header.pop(field, None)
    else:
        header[field] = copy.deepcopy(value)
    required, allowed = SPEC[kind][field]
    ok = (not required) if delete else (allowed(value) and _finite(value))
    msg = checked_decode([frames[0], json.dumps(header).encode(), frames[2]])
    assert (msg is not None) == ok, (kind, field, value, delete)


# -- (b) what decode accepts, the recorder writes and reads back ------------------------------------


@settings(max_examples=40, **FUZZ)
@given(st.lists(near_valid(harmless | mutation), min_size=1, max_size=10))
def test_the_recorder_writes_whatever_decode_accepts(batch):
    accepted = [m for m in map(checked_decode, batch) if m is not None]
    metadata = next((m.header for m in accepted if m.topic == "metadata"), None)
    if metadata is None:
        first = next((m for m in accepted if m.topic == "prediction"), None)
        metadata = _metadata_from_header(first.header) if first is not None else {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.h5"
        writer = RecordingWriter(path, metadata, source_url="tcp://127.0.0.1:1")
        for m in accepted:
            writer.add_message(m)  # must not raise
        writer.close()
        rec = read_recording(path)
    predictions = [m for m in accepted if m.topic == "prediction"]
    assert len(rec) == len(predictions)
    assert rec.seq.tolist() == [m.seq for m in predictions]
    assert rec.seconds.tolist() == [m.header["second"] for m in predictions]
    assert rec.headers == [m.header for m in predictions]
    assert rec.status == [m.header for m in accepted if m.topic == "status"]
    for i, m in enumerate(predictions):
        assert np.array_equal(rec.values[i], m.values.astype(rec.values.dtype), equal_nan=True)
        assert rec.bold_time[i] == float(m.header["bold_time"])


# -- (c) valid predictions round-trip ---------------------------------------------------------------

finite64 = st.floats(allow_nan=False, allow_infinity=False)
numbers = st.dictionaries(
    st.text(max_size=10),
    st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats()),
    max_size=5,
)


@settings(max_examples=120, **FUZZ)
@given(
    second=st.integers(-I64, I64 - 1),
    seq=st.integers(0, I64 - 1),
    stimulus=st.tuples(finite64, finite64),
    bold_time=finite64,
    publish_wall=finite64,
    t0_wall=st.none() | finite64,
    timings=numbers,
    counters=numbers,
    dtype=st.sampled_from(sorted(DTYPES)),
    model=st.dictionaries(st.text(max_size=8), st.text(max_size=8) | finite64, max_size=3),
    seed=st.integers(0, 2**32 - 1),
    specials=st.lists(
        st.sampled_from([np.inf, -np.inf, np.nan, 65504.0, 65520.0, -7e4, 6e-8, -0.0, 3e38]),
        max_size=8,
    ),
)
def test_valid_predictions_round_trip(
    second, seq, stimulus, bold_time, publish_wall, t0_wall, timings, counters, dtype, model,
    seed, specials,
):  # fmt: skip
    values = np.random.default_rng(seed).standard_normal(N_VERTICES).astype(np.float32) * 100
    values[: len(specials)] = specials
    p = Prediction(second, values, stimulus, bold_time, dict(timings), dict(counters))
    frames = encode_prediction(
        p, **IDS, seq=seq, publish_wall=publish_wall, dtype=dtype, model=model, t0_wall=t0_wall
    )
    fast = HEADERS["prediction"].accepts
    assert fast(json.loads(frames[1]), len(frames[2]))  # our own messages: fast path
    msg = checked_decode(frames)
    assert msg is not None
    h = msg.header
    assert (h["second"], h["seq"], h["publish_wall"]) == (second, seq, publish_wall)
    assert h["stimulus"] == list(stimulus) and h["bold_time"] == bold_time
    assert h["t0_wall"] == t0_wall and h["model"] == model and h["mesh"] == FSAVERAGE5

    def carried(v):  # what the protocol carries for a counter or timing
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return None
        return int(v) if isinstance(v, bool) else v

    assert h["timings"] == {k: carried(v) for k, v in timings.items()}
    assert h["counters"] == {k: carried(v) for k, v in counters.items()}
    with np.errstate(over="ignore", invalid="ignore"):
        expected = values.astype(DTYPES[dtype])
    assert msg.values.tobytes() == expected.tobytes()
    back = msg.to_prediction()
    assert back.second == second and back.stimulus == tuple(stimulus)
    assert np.array_equal(back.values, expected.astype(np.float32), equal_nan=True)


def test_every_reject_reason_is_documented():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "PROTOCOL.md").read_text()
    table = doc.split("## Validation", 1)[1].split("\n## ", 1)[0]
    for reason in [*REJECT_REASONS, "stale-seq"]:
        assert f"`{reason}`" in table, f"{reason} is not in PROTOCOL.md's validation table"
