"""The wire format: round trips, zero-copy views, and rejection of everything malformed."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys

import numpy as np
import pytest

from tribe_stream import N_VERTICES
from tribe_stream.errors import InputError
from tribe_stream.protocol import (
    DTYPES,
    FSAVERAGE5,
    MAX_DEPTH,
    MAX_HEADER_BYTES,
    PROTOCOL_VERSION,
    TOPICS,
    MessageRejected,
    decode,
    encode_metadata,
    encode_prediction,
    encode_status,
    is_local,
    load_allowed_keys,
    load_keypair,
    load_public_key,
    stream_metadata,
)
from tribe_stream.protocol import _payload as payload_bytes
from tribe_stream.types import Prediction

IDS = {"stream_id": "cam0", "session": "0123456789abcdef"}


def prediction(second: int = 7, seed: int = 0) -> Prediction:
    rng = np.random.default_rng(seed)
    return Prediction(
        second=second,
        values=rng.standard_normal(N_VERTICES).astype(np.float32),
        stimulus=(float(second), float(second + 1)),
        bold_time=second + 5.0,
        timings={"capture": second + 0.02, "engine": second + 1.31, "bad": float("nan")},
        counters={"drops": 2, "lag_s": np.float32(0.25)},
    )


def frames(dtype: str = "float16", **kw) -> list[bytes]:
    args = dict(IDS, seq=3, publish_wall=1.7e9, dtype=dtype, model={"name": "demo"})
    args.update(kw)
    return encode_prediction(prediction(), **args)


@pytest.mark.parametrize("dtype,tol", [("float16", 2e-3), ("float32", 0.0)])
def test_prediction_round_trip(dtype, tol):
    p = prediction()
    msg = decode(encode_prediction(p, **IDS, seq=3, publish_wall=1.7e9, dtype=dtype, t0_wall=1e9))
    h = msg.header
    assert msg.topic == "prediction"
    assert (h["v"], h["seq"], h["second"], h["stream_id"]) == (PROTOCOL_VERSION, 3, 7, "cam0")
    assert h["stimulus"] == [7.0, 8.0] and h["bold_time"] == 12.0 and h["t0_wall"] == 1e9
    assert h["dtype"] == dtype and h["shape"] == [N_VERTICES] and h["mesh"] == FSAVERAGE5
    assert h["timings"]["capture"] == pytest.approx(7.02)
    assert h["timings"]["bad"] is None  # JSON has no NaN: non-finite numbers become null
    assert h["counters"] == {"drops": 2, "lag_s": pytest.approx(0.25)}
    assert msg.values.dtype == np.dtype(dtype) and msg.values.shape == (N_VERTICES,)
    np.testing.assert_allclose(msg.values, p.values, rtol=tol, atol=1e-4 if tol else 0)
    back = msg.to_prediction()
    assert back.values.dtype == np.float32 and back.second == 7 and back.stimulus == (7.0, 8.0)
    assert "bad" not in back.timings and back.counters["drops"] == 2


def test_float16_payload_is_exactly_numpys_rounding_little_endian():
    p = prediction()
    payload = encode_prediction(p, **IDS, seq=0, publish_wall=0.0)[2]
    assert payload == p.values.astype("<f2").tobytes()
    assert len(payload) == 2 * N_VERTICES


def test_float16_fast_path_gives_the_same_bits_as_numpy():
    torch = pytest.importorskip("torch")  # loaded in the pipeline: the publisher casts with it
    assert torch is not None
    p = prediction()
    p.values[:8] = [np.inf, -np.inf, 7e4, -7e4, 65519.9, 6.0e-8, 2.9e-8, -0.0]  # edges
    p.values[8:1000] *= 1e-6  # subnormal float16 range
    payload = encode_prediction(p, **IDS, seq=0, publish_wall=0.0)[2]
    with np.errstate(over="ignore"):
        assert payload == p.values.astype("<f2").tobytes()


def test_values_are_a_read_only_view_of_the_frame():
    f = frames()
    buf = bytearray(f[2])  # a writable buffer, like a zmq.Frame
    msg = decode([f[0], f[1], buf])
    assert np.shares_memory(msg.values, np.frombuffer(buf, np.uint8))
    assert not msg.values.flags.writeable
    with pytest.raises(ValueError):
        msg.values[0] = 1.0


def test_status_and_metadata_round_trip():
    st = decode(
        encode_status(
            {"drops": 1, "lag_s": 0.5, "queue.video": 3},
            **IDS,
            seq=9,
            publish_wall=1.0,
            next_seq=42,
            stream_time=12.5,
        )
    )
    assert st.topic == "status" and st.values is None
    assert st.header["counters"] == {"drops": 1, "lag_s": 0.5, "queue.video": 3}
    assert st.header["next_seq"] == 42 and st.header["stream_time"] == 12.5
    meta = stream_metadata(stream_id="cam0", dtype="float16", model={"name": "m"}, extra={"x": 1})
    md = decode(encode_metadata(meta, **IDS, seq=0, publish_wall=1.0, next_seq=5))
    assert md.topic == "metadata" and md.header["model"] == {"name": "m"} and md.header["x"] == 1
    assert md.header["mesh"]["hemispheres"] == {"left": [0, 10242], "right": [10242, 20484]}
    assert md.header["next_seq"] == 5 and md.header["software"]["protocol"] == PROTOCOL_VERSION


def test_encode_rejects_wrong_shape():
    p = prediction()
    p.values = p.values[:100]
    with pytest.raises(InputError, match="20484"):
        encode_prediction(p, **IDS, seq=0, publish_wall=0.0)


def _with_header(**changes) -> list[bytes]:
    f = frames()
    h = json.loads(f[1])
    for k, v in changes.items():
        if v is _DROP:
            del h[k]
        else:
            h[k] = v
    return [f[0], json.dumps(h).encode(), f[2]]


_DROP = object()


@pytest.mark.parametrize(
    "make,reason",
    [
        (lambda f: f[:2], "frame-count"),
        (lambda f: [*f, b""], "frame-count"),
        (lambda f: [b"tribe.predictions", f[1], f[2]], "foreign-topic"),
        (lambda f: [b"other.topic", f[1], f[2]], "foreign-topic"),
        (lambda f: [b"x" * 100, f[1], f[2]], "oversized"),
        (lambda f: [f[0], b" " * (MAX_HEADER_BYTES + 1), f[2]], "oversized"),
        (lambda f: [f[0], f[1], f[2] * 3], "oversized"),
        (lambda f: [f[0], f[1][:-7], f[2]], "bad-header"),  # truncated header
        (lambda f: [f[0], b"\xff\xfe", f[2]], "bad-header"),
        (lambda f: [f[0], b"[1, 2]", f[2]], "bad-header"),
        (lambda f: [f[0], f[1], f[2][:-2]], "payload-size"),  # truncated payload
        (lambda f: [f[0], f[1], b""], "payload-size"),
        (lambda f: [TOPICS["status"], f[1], f[2]], "kind-mismatch"),
    ],
)
def test_malformed_frames_are_rejected_with_a_reason(make, reason):
    with pytest.raises(MessageRejected) as info:
        decode(make(frames()))
    assert info.value.reason == reason


@pytest.mark.parametrize(
    "changes,reason",
    [
        ({"v": 2}, "version"),
        ({"v": _DROP}, "version"),
        ({"seq": -1}, "bad-field"),
        ({"seq": "3"}, "bad-field"),
        ({"seq": True}, "bad-field"),
        ({"second": 1.5}, "bad-field"),
        ({"stimulus": [1]}, "bad-field"),
        ({"stream_id": _DROP}, "missing-field"),
        ({"timings": _DROP}, "missing-field"),
        ({"dtype": "float64"}, "dtype"),
        ({"dtype": "float32"}, "payload-size"),  # header says f4 but the payload is f2
        ({"shape": [100]}, "shape"),
    ],
)
def test_bad_header_fields_are_rejected(changes, reason):
    with pytest.raises(MessageRejected) as info:
        decode(_with_header(**changes))
    assert info.value.reason == reason


def _status(**changes) -> list[bytes]:
    f = encode_status({"drops": 0}, **IDS, seq=1, publish_wall=1.0, next_seq=4, stream_time=2.0)
    h = json.loads(f[1])
    h.update(changes)
    return [f[0], json.dumps(h).encode(), b""]


def _metadata(**changes) -> list[bytes]:
    meta = stream_metadata(stream_id="cam0", dtype="float16", model={"name": "m"})
    f = encode_metadata(meta, **IDS, seq=0, publish_wall=1.0, next_seq=4)
    h = json.loads(f[1])
    h.update(changes)
    return [f[0], json.dumps(h).encode(), b""]


def _reason(frames: list[bytes]) -> str:
    """The rejection reason; any other exception (RecursionError, TypeError...) fails the test."""
    with pytest.raises(MessageRejected) as info:
        decode(frames)
    return info.value.reason


def test_deeply_nested_headers_are_rejected_not_a_recursion_error():
    f = frames()
    deep_open = b'{"v": 1, "kind": "prediction", "x": ' + b"[" * 60_000  # 60,000 levels
    deep_closed = b"[" * 30_000 + b"]" * 30_000
    assert len(deep_open) < MAX_HEADER_BYTES and len(deep_closed) < MAX_HEADER_BYTES
    assert _reason([f[0], deep_open, f[2]]) == "bad-header"
    assert _reason([f[0], deep_closed, f[2]]) == "bad-header"
    h = json.loads(f[1])
    nest = lambda n: json.loads("[" * n + "]" * n)  # noqa: E731
    # deep enough to break a recorder's json.dumps, shallow enough for the parser
    for changes in ({"model": {"x": nest(600)}}, {"extra": nest(MAX_DEPTH)}):
        assert _reason([f[0], json.dumps({**h, **changes}).encode(), f[2]]) == "bad-header"
    for meta in (_metadata(extra=nest(700)), _status(counters={}, x=nest(900))):
        assert _reason(meta) == "bad-header"
    ok = decode([f[0], json.dumps({**h, "extra": nest(MAX_DEPTH - 1)}).encode(), f[2]])
    assert ok.header["extra"] == nest(MAX_DEPTH - 1)  # the limit itself is fine


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-2.5E+999"])
@pytest.mark.parametrize("where", ["bold_time", "timings", "model", "extra"])
def test_non_finite_numbers_are_rejected(literal, where):
    f = frames()
    h = json.loads(f[1])
    h.update({"bold_time": 0.5, "timings": {"x": 0.5}, "model": {"x": 0.5}, "extra": [0.5]})
    text = json.dumps(h).encode()
    marker = {"bold_time": b'"bold_time": 0.5', "timings": b'{"x": 0.5}'}.get(where)
    if where == "model":
        text = text.replace(b'"model": {"x": 0.5}', b'"model": {"x": ' + literal + b"}")
    elif where == "extra":
        text = text.replace(b'"extra": [0.5]', b'"extra": [' + literal + b"]")
    else:
        text = text.replace(marker, marker.replace(b"0.5", literal))
    assert literal in text
    assert _reason([f[0], text, f[2]]) == "non-finite"


_FIELD_CASES = [
    ({"second": 2**70}, "bad-field"),  # OverflowError in the recorder's int64 column
    ({"second": -(2**63) - 1}, "bad-field"),
    ({"seq": 2**63}, "bad-field"),
    ({"bold_time": 10**400}, "bad-field"),  # a JSON int too large for float64
    ({"publish_wall": -(10**309)}, "bad-field"),
    ({"stimulus": [1, 10**400]}, "bad-field"),
    ({"stimulus": [1, "2"]}, "bad-field"),
    ({"stimulus": [True, 2]}, "bad-field"),
    ({"counters": "oops"}, "bad-field"),
    ({"counters": {"drops": "1"}}, "bad-field"),
    ({"counters": {"drops": True}}, "bad-field"),
    ({"counters": {"drops": [1]}}, "bad-field"),
    ({"counters": {"drops": 10**400}}, "bad-field"),
    ({"timings": {"capture": {"t": 1}}}, "bad-field"),
    ({"timings": []}, "bad-field"),
    ({"t0_wall": "yesterday"}, "bad-field"),
    ({"stream_id": 7}, "bad-field"),
    ({"stream_id": "\ud800"}, "bad-field"),  # a lone surrogate: not storable text
    ({"session": ["s"]}, "bad-field"),
    ({"dtype": []}, "dtype"),  # was a TypeError (unhashable) out of decode
    ({"dtype": {"a": 1}, "shape": [1]}, "dtype"),
    ({"shape": [20484.0]}, "shape"),
    ({"mesh": {"hemispheres": "x"}}, "bad-field"),  # the LSL bridge labels channels by it
    ({"mesh": {"hemispheres": {"left": [0, 10242]}}}, "bad-field"),
    ({"mesh": {"hemispheres": {"left": [0, 10242], "right": [10242, 1e9]}}}, "bad-field"),
    ({"mesh": {**FSAVERAGE5, "name": None}}, "bad-field"),
    ({"v": 1.0}, "version"),
    ({"v": True}, "version"),
]


@pytest.mark.parametrize(
    "changes,reason", _FIELD_CASES, ids=[ascii(c)[1:-1][:40] for c, _ in _FIELD_CASES]
)
def test_every_prediction_field_is_type_checked(changes, reason):
    f = frames()
    h = json.loads(f[1])
    h.update(changes)
    text = json.dumps(h).encode()  # ensure_ascii: a lone surrogate goes as its \ud800 escape
    assert _reason([f[0], text, f[2]]) == reason


_STATUS_META_CASES = {
    "status next_seq 2**63": lambda: _status(next_seq=2**63),
    "status next_seq -1": lambda: _status(next_seq=-1),
    "status seq 2**64": lambda: _status(seq=2**64),
    "status counters oops": lambda: _status(counters="oops"),
    "status counter str": lambda: _status(counters={"a": None, "b": "x"}),
    "status stream_time str": lambda: _status(stream_time="soon"),
    "status publish_wall 10**400": lambda: _status(publish_wall=10**400),
    "metadata next_seq 2**64": lambda: _metadata(next_seq=2**64),
    "metadata dtype list": lambda: _metadata(dtype=[]),  # the recorder looked it up in a dict
    "metadata model str": lambda: _metadata(model="m"),
    "metadata t0_wall list": lambda: _metadata(t0_wall=[1]),
    "metadata offset str": lambda: _metadata(hemodynamic_offset_s="5"),
    "metadata mesh rows": lambda: _metadata(mesh={"hemispheres": {"left": [0], "right": [0, 1]}}),
}


@pytest.mark.parametrize("case", list(_STATUS_META_CASES))
def test_status_and_metadata_fields_are_type_checked(case):
    assert _reason(_STATUS_META_CASES[case]()) == "bad-field"


def test_well_formed_edge_values_are_accepted():
    f = frames()
    h = json.loads(f[1])
    h.update(
        second=-(2**63),
        seq=2**63 - 1,
        bold_time=10**300,  # an int float64 holds
        counters={"a": None, "b": -5, "c": 1.5},
        timings={},
        t0_wall=None,
        model={"name": "é", "deep": [[{"ok": 1e300}]]},
        mesh={"name": "fsaverage5", "hemispheres": {"left": [0, 10], "right": [10, 20484]}},
    )
    msg = decode([f[0], json.dumps(h).encode(), f[2]])
    assert msg.second == -(2**63) and msg.seq == 2**63 - 1 and msg.header["model"]["name"] == "é"
    assert decode(_status(stream_time=None, counters={})).header["next_seq"] == 4
    assert decode([f[0], b" \n" + f[1] + b"\t", f[2]]).seq == 3  # JSON whitespace around it


def test_encoders_refuse_what_decoders_reject():
    p = prediction()
    p.second = 2**70
    with pytest.raises(InputError, match="64-bit"):
        encode_prediction(p, **IDS, seq=0, publish_wall=0.0)
    deep: list = []
    for _ in range(MAX_DEPTH):
        deep = [deep]
    with pytest.raises(InputError, match="deeper"):
        encode_prediction(prediction(), **IDS, seq=0, publish_wall=0.0, model={"x": deep})
    with pytest.raises(InputError, match="deeper"):
        encode_metadata({"x": deep}, **IDS, seq=0, publish_wall=0.0, next_seq=0)
    with pytest.raises(InputError, match="mesh"):
        encode_prediction(prediction(), **IDS, seq=0, publish_wall=0.0, mesh={"hemispheres": 1})
    with pytest.raises(InputError, match="bytes"):
        encode_metadata({"x": "y" * MAX_HEADER_BYTES}, **IDS, seq=0, publish_wall=0.0, next_seq=0)
    # counters the protocol cannot carry as numbers are made carriable, not sent broken
    p = prediction()
    p.counters = {"flag": True, "huge": 10**400, "nan": float("nan")}
    h = decode(encode_prediction(p, **IDS, seq=0, publish_wall=0.0)).header
    assert h["counters"] == {"flag": 1, "huge": None, "nan": None}


_EDGES = np.array(
    [0.0, -0.0, 1.0, -1.0, 65504.0, -65504.0, 65519.9, 65520.0, -65520.0, 7e4, -7e4, 1e38,
     -1e38, np.inf, -np.inf, np.nan, -np.nan, 6.0e-8, 2.9e-8, -6.0e-8, 6.1e-5, 1e-7, 0.5],
    dtype=np.float32,
)  # fmt: skip


def _edge_values() -> np.ndarray:
    rng = np.random.default_rng(5)
    values = (rng.standard_normal(N_VERTICES) * 3e4).astype(np.float32)  # many beyond +-65504
    values[: len(_EDGES)] = _EDGES
    values[100:1100] *= 1e-9  # float16 subnormals and underflow to zero
    return values


_NUMPY_BRANCH = """
import hashlib, sys
import numpy as np
sys.path.insert(0, {root!r})
from tests.test_protocol import _edge_values
from tribe_stream.protocol import DTYPES, _payload
assert "torch" not in sys.modules
data = _payload(_edge_values(), DTYPES["float16"])
assert "torch" not in sys.modules
print(hashlib.sha256(data).hexdigest(), len(data))
"""


def test_float16_numpy_branch_gives_the_bits_of_the_torch_branch():
    values = _edge_values()
    f16 = DTYPES["float16"]
    with np.errstate(over="ignore", invalid="ignore"):
        expected = values.astype("<f2").tobytes()
    # NumPy's branch for certain: a process that never imported torch
    root = str(__import__("pathlib").Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", _NUMPY_BRANCH.format(root=root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    assert out == [hashlib.sha256(expected).hexdigest(), str(2 * N_VERTICES)]
    # here, arrays torch cannot wrap as they are take NumPy's branch too: same bits
    read_only = values.copy()
    read_only.flags.writeable = False
    strided = np.repeat(values, 2)[::2]
    assert not strided.flags.c_contiguous
    assert payload_bytes(read_only, f16) == expected
    assert payload_bytes(strided, f16) == expected
    torch = pytest.importorskip("torch")
    assert torch is not None  # loaded: a writable contiguous float32 array takes torch's cast
    torch_bytes = payload_bytes(values.copy(), f16)
    assert torch_bytes == expected
    got = np.frombuffer(torch_bytes, "<f2")
    assert np.isposinf(got[[7, 9, 13]]).all() and np.isneginf(got[[8, 10, 14]]).all()
    assert got[6] == 65504.0 and np.isnan(got[15])


def test_random_frames_never_crash_the_decoder():
    rng = random.Random(1234)
    good = frames()
    for _ in range(3000):
        n = rng.choice([1, 2, 3, 3, 3, 4])
        parts = []
        for i in range(n):
            kind = rng.random()
            if kind < 0.3 and i < 3:
                part = bytearray(good[i])  # a valid frame, flipped here and there
                for _ in range(rng.randint(1, 4)):
                    part[rng.randrange(len(part))] = rng.randrange(256)
                parts.append(bytes(part))
            else:
                parts.append(rng.randbytes(rng.choice([0, 1, 16, 400, 40968])))
        if rng.random() < 0.5:
            parts[0] = TOPICS["prediction"]
        try:
            msg = decode(parts)
        except MessageRejected:
            continue
        # the rare survivor must still be a well-formed prediction
        assert msg.values.shape == (N_VERTICES,) and isinstance(msg.header["seq"], int)


def test_keys_from_text_files_and_folders(tmp_path):
    import zmq
    import zmq.auth

    pub_file, sec_file = zmq.auth.create_certificates(str(tmp_path), "server")
    public, secret = zmq.auth.load_certificate(sec_file)
    assert load_public_key(pub_file) == public
    assert load_public_key(public.decode()) == public
    assert load_keypair(sec_file) == (public, secret)
    assert load_keypair(secret.decode()) == (zmq.curve_public(secret), secret)
    assert load_allowed_keys([str(tmp_path)]) == {public}
    with pytest.raises(InputError, match="secret"):
        load_keypair(pub_file)  # a public key file where the secret one is needed
    with pytest.raises(InputError, match="tribe-stream keys"):
        load_public_key("not-a-key")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no \*\.key"):
        load_allowed_keys([str(tmp_path / "empty")])


@pytest.mark.parametrize(
    "url,local",
    [
        ("tcp://127.0.0.1:5556", True),
        ("tcp://localhost:5556", True),
        ("tcp://[::1]:5556", True),
        ("ipc:///tmp/x", True),
        ("tcp://0.0.0.0:5556", False),
        ("tcp://*:5556", False),
        ("tcp://192.168.1.4:5556", False),
    ],
)
def test_is_local(url, local):
    assert is_local(url) is local


def test_default_url_follows_the_environment():
    """`$TRIBE_STREAM_URL` sets where streams publish and viewers subscribe by default."""
    import os
    import subprocess
    import sys

    code = "from tribe_stream.protocol import DEFAULT_URL; print(DEFAULT_URL)"
    env = {k: v for k, v in os.environ.items() if k != "TRIBE_STREAM_URL"}
    plain = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert plain.stdout.strip() == "tcp://127.0.0.1:5556"
    env["TRIBE_STREAM_URL"] = "tcp://127.0.0.1:6107"
    moved = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert moved.stdout.strip() == "tcp://127.0.0.1:6107"
