"""The wire format: round trips, zero-copy views, and rejection of everything malformed."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from tribe_stream import N_VERTICES
from tribe_stream.errors import InputError
from tribe_stream.protocol import (
    FSAVERAGE5,
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
