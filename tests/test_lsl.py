"""The LSL bridge: `tribe-stream lsl` as a process, read back through a real LSL inlet."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import numpy as np
import pytest

from tribe_stream import N_VERTICES
from tribe_stream.clock import StreamClock
from tribe_stream.publish import Publisher
from tribe_stream.types import Prediction

try:
    import pylsl

    pylsl.local_clock()
except Exception as exc:  # liblsl missing or unusable here
    pytest.skip(f"LSL cannot run here: {exc}", allow_module_level=True)

POOL = np.random.default_rng(2).standard_normal((4, N_VERTICES)).astype(np.float32)


def pred(k: int) -> Prediction:
    return Prediction(k, POOL[k % 4], (k, k + 1.0), k + 5.0, {"capture": k + 0.01})


def test_lsl_bridge_channels_values_and_clock(tmp_path):
    source_id = f"test-{uuid.uuid4().hex[:8]}"
    clock = StreamClock()
    with Publisher("tcp://127.0.0.1:*", stream_id="cam0", model="demo", clock=clock) as pub:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "tribe_stream.cli", "lsl", pub.url),
                *("--source-id", source_id, "--outlet-name", "tribe-test", "--count", "3"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ},
        )
        try:
            assert pub.wait_for_subscribers(1, timeout=20), proc.stderr.read()
            found = pylsl.resolve_byprop("source_id", source_id, timeout=10)
            assert found, "the bridge's LSL outlet was not found"
            inlet = pylsl.StreamInlet(found[0], max_buflen=60)
            info = inlet.info(timeout=10)
            inlet.open_stream(timeout=10)
            time.sleep(0.3)
            for k in range(3):
                pub.send(pred(k))
            samples, stamps = [], []
            deadline = time.monotonic() + 15
            while len(samples) < 3 and time.monotonic() < deadline:
                sample, ts = inlet.pull_sample(timeout=1.0)
                if sample is not None:
                    samples.append(np.asarray(sample, np.float32))
                    stamps.append(ts)
            offset = pylsl.local_clock() - (time.time() - clock.t0_wall)  # LSL time of stream 0
            stdout, stderr = proc.communicate(timeout=20)
        finally:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "pushed 3 samples" in stdout

    assert info.name() == "tribe-test" and info.type() == "fMRI"
    assert info.channel_count() == N_VERTICES and info.channel_format() == pylsl.cf_float32
    assert info.nominal_srate() == 1.0
    channels = info.desc().child("channels")
    ch = channels.child("channel")
    assert (ch.child_value("label"), ch.child_value("hemisphere")) == ("lh.0", "left")
    labels = []
    while not ch.empty():
        labels.append(ch.child_value("label"))
        ch = ch.next_sibling()
    assert len(labels) == N_VERTICES and labels[10242] == "rh.0" and labels[-1] == "rh.10241"
    meta = info.desc().child("tribe_stream")
    assert meta.child_value("stream_id") == "cam0" and meta.child_value("mesh") == "fsaverage5"
    assert info.desc().child("acquisition").child_value("model") == "demo"

    assert len(samples) == 3
    for k, s in enumerate(samples):
        np.testing.assert_array_equal(s, POOL[k % 4].astype(np.float16).astype(np.float32))
    # each sample is stamped at the start of its stimulus second, on LSL's clock
    np.testing.assert_allclose(np.array(stamps) - offset, [0.0, 1.0, 2.0], atol=0.05)
