"""The subcortical head live: its predictions on their own topic (`tribe.subcortical`, the space
and size in the header), its structure means on `tribe.structures`, recorded by `record` and
replayed, drawn by both viewers; cortex subscribers unchanged (tests/fixtures/subcortical: a
658-voxel synthetic Harvard-Oxford atlas)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tribe_stream import N_VERTICES
from tribe_stream.client import Subscriber
from tribe_stream.protocol import TOPICS, MessageRejected, decode
from tribe_stream.publish import Publisher
from tribe_stream.spaces import OutputSpace, space_metadata, subcortical_mask
from tribe_stream.types import Prediction

ATLAS = Path(__file__).parent / "fixtures" / "subcortical" / "fsl"
N_VOXELS = 658
SPACE = OutputSpace("subcortical", N_VOXELS, "volume")
THALAMUS = "Left Thalamus"


def cortex(k: int) -> Prediction:
    values = np.full(N_VERTICES, 0.1 * k, np.float32)
    return Prediction(k, values, (float(k), k + 1.0), k + 5.0, {"capture": 0.1})


def subcortical(k: int, mask) -> Prediction:
    """Zero everywhere but the left thalamus, which is strongly positive (2 + k)."""
    values = np.where(np.array(mask.structures) == THALAMUS, 2.0 + k, 0.0).astype(np.float32)
    return Prediction(k, values, (float(k), k + 1.0), k + 5.0, space="subcortical")


def drain(sub: Subscriber, want: int, timeout: float = 10.0) -> list:
    """Messages of `sub` until `want` came or `timeout` s passed (event-driven)."""
    got, deadline = [], time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        msg = sub.recv(timeout=0.2)
        if msg is not None:
            got.append(msg)
    return got


def test_topic_names_do_not_prefix_each_other():
    frames = list(TOPICS.values())
    assert not [(a, b) for a in frames for b in frames if a != b and b.startswith(a)]


def test_the_subcortical_topic_reaches_its_subscriber_and_not_the_cortex_ones():
    mask = subcortical_mask(ATLAS)
    with Publisher("tcp://127.0.0.1:*", dtype="float32") as pub:
        pub.add_head(SPACE, mask=mask)
        plain = Subscriber(pub.url)  # an existing cortex subscriber: predictions only
        rois = Subscriber(pub.url, topics=("prediction", "roi"))
        heads = Subscriber(pub.url, topics=("subcortical", "structures"))
        try:
            assert pub.wait_for_subscribers(2, 10.0)
            time.sleep(0.3)  # the head subscriber's subscription (counted only for predictions)
            for k in range(3):
                pub.send(cortex(k))
                pub.send(subcortical(k, mask))
            got = drain(heads, 6)
            seen = drain(plain, 3) + drain(rois, 3)
        finally:
            for s in (plain, rois, heads):
                s.close()
    assert [m.topic for m in seen] == ["prediction"] * 6
    assert all(m.values.shape == (N_VERTICES,) for m in seen)
    assert plain.rejected == rois.rejected == 0 and plain.heads_received == 0
    assert [m.topic for m in got] == ["subcortical", "structures"] * 3
    sub, means = got[4], got[5]
    assert sub.header["space"] == {"name": "subcortical", "kind": "volume", "n_outputs": N_VOXELS}
    assert sub.second == 2 and sub.values.shape == (N_VOXELS,)
    assert sub.to_prediction().space == "subcortical"
    names = heads.metadata["spaces"]["subcortical"]["regions"]["names"]
    assert len(names) == means.header["n_regions"] == len(means.values)
    assert means.header["prediction_seq"] == sub.seq == 2
    assert means.values[names.index(THALAMUS)] == pytest.approx(4.0)
    assert np.all(np.delete(means.values, names.index(THALAMUS)) == 0)
    assert heads.missed == 0 and heads.heads_received == 3
    space = heads.metadata["spaces"]["subcortical"]
    assert space["grid"] == list(mask.shape) and np.allclose(space["affine"], mask.affine)


def test_the_payload_size_is_checked_against_the_space():
    mask = subcortical_mask(ATLAS)
    from tribe_stream.protocol import PredictionEncoder

    enc = PredictionEncoder(stream_id="s", session="x", space=space_metadata(SPACE))
    frames = enc.encode(subcortical(0, mask), seq=0, publish_wall=1.0)
    assert decode(frames).values.shape == (N_VOXELS,)
    for payload in (frames[2][:-2], frames[2] + b"\0\0", b"\0" * N_VERTICES * 2):
        with pytest.raises(MessageRejected) as e:
            decode([frames[0], frames[1], payload])
        assert e.value.reason in ("payload-size", "oversized")
    cortex_topic = [TOPICS["prediction"], frames[1], frames[2]]  # a head's header as cortex
    with pytest.raises(MessageRejected, match="kind-mismatch"):
        decode(cortex_topic)
