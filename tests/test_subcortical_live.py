"""The subcortical head live: its predictions on their own topic (`tribe.subcortical`, the space
and size in the header), its structure means on `tribe.structures`, recorded by `record` and
replayed, drawn by both viewers; cortex subscribers unchanged (tests/fixtures/subcortical: a
658-voxel synthetic Harvard-Oxford atlas)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tribe_stream import N_VERTICES
from tribe_stream.client import Subscriber
from tribe_stream.protocol import TOPICS, MessageRejected, decode
from tribe_stream.publish import Publisher
from tribe_stream.recording import read_recording
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
            deadline = time.monotonic() + 10  # greeted: its subscriptions (sent together) are in
            while heads.metadata is None and time.monotonic() < deadline:
                heads.recv(timeout=0.1)
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


def start_cli(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tribe_stream.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def test_record_keeps_the_subcortical_topic_and_replay_sends_it_again(tmp_path):
    """`record` (a subprocess) writes the head's rows beside the cortex's (Fletcher-32 checked),
    `read_recording` returns them, `replay` publishes both topics again."""
    mask = subcortical_mask(ATLAS)
    out = tmp_path / "session.h5"
    with Publisher("tcp://127.0.0.1:*") as pub:
        pub.add_head(SPACE, mask=mask)
        proc = start_cli("record", pub.url, str(out), "--count", "4")
        try:
            assert pub.wait_for_subscribers(1, timeout=30), proc.stderr.read()
            for k in range(4):
                pub.send(subcortical(k, mask))  # before the cortex row that may end `--count`
                pub.send(cortex(k))
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "4 predictions + 4 subcortical" in stdout, stdout

    rec = read_recording(out)
    head = rec.heads["subcortical"]
    assert len(rec) == 4 and rec.values.shape == (4, N_VERTICES)
    assert len(head) == 4 and head.values.shape == (4, N_VOXELS) and head.values.dtype == np.float16
    assert head.seconds.tolist() == [0, 1, 2, 3] and head.seq.tolist() == [0, 1, 2, 3]
    assert head.space["n_outputs"] == N_VOXELS and head.space["grid"] == list(mask.shape)
    p = head.prediction(2)
    assert p.space == "subcortical" and np.array_equal(p.values, subcortical(2, mask).values)
    with h5py.File(out, "r") as f:
        assert f["subcortical/values"].fletcher32 and f["values"].fletcher32

    url = f"tcp://127.0.0.1:{free_port()}"
    with Subscriber(url, topics=("prediction", "subcortical", "structures")) as sub:
        proc = start_cli("replay", str(out), "--publish", url, "--fast",
                         "--wait-subscribers", "30", FSLDIR=str(ATLAS))  # fmt: skip
        try:
            got = drain(sub, 12, timeout=30)
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert [m.topic for m in got] == ["prediction", "subcortical", "structures"] * 4
    assert [m.second for m in got if m.topic == "subcortical"] == [0, 1, 2, 3]
    assert np.array_equal(got[4].values, subcortical(1, mask).values.astype(np.float16))
    names = sub.metadata["spaces"]["subcortical"]["regions"]["names"]
    assert got[5].values[names.index(THALAMUS)] == pytest.approx(3.0)
    assert sub.missed == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the viewers draw it ---------------------------------------------------------------------


def thalamus_ramp(mask) -> np.ndarray:
    """The left thalamus strongly positive (a ramp, so most of it is coloured, not saturated
    white), everything else 0."""
    thalamus = np.array(mask.structures) == THALAMUS
    ramp = np.linspace(1.5, 3.0, len(mask), dtype=np.float32)
    return np.where(thalamus, ramp, 0.0).astype(np.float32)


def voxels_in_plane(mask, cut, structure: str) -> list[tuple[int, int, int]]:
    """The voxels of `structure` in the axial plane through `cut`."""
    names = np.array(mask.structures)
    return [tuple(v) for v in mask.ijk[(names == structure) & (mask.ijk[:, 2] == cut[2])]]


def lit(rgb) -> bool:
    """Coloured by the colormap: warm (red to yellow) or its saturated white top; not the
    mask's grey nor the background."""
    r, _, b = (int(c) for c in rgb[:3])
    return r > 200 or (r > 150 and r > b + 60)


def test_the_slice_picture_shows_a_positive_structure_warm_where_it_lies():
    from tribe_stream.surface.colors import get_colormap, robust_limits
    from tribe_stream.viewer.slices import slice_picture, voxel_pixel

    mask = subcortical_mask(ATLAS)
    values = thalamus_ramp(mask)
    limits = robust_limits(values, True, threshold_percentile=50)
    pic = slice_picture(mask, values, get_colormap("cold_hot"), limits)
    assert pic.structure == THALAMUS and pic.peak == pytest.approx(values.max())
    assert [c[0] for c in pic.columns] == ["axial", "coronal", "sagittal"]
    left = voxels_in_plane(mask, pic.cut, THALAMUS)
    right = voxels_in_plane(mask, pic.cut, "Right Thalamus")
    assert left and right
    assert all(lit(pic.rgba[voxel_pixel(pic, mask, "axial", v)]) for v in left)
    assert not any(lit(pic.rgba[voxel_pixel(pic, mask, "axial", v)]) for v in right)
    warm = [(r > 150 and r > b + 60) for r, _, b, _ in pic.rgba.reshape(-1, 4).tolist()]
    assert sum(warm) >= 4  # orange-yellow, not only the saturated top


@pytest.fixture(scope="module")
def display():
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    pytest.importorskip("glfw", reason="the viewer's window backend: pip install glfw")
    from tribe_stream.viewer.xvfb import virtual_display

    with virtual_display((1024, 768)) as name:
        yield name


def test_the_desktop_viewer_draws_the_slices_below_the_cortex(display, monkeypatch):
    """`tribe-stream view` (800 x 600 under Xvfb) on a stream with both heads: the left
    thalamus's voxels lit where the axial plane draws them, the right thalamus's not, the
    cortex and its heads-up line still there."""
    from test_viewer import BG, Viewer, quadrants, wait_screen

    from tribe_stream.surface.colors import get_colormap, robust_limits
    from tribe_stream.viewer.slices import slice_picture, voxel_pixel

    monkeypatch.setenv("FSLDIR", str(ATLAS))  # the viewer's atlas
    mask = subcortical_mask(ATLAS)
    values = thalamus_ramp(mask)
    pic = slice_picture(mask, values, get_colormap("cold_hot"),
                        robust_limits(values, True, threshold_percentile=50))  # fmt: skip
    url = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(url)
    pub.add_head(SPACE, mask=mask)
    viewer = Viewer(url, display, "--transition", "0.1")
    try:
        viewer.wait_line("viewer: waiting", timeout=60)
        deadline = time.monotonic() + 30
        while not any("viewer: connected" in x for x in viewer.lines):
            assert time.monotonic() < deadline, "\n".join(viewer.lines)
            pub.status({})
            time.sleep(0.2)
        lateral = np.linspace(0.5, 3.0, N_VERTICES, dtype=np.float32)  # the cortex: warm
        pub.send(Prediction(1, lateral, (1.0, 2.0), 6.0))
        pub.send(Prediction(1, values, (1.0, 2.0), 6.0, space="subcortical"))

        # scene._place_volume's layout of an 800 x 600 window: HUD 34, colorbar 72, the
        # slices in the lower third of the body, 16 px under the strip's top (a caption)
        body = 600 - 34 - 72
        top = 600 - 72 - body // 3
        ph, pw = pic.rgba.shape[:2]
        scale = min((body // 3 - 18) / ph, 780 / pw)
        x0 = (800 - pw * scale) / 2

        def screen(v) -> tuple[int, int]:
            row, col = voxel_pixel(pic, mask, "axial", v)
            return int(top + 16 + (row + 0.5) * scale), int(x0 + (col + 0.5) * scale)

        left = voxels_in_plane(mask, pic.cut, THALAMUS)
        right = voxels_in_plane(mask, pic.cut, "Right Thalamus")

        def drawn(img) -> bool:  # both heads' predictions on screen, the HUD line for them
            cortex_warm = sum(p["warm"] for p in quadrants(img).values()) > 1000
            hud = (img[:34].min(-1) > 180).sum() > 300
            return cortex_warm and hud and all(lit(img[screen(v)]) for v in left)

        img = wait_screen(display, drawn, timeout=30, name="subcortical-desktop")
        assert not any(lit(img[screen(v)]) for v in right)
        assert all(np.abs(img[screen(v)] - 107).max() < 12 for v in right)  # the mask's grey
        cortex = img[34:top]
        assert (np.abs(cortex - BG).sum(-1) > 40).sum() > 20000  # the cortex still drawn above
        assert (img[top : top + 16].min(-1) > 120).sum() > 50  # the caption
    finally:
        rc = viewer.stop()
        pub.close()
    assert rc == 0, "\n".join(viewer.lines)


try:
    from test_web import browser, needs_browser, open_page, shown, start_web, stop_web  # noqa: F401
except ImportError:  # the web extra missing: the page test skips
    needs_browser = pytest.mark.skip(reason="pip install 'tribe-stream[web]'")


@needs_browser
def test_the_web_page_draws_the_slices_and_the_structure_means(browser, monkeypatch):
    """`tribe-stream web` on a stream with both heads, in headless Chromium: the cortex as
    before, the slices below it with the left thalamus lit where the axial plane draws it, its
    structure means listed (largest first), the same HUD line."""
    import io

    from PIL import Image

    from tribe_stream.clock import StreamClock
    from tribe_stream.viewer.slices import slice_picture, voxel_pixel

    pytest.importorskip("aiohttp", reason="pip install 'tribe-stream[web]'")
    monkeypatch.setenv("FSLDIR", str(ATLAS))  # the server's atlas
    mask = subcortical_mask(ATLAS)
    values = thalamus_ramp(mask)
    with Publisher("tcp://127.0.0.1:*", clock=StreamClock()) as pub:
        pub.add_head(SPACE, mask=mask)
        proc, url = start_web(pub.url, "--transition", "0.1")
        try:
            assert pub.wait_for_subscribers(1, timeout=30)
            page = open_page(browser, url)
            pub.send(Prediction(3, np.linspace(0.5, 3.0, N_VERTICES, dtype=np.float32),
                                (3.0, 4.0), 8.0))  # fmt: skip
            pub.send(Prediction(3, values, (3.0, 4.0), 8.0, space="subcortical"))
            pub.status({})
            page.wait_for_function(
                "tribe.subcortical && tribe.subcortical.drawn && tribe.subcortical.second === 3"
                " && tribe.structures && tribe.structures.shown",
                timeout=30_000,
            )
            shown(page, 3)
            sub = page.evaluate("tribe.subcortical")
            shot = page.locator("#volume-slices").screenshot()
            if os.environ.get("TRIBE_WEB_SHOTS"):  # to look at it
                page.screenshot(path=Path(os.environ["TRIBE_WEB_SHOTS"]) / "subcortical-web.png")
            hud = page.locator("#hud").inner_text()
            structures = page.evaluate("tribe.structures")
            assert not page.problems, page.problems
            page.close()
        finally:
            stop_web(proc)
    assert "second 3" in hud and "drops" in hud  # the cortex's HUD line
    assert sub["structure"] == THALAMUS and structures["shown"][0] == THALAMUS
    names = list(dict.fromkeys(mask.structures))
    assert structures["values"][names.index(THALAMUS)] == pytest.approx(
        float(values[np.array(mask.structures) == THALAMUS].mean()), rel=1e-5
    )
    from tribe_stream.surface.colors import get_colormap, robust_limits

    pic = slice_picture(mask, values, get_colormap("cold_hot"), robust_limits(values, True))
    img = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"))
    sy, sx = img.shape[0] / pic.rgba.shape[0], img.shape[1] / pic.rgba.shape[1]

    def at(v):
        row, col = voxel_pixel(pic, mask, "axial", v)
        return img[int((row + 0.5) * sy), int((col + 0.5) * sx)]

    assert all(lit(at(v)) for v in voxels_in_plane(mask, pic.cut, THALAMUS))
    right = voxels_in_plane(mask, pic.cut, "Right Thalamus")
    assert all(not lit(at(v)) and np.abs(at(v).astype(int) - 107).max() < 12 for v in right)


def test_lsl_bridges_the_structure_means_one_named_channel_each():
    """`lsl URL --topic structures`: one channel per Harvard-Oxford structure, named, each
    sample the structure means the publisher sent."""
    try:
        import pylsl

        pylsl.local_clock()
        from mne_lsl.lsl import StreamInlet, resolve_streams
    except Exception as exc:  # liblsl missing or unusable here
        pytest.skip(f"LSL cannot run here: {exc}")
    import uuid

    mask = subcortical_mask(ATLAS)
    names = list(dict.fromkeys(mask.structures))
    source_id = f"test-{uuid.uuid4().hex[:8]}"
    with Publisher("tcp://127.0.0.1:*") as pub:
        pub.add_head(SPACE, mask=mask)
        proc = start_cli("lsl", pub.url, "--topic", "structures", "--source-id", source_id,
                         "--no-markers", "--count", "2")  # fmt: skip
        try:
            assert pub.wait_for_subscribers(1, timeout=60), proc.stderr.read()
            found = resolve_streams(timeout=20, source_id=source_id)
            assert found, proc.stderr.read()
            inl = StreamInlet(found[0], max_buffered=60)
            inl.open_stream(timeout=10)
            assert inl.get_sinfo().get_channel_names() == names
            for k in range(2):
                pub.send(cortex(k))
                pub.send(subcortical(k, mask))
            samples, deadline = [], time.monotonic() + 20
            while len(samples) < 2 and time.monotonic() < deadline:
                data, _ = inl.pull_chunk(timeout=0.5)
                samples += list(data)
            assert proc.wait(timeout=60) == 0, proc.stderr.read()
        finally:
            proc.kill()
    expected = [np.where(np.array(names) == THALAMUS, 2.0 + k, 0.0) for k in range(2)]
    np.testing.assert_allclose(np.array(samples)[:2], expected, atol=1e-6)


def test_channels_publish_their_heads_and_a_head_never_declared_is_counted_not_sent():
    mask = subcortical_mask(ATLAS)
    with Publisher("tcp://127.0.0.1:*") as pub:
        pub.add_head(SPACE, mask=mask)
        ch = pub.channel("cam2")  # `serve`: a stream of its own on the socket, the same heads
        bare = Publisher("tcp://127.0.0.1:*")
        with Subscriber([pub.url, bare.url], topics=("subcortical", "structures")) as sub:
            assert pub.wait_for_subscribers(1, 10.0) and bare.wait_for_subscribers(1, 10.0)
            ch.send(subcortical(5, mask))
            bare.send(subcortical(5, mask))  # no add_head: refused, counted
            got = drain(sub, 2, timeout=10)
            got += drain(sub, 1, timeout=0.5)  # nothing from the publisher without the head
        bare.close()
    assert [(m.topic, m.stream_id, m.second) for m in got] == [
        ("subcortical", "cam2", 5),
        ("structures", "cam2", 5),
    ]
    assert bare.counters["errors"] == 1 and bare.counters["sent"] == 0


def test_a_live_stream_runs_both_heads_on_one_extraction(tmp_path, monkeypatch):
    """`StreamOptions(subcortical=CKPT)`: each second the cortex and the subcortical model on the
    same window: one more brain-model call, the same extractor work as the cortex alone; the
    head's rows go out on their own topic, the cortex subscribers' unchanged."""
    from test_subcortical import _demo_head

    from tribe_stream.sources.clip import make_clip
    from tribe_stream.stream.producer import Media, Stream, StreamOptions

    monkeypatch.setenv("FSLDIR", str(ATLAS))
    monkeypatch.setenv("TRIBE_STREAM_CACHE", str(tmp_path / "cache"))
    clip = make_clip(tmp_path / "clip.mp4", 4.0, width=96, height=64)
    head = _demo_head(tmp_path / "sub")

    class Heads:  # a sink that takes heads: what the stream hands over
        heads = True

        def __init__(self):
            self.got: list[Prediction] = []

        def send(self, p):
            self.got.append(p)

        def status(self, counters):
            pass

        def close(self):
            pass

    def run(**extra):
        sink = Heads()
        options = StreamOptions(checkpoint="demo", realtime=False, text=False, **extra)
        stream = Stream(Media(file=str(clip)), options).publish("tcp://127.0.0.1:*")
        with stream.add_sink(sink).open() as running:
            url = stream.publisher.url
            with (
                Subscriber(url, topics={"subcortical"}) as heads,
                Subscriber(url, topics={"prediction"}) as plain,
            ):
                assert stream.publisher.wait_for_subscribers(2, timeout=20)
                preds = list(running)
                got = drain(heads, len(preds), timeout=5 if extra else 1)
                cortex_msgs = drain(plain, len(preds))
        return stream.server.counters, preds, sink.got, got, cortex_msgs

    counters, preds, handed, heads, plain = run(subcortical=str(head))
    assert len(preds) >= 3 and counters["head_calls"] >= 1
    sub = [p for p in handed if p.space == "subcortical"]
    assert [p.second for p in sub] == [p.second for p in preds]
    assert all(p.values.shape == (N_VOXELS,) and np.isfinite(p.values).all() for p in sub)
    assert [m.header["second"] for m in heads] == [p.second for p in preds]
    assert all(m.topic == "subcortical" and len(m.values) == N_VOXELS for m in heads)
    assert len(plain) == len(preds)
    assert all(m.topic == "prediction" and len(m.values) == N_VERTICES for m in plain)
    alone, preds_alone, handed_alone, heads_alone, _ = run()
    assert not heads_alone and not [p for p in handed_alone if p.space] and not alone["head_calls"]
    for work in ("video_clips", "audio_passes", "engine_windows"):  # (calls: batching varies)
        assert counters[work] == alone[work], work  # no second extraction
    np.testing.assert_array_equal(
        np.stack([p.values for p in preds]), np.stack([p.values for p in preds_alone])
    )
