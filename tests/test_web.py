"""The web viewer (`tribe-stream web`), tested for real: a real Publisher on loopback, the real
server in its own process, Debian's Chromium driven by Playwright (SwiftShader WebGL), and for
capture Chromium's fake camera and microphone through the demo pipeline."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tribe_stream import AUDIO_RATE, N_VERTICES, N_VERTICES_HEMI
from tribe_stream.clock import StreamClock
from tribe_stream.sources.browser import BrowserSource, CapturePacket
from tribe_stream.types import Prediction
from tribe_stream.web.wire import HEAD, Rejected, parse_packet, parse_text

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(os.environ.get("TRIBE_WEB_SHOTS", "")) if os.environ.get("TRIBE_WEB_SHOTS") else None
"""Set TRIBE_WEB_SHOTS=DIR to keep the screenshots the tests check (to look at them)."""


def jpeg(width: int, height: int, rgb=(200, 40, 40)) -> bytes:
    """A real JPEG, encoded by FFmpeg's mjpeg encoder through PyAV."""
    enc = av.CodecContext.create("mjpeg", "w")
    enc.width, enc.height, enc.pix_fmt, enc.time_base = width, height, "yuvj420p", Fraction(1, 25)
    img = np.empty((height, width, 3), np.uint8)
    img[:] = rgb
    frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuvj420p")
    return b"".join(bytes(p) for p in enc.encode(frame) + enc.encode(None))


def packet(tag: bytes, t_ms: float, payload: bytes, rate: int = 0) -> bytes:
    return HEAD.pack(tag, rate, t_ms) + payload


def in_thread(fn, *args):
    """`fn(*args)` in a thread of its own (Playwright's sync API holds this thread's event loop,
    so asyncio.run and the CLI's server cannot run here once a browser is open)."""
    out: dict = {}

    def call():
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            out["error"] = exc

    t = threading.Thread(target=call)
    t.start()
    t.join(120)
    if "error" in out:
        raise out["error"]
    return out["value"]


# ---------------------------------------------------------------------------------------------
# The page's messages and the browser source, without a browser


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"JPE", "truncated"),
        (packet(b"JPEG", 1.0, b""), "truncated"),
        (packet(b"JPEG", 1.0, b"x" * ((1 << 20) + 1)), "oversized"),
        (packet(b"JPEG", float("nan"), b"xx"), "bad-time"),
        (packet(b"JPEG", -5.0, b"xx"), "bad-time"),
        (packet(b"WAV!", 1.0, b"xx"), "bad-tag"),
        (packet(b"PCMF", 1.0, b"\0" * 8, rate=100), "bad-rate"),
        (packet(b"PCMF", 1.0, b"\0" * 6, rate=16000), "truncated"),
        (packet(b"PCMS", 1.0, b"\0" * 2 * 16001, rate=16000), "oversized"),
    ],
)
def test_bad_capture_packets_are_refused_with_their_reason(data, reason):
    with pytest.raises(Rejected) as exc:
        parse_packet(data, "s")
    assert exc.value.reason == reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{", "bad-json"),
        ("[1, 2]", "bad-json"),
        ('{"type": "settings", "threshold_pct": NaN}', "bad-json"),
        ('{"type": "nope"}', "bad-type"),
        ('{"type": "settings", "threshold_pct": 150}', "bad-type"),
        ('{"type": "settings", "cmap": 3}', "bad-type"),
        ('{"type": "capture", "action": "explode"}', "bad-type"),
        ('{"type": "settings", "cmap": "' + "x" * 5000 + '"}', "oversized"),
        ("[" * 100000 + "]" * 100000, "oversized"),
    ],
)
def test_bad_page_messages_are_refused_with_their_reason(text, reason):
    with pytest.raises(Rejected) as exc:
        parse_text(text)
    assert exc.value.reason == reason


def test_good_packets_parse_to_what_the_page_sent():
    pcm = (np.arange(160, dtype=np.int16) * 100).tobytes()
    p = parse_packet(packet(b"PCMS", 2500.0, pcm, rate=48000), "tab1")
    assert (p.kind, p.t, p.rate, p.session) == ("audio", 2.5, 48000, "tab1")
    np.testing.assert_array_equal(p.data, np.arange(160) * 100 / 32768.0)
    v = parse_packet(packet(b"JPEG", 10.0, b"\xff\xd8abc"), "tab1")
    assert (v.kind, v.t, v.data) == ("video", 0.01, b"\xff\xd8abc")
    assert parse_text('{"type": "settings", "cmap": "hot", "threshold_pct": 20}')["cmap"] == "hot"


def _drain(src: BrowserSource, n: int, timeout: float = 10.0) -> list:
    got, deadline = [], time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        c = src.get(0.1)
        if c is not None:
            got.append(c)
    return got


def test_browser_source_decodes_frames_and_counts_sound_on_the_stream_clock():
    clock = StreamClock(t0_monotonic=time.monotonic() - 10)  # a stream 10 s old
    # the packets below are not sent at their page times' pace (a loaded machine may take
    # seconds between them): no re-anchoring here, that has its own test
    src = BrowserSource(clock=clock, resync_s=600).start()
    tone = np.sin(np.arange(4800) / 48000 * 2 * np.pi * 440).astype(np.float32)
    tone[10] = np.nan
    picture = jpeg(640, 480)  # made first: making it took 3.6 s on a loaded machine, a clock jump
    try:
        # the page's clock has any origin; its first packet anchors it on the stream clock
        src.offer(CapturePacket("audio", 50.0, tone, rate=48000, session="a"))
        chunks = _drain(src, 1)
        for i in range(3):
            src.offer(CapturePacket("video", 49.0 + i / 15, picture, session="a"))
        src.offer(CapturePacket("video", 49.2, b"\xff\xd8 not a picture", session="a"))
        src.offer(CapturePacket("video", 49.1, picture, session="a"))  # older
        for i in range(1, 5):  # 100 ms runs at 48 kHz, at their pace, resampled to 16 kHz
            time.sleep(0.1)
            src.offer(CapturePacket("audio", 50.0 + 0.1 * i, tone, rate=48000, session="a"))
        chunks += _drain(src, 3 + 4)
        c = src.counters
    finally:
        src.stop()
    video = [ch for ch in chunks if ch.kind == "video"]
    audio = [ch for ch in chunks if ch.kind == "audio"]
    assert len(video) == 3 and all(ch.data.shape == (1, 292, 389, 3) for ch in video)
    assert abs(int(video[0].data[0, 100, 100, 0]) - 200) < 12  # the red picture, decoded
    stamps = [ch.start for ch in video]
    assert np.allclose(np.diff(stamps), 1 / 15, atol=1e-6)  # the page's spacing, kept
    assert all(0 <= s <= clock.now() for s in stamps)  # on the stream clock, never ahead
    assert c["corrupt_frames"] == 1 and c["out_of_order_frames"] == 1
    assert c["nonfinite_samples"] == 5 and all(np.isfinite(ch.data).all() for ch in audio)
    assert sum(len(ch.data) for ch in audio) > 0.9 * 5 * 1600
    for a, b in zip(audio, audio[1:], strict=False):  # contiguous: stamps count samples
        assert b.start == pytest.approx(a.end, abs=1e-9)
    assert audio[0].start - video[0].start == pytest.approx(1.0, abs=1e-6)  # the page's times


def test_sound_captured_before_the_stream_began_is_skipped_not_dropped():
    """A page that opens its microphone as the stream starts sends sound from before clock
    zero: that part is left out (`skipped_samples`, not a loss), the rest kept from zero on."""
    clock = StreamClock(t0_monotonic=time.monotonic() - 0.1)  # a stream 0.1 s old
    src = BrowserSource(clock=clock).start()
    try:  # 0.3 s of sound ending now: its first ~0.2 s predate the stream
        src.offer(CapturePacket("audio", 7.0, np.full(14400, 0.25, np.float32), rate=48000))
        src.offer(CapturePacket("audio", 6.0, np.zeros(4800, np.float32), rate=48000))  # all before
        (chunk,) = _drain(src, 1)
        time.sleep(0.2)
        c = src.counters
    finally:
        src.stop()
    assert c["dropped_samples"] == 0 and c["dropped_chunks"] == 0
    kept = len(chunk.data)
    assert 0 <= chunk.start < 0.05 and 1000 < kept <= 1900  # ~0.1 s at 16 kHz from zero on
    assert c["skipped_samples"] + kept == pytest.approx(4800 + 1600, abs=40)  # nothing lost
    assert np.allclose(chunk.data[100:-100], 0.25, atol=1e-3)


def test_browser_source_reanchors_for_a_new_page_and_drops_the_oldest_when_behind():
    src = BrowserSource(clock=StreamClock(t0_monotonic=time.monotonic() - 10), inbox_size=4)
    for i in range(10):  # not started: the inbox fills, the oldest go, before the stream began
        src.offer(
            CapturePacket(
                "audio", 5.0 + 0.05 * i, np.zeros(2400, np.float32), rate=48000, session="a"
            )
        )
    c = src.counters  # left out before the start, not lost (before: 6 drops of 2400 samples)
    assert c["dropped_chunks"] == c["dropped_samples"] == 0
    assert c["skipped_samples"] == 6 * 800  # 16 kHz samples, as every source counts them
    src.start()
    try:
        first = _drain(src, 4)
        src.offer(CapturePacket("audio", 99999.0, np.zeros(800, np.float32), session="b"))
        (second,) = _drain(src, 1)
        for i in range(3000):  # far faster than the thread resamples: the oldest go, counted
            src.offer(
                CapturePacket("audio", 99999.1 + 0.05 * i, np.zeros(800, np.float32), session="b")
            )
    finally:
        src.stop()
    assert src.counters["clock_resyncs"] == 1  # another page's clock: anchored again
    assert second.start >= first[-1].end - 1e-9  # never overlapping what was sent
    c = src.counters
    assert c["dropped_chunks"] > 0 and c["dropped_samples"] >= 800 * c["dropped_chunks"]


def test_a_busy_decoder_neither_moves_stamps_nor_reanchors(caplog):
    """Before: a packet's delay was taken when the source's thread got to it, so a backlog (a
    machine busy with the models) moved stamps later and re-anchored the clock again and again
    (32 warnings in 45 s). Now the delay is taken on arrival."""
    clock = StreamClock(t0_monotonic=time.monotonic() - 10)
    src = BrowserSource(clock=clock, inbox_size=64, resync_s=1.0)
    t_page = 100.0
    arrivals = []
    for i in range(30):  # 1.5 s of sound at its pace, while the thread is not running yet
        src.offer(CapturePacket("audio", t_page + 0.05 * i, np.zeros(800, np.float32), session="a"))
        arrivals.append(clock.now())
        time.sleep(0.05)
    time.sleep(1.5)  # the backlog: decoded 1.5 s or more after they arrived
    src.start()
    try:
        chunks = _drain(src, 30)
    finally:
        src.stop()
    assert len(chunks) == 30
    assert src.counters["clock_resyncs"] == 0
    assert "re-anchored" not in caplog.text
    # stamped when they arrived (the first one's arrival anchors), not when decoded
    assert chunks[0].start == pytest.approx(arrivals[0] - 0.05, abs=0.2)
    assert chunks[-1].end < arrivals[-1] + 0.3


# ---------------------------------------------------------------------------------------------
# The server and the page, in a real browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_web(*args: str, timeout: float = 120.0) -> tuple[subprocess.Popen, str]:
    """`tribe-stream web ARGS --port 0` in its own process; returns it and the URL it prints."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tribe_stream.cli", "web", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"web viewer on (\S+)", line)
        if m:
            proc.startup = "".join(lines)
            return proc, m.group(1)
    proc.kill()
    raise AssertionError("the web server did not start:\n" + "".join(lines))


def stop_web(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143, out
    assert "Traceback" not in out, out
    return out


def get(url: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


needs_browser = pytest.mark.skipif(
    not Path(CHROMIUM).exists() or shutil.which("chromium") is None,
    reason="Debian's chromium is not installed (apt-get install chromium; .ci/run does)",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium (fresh profile; SwiftShader WebGL; fake camera and microphone)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            viewport={"width": 1000, "height": 700},
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
            ],
        )
        yield ctx
        ctx.close()


@pytest.fixture(autouse=True)
def _close_pages(request):
    """Each test's tabs closed after it, even when it fails (a tab left open by one failure
    was counted by the next test's relay statistics)."""
    yield
    if "browser" in request.fixturenames:
        for page in request.getfixturevalue("browser").pages:
            if not page.is_closed() and page.url.startswith("http"):
                page.close()


@pytest.fixture(scope="module")
def annots(tmp_path_factory):
    from test_regions import write_annot

    d = tmp_path_factory.mktemp("atlas")
    lh, rh = d / "lh.t.annot", d / "rh.t.annot"
    write_annot(lh, N_VERTICES_HEMI, 6, 21)
    write_annot(rh, N_VERTICES_HEMI, 5, 22)
    return lh, rh


@pytest.fixture(scope="module")
def stream(annots):
    """A real Publisher (with region means) and a web server showing it."""
    pytest.importorskip("aiohttp", reason="pip install 'tribe-stream[web]'")
    from tribe_stream.publish import Publisher
    from tribe_stream.regions import load_atlas

    atlas = load_atlas(*annots)
    with Publisher("tcp://127.0.0.1:*", clock=StreamClock(), atlas=atlas) as pub:
        proc, url = start_web(pub.url, "--threshold-pct", "0", "--transition", "0.2")
        try:
            assert pub.wait_for_subscribers(1, timeout=30)
            pub.atlas_ = atlas
            yield pub, url
        finally:
            stop_web(proc)


class Feed:
    """Publishes predictions with increasing seconds."""

    def __init__(self, pub):
        self.pub, self.second = pub, 0

    def send(self, values: np.ndarray) -> int:
        self.second += 1
        k = self.second
        self.pub.send(Prediction(k, values, (k, k + 1), k + 5, {}, {"dropped_frames": 0}))
        self.pub.status({})
        return k


def hemispheres(left: float, right: float) -> np.ndarray:
    """`left` and `right` times a ramp in (0.5, 3]: one sign per hemisphere."""
    ramp = np.linspace(0.5, 3.0, N_VERTICES_HEMI, dtype=np.float32)
    return np.concatenate([left * ramp, right * ramp])


def open_page(browser, url: str, query: str = ""):
    page = browser.new_page()
    page.problems = []  # script errors and WebGL errors (INVALID_OPERATION...) the page logs
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    page.on(
        "console",
        lambda m: (
            page.problems.append(m.text) if m.type == "error" or "GL_INVALID" in m.text else None
        ),
    )
    page.goto(url + query)
    page.wait_for_function("window.tribe && window.tribe.presents > 0", timeout=60_000)
    return page


def shown(page, second: int, timeout: float = 30_000) -> None:
    """Wait until `second` is on screen and its fade has finished."""
    page.wait_for_function(f"tribe.shownSecond >= {second} && tribe.presents > 0", timeout=timeout)
    page.wait_for_timeout(400)


def restyled(page, change) -> None:
    """Make a settings `change` and wait until the page has drawn the server's resend of the
    newest map in its new look (waiting only for `drawn >= received` passed at once when the
    resend had not yet arrived)."""
    before = page.evaluate("tribe.received")
    change()
    page.wait_for_function(f"tribe.received > {before} && !tribe.waiting")


def panels(page, name: str) -> dict[str, np.ndarray]:
    """The screenshot of the cortex, split into the view's panels (mean colour of the cortex
    pixels, i.e. those that are not the black background)."""
    import io

    from PIL import Image

    box = page.locator("#cortex").bounding_box()
    png = page.screenshot(clip=box)
    if SHOTS is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        (SHOTS / f"{name}.png").write_bytes(png)
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)
    h, w, _ = img.shape
    view = page.evaluate("tribe.scene.views[document.getElementById('view').value]")
    rows, cols = view["grid"]
    out = {}
    for i, panel in enumerate(view["panels"]):
        r, c = divmod(i, cols)
        cell = img[r * h // rows : (r + 1) * h // rows, c * w // cols : (c + 1) * w // cols]
        parts = {panel["label"]: cell}
        if panel["label"] == "dorsal":  # from above: the left hemisphere on the left
            parts = {"left": cell[:, : cell.shape[1] // 2], "right": cell[:, cell.shape[1] // 2 :]}
        for label, part in parts.items():
            px = part.reshape(-1, 3)
            cortex = px[px.sum(1) > 60]
            assert len(cortex) > 0.15 * len(px), f"{label} of {name} shows little cortex"
            out[label] = cortex.mean(0)
    return out


def warm(rgb) -> bool:
    return rgb[0] > rgb[2] + 60


def cold(rgb) -> bool:
    return rgb[2] > rgb[0] + 60


def grey(rgb) -> bool:
    return np.ptp(rgb) < 25


@needs_browser
def test_the_page_draws_the_cortex_and_its_colours_follow_the_stream(browser, stream):
    pub, url = stream
    feed = Feed(pub)
    page = open_page(browser, url)
    blank = panels(page, "0-no-prediction")  # the bare cortex: sulcal grey in every panel
    assert all(grey(rgb) for rgb in blank.values()), blank
    k = feed.send(hemispheres(+1, -1))
    shown(page, k)
    a = panels(page, "1-left-warm-right-cold")
    assert warm(a["left lateral"]) and warm(a["left medial"]), a
    assert cold(a["right lateral"]) and cold(a["right medial"]), a
    hud = page.locator("#hud").inner_text()
    assert f"second {k}" in hud and "drops none" in hud and "fps" in hud, hud
    k = feed.send(hemispheres(-1, +1))
    shown(page, k)
    b = panels(page, "2-swapped")
    assert cold(b["left lateral"]) and warm(b["right lateral"]), b
    # a sequential colormap shows only values above the threshold (here the median, about 0):
    # the negative hemisphere goes sulcal grey
    restyled(page, lambda: page.locator("#threshold").fill("50"))
    restyled(page, lambda: page.select_option("#cmap", "hot"))
    assert page.evaluate("tribe.header.relay.cmap") == "hot"
    assert abs(page.evaluate("tribe.limits.threshold")) < 0.01
    page.wait_for_timeout(400)
    c = panels(page, "3-hot")
    assert grey(c["left lateral"]) and warm(c["right lateral"]), c
    restyled(page, lambda: page.locator("#threshold").fill("0"))
    restyled(page, lambda: page.select_option("#cmap", "cold_hot"))
    page.select_option("#view", "dorsal")  # from above: left hemisphere on the left
    page.wait_for_function("tribe.header.relay.cmap === 'cold_hot'")
    page.wait_for_timeout(400)
    d = panels(page, "4-dorsal")
    assert cold(d["left"]) and warm(d["right"]), d
    assert page.evaluate("tribe.passedOver") == 0 and not page.problems, page.problems
    page.close()


@needs_browser
def test_the_waiting_banner_never_covers_a_panel_name(browser):
    """Before: "waiting for stream" sat on the "right medial" label (every label at its
    panel's top-left corner: the bottom-right one at the middle of the stage)."""
    pytest.importorskip("aiohttp")
    proc, page_url = start_web(f"tcp://127.0.0.1:{free_port()}")  # nothing publishes there
    try:
        page = open_page(browser, page_url)
        page.wait_for_function(
            "document.getElementById('banner').textContent.startsWith('waiting for stream')",
            timeout=30_000,
        )
        boxes = page.evaluate(
            """() => {
                const r = document.createRange();
                r.selectNodeContents(document.getElementById("banner"));
                const b = r.getBoundingClientRect();
                const labels = [...document.querySelectorAll("#labels div")].map((d) => {
                    const q = d.getBoundingClientRect();
                    return [d.textContent, q.left, q.top, q.right, q.bottom];
                });
                return {banner: [b.left, b.top, b.right, b.bottom], labels};
            }"""
        )
        page.close()
    finally:
        stop_web(proc)
    left, top, right, bottom = boxes["banner"]
    assert right - left > 50 and len(boxes["labels"]) == 4, boxes
    for name, lo, to, ro, bo in boxes["labels"]:
        apart = ro < left - 4 or lo > right + 4 or bo < top - 4 or to > bottom + 4
        assert apart, f"{name!r} lies under the banner: {boxes}"


def test_a_second_tab_joining_late_sees_the_stream_too(browser, stream):
    pub, url = stream
    feed = Feed(pub)
    feed.second = 100
    first = open_page(browser, url)
    for _ in range(3):
        k = feed.send(hemispheres(+1, -1))
        time.sleep(0.3)
    shown(first, k)
    late = open_page(browser, url, "?view=left")
    shown(late, k)  # the newest prediction at once, without waiting for the next
    assert late.evaluate("tribe.received") == 1
    k = feed.send(hemispheres(-1, +1))
    shown(first, k)
    shown(late, k)
    assert cold(panels(late, "5-late-tab")["left lateral"])
    stats = json.loads(get(url + "stats")[1])
    assert stats["relay"]["pages"] == 2 and stats["relay"]["subscriber"]["missed"] == 0
    first.close()
    late.close()


@needs_browser
def test_region_means_show_as_a_live_bar_chart(browser, stream):
    pub, url = stream
    feed = Feed(pub)
    feed.second = 200
    page = open_page(browser, url)
    values = np.random.default_rng(3).standard_normal(N_VERTICES).astype(np.float32)
    k = feed.send(values)
    page.wait_for_function(f"tribe.roi && tribe.roi.second === {k} && tribe.roi.shown")
    roi = page.evaluate("tribe.roi")
    names = page.evaluate("tribe.metadata.regions.names")
    expected = pub.atlas_.means(values)
    np.testing.assert_allclose(roi["values"], expected, rtol=1e-5, atol=1e-6)
    assert names == list(pub.atlas_.names)
    top = [names[i] for i in np.argsort(-np.abs(expected), kind="stable")[:12]]
    assert roi["shown"] == top
    assert page.locator("#roi").is_visible()
    page.close()


def test_bad_websocket_messages_are_counted_and_dropped(stream):
    aiohttp = pytest.importorskip("aiohttp")
    pub, url = stream
    feed = Feed(pub)
    feed.second = 300
    origin = url.rstrip("/")

    async def talk():
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(url + "ws", origin=origin) as ws:
                await ws.send_str("{not json")
                await ws.send_str(json.dumps({"type": "settings", "cmap": "nope"}))
                await ws.send_bytes(packet(b"JPEG", 1.0, jpeg(32, 32)))  # capture is off
                await ws.send_bytes(b"\x01")
                await ws.send_str(json.dumps({"type": "capture", "session": "x"}))
                feed.send(hemispheres(+1, -1))
                while True:  # the connection survived: predictions still come
                    msg = await asyncio.wait_for(ws.receive(), 10)
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        header_len = struct.unpack_from("<I", msg.data, 4)[0]
                        header = json.loads(msg.data[8 : 8 + header_len])
                        if header["second"] == feed.second:
                            break
            async with s.ws_connect(url + "ws", origin=origin, max_msg_size=0) as ws:
                try:  # beyond aiohttp's limit: the server closes this socket, maybe mid-send
                    await ws.send_bytes(b"x" * (5 << 20))
                    while not ws.closed:
                        await asyncio.wait_for(ws.receive(), 10)
                except ConnectionError:
                    pass
            return header

    header = in_thread(asyncio.run, talk())
    assert header["relay"]["limits"]["vmax"] > 0
    rejected = json.loads(get(url + "stats")[1])["rejected"]
    # the JPEG and the 1-byte packet (capture is off), and the capture request
    assert rejected == {"bad-json": 1, "bad-type": 1, "capture-off": 3, "closed-oversized": 1}


def test_loopback_only_and_the_token_beyond_it(stream):
    aiohttp = pytest.importorskip("aiohttp")
    pub, url = stream
    port = url.rsplit(":", 1)[1].strip("/")
    assert get(url, {"Host": f"evil.example:{port}"})[0] == 403  # DNS rebinding
    status, body, _ = get(url + "scene.json")
    assert status == 200 and json.loads(body)["capture"] is False

    async def cross_site():
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await s.ws_connect(url + "ws", origin="http://evil.example")
            return exc.value.status

    assert in_thread(asyncio.run, cross_site()) == 403
    # beyond loopback: a token is made and printed; without it nothing answers
    proc, remote = start_web(pub.url, "--host", "0.0.0.0")
    try:
        token = re.search(r"\?token=(\S+)", remote).group(1)
        base = f"http://127.0.0.1:{remote.rsplit(':', 1)[1].split('/')[0]}/"
        assert len(token) >= 20
        assert get(base)[0] == 403 and get(base + "mesh.bin")[0] == 403
        assert get(base + "stats?token=wrong")[0] == 403
        status, _, headers = get(base + "?token=" + token)
        assert status == 200 and "HttpOnly" in headers["Set-Cookie"]
        cookie = headers["Set-Cookie"].split(";")[0]
        assert get(base + "stats", {"Cookie": cookie})[0] == 200

        async def ws_status(query: str) -> int:
            async with aiohttp.ClientSession() as s:
                try:
                    async with s.ws_connect(base + "ws" + query, origin=base.rstrip("/")):
                        return 101
                except aiohttp.WSServerHandshakeError as exc:
                    return exc.status

        assert in_thread(asyncio.run, ws_status("")) == 403
        assert in_thread(asyncio.run, ws_status("?token=" + token)) == 101
    finally:
        stop_web(proc)


def test_web_command_errors_are_one_line(stream, capsys):
    from tribe_stream.cli import main

    pub, url = stream
    port = url.rsplit(":", 1)[1].strip("/")
    for args, needle in [
        ([pub.url, "--lag", "1"], "the model's options are for --capture"),
        ([pub.url, "--token", "short"], "--token must be at least 8"),
        ([pub.url, "--port", port], f"cannot serve on 127.0.0.1:{port}"),
        ([pub.url, "--cert", "/nonexistent.pem", "--key", "/nonexistent.key"], "no such file"),
        (["tcp://127.0.0.1:99999"], "port must be a number from 1 to 65535"),
    ]:
        assert in_thread(main, ["web", *args]) == 2, args
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], (args, lines)


@needs_browser
def test_capture_from_the_browser_camera_and_microphone_end_to_end(browser):
    """Chromium's fake camera and microphone → the page → the demo pipeline → the page."""
    pytest.importorskip("aiohttp")
    pytest.importorskip("transformers")
    url = f"tcp://127.0.0.1:{free_port()}"
    proc, page_url = start_web(url, "--capture", "--checkpoint", "demo", "--no-text", timeout=300)
    try:
        page = open_page(browser, page_url)
        assert page.locator("#capture").is_visible()
        page.click("#capture")
        page.wait_for_function(
            "tribe.capture.accepted && tribe.capture.frames > 10", timeout=30_000
        )
        page.wait_for_function(
            "tribe.header && tribe.header.counters['source0.frames'] > 20 && "
            "tribe.header.counters['source0.samples'] > 16000 && tribe.drawn >= 3",
            timeout=90_000,
        )
        panels(page, "6-capture")  # the cortex is drawn with the captured stream's map
        h = page.evaluate("tribe.header")
        hud = page.inner_text("#hud")
        cap = page.evaluate("tribe.capture")
        stats = json.loads(get(page_url + "stats")[1])
    finally:
        out = stop_web(proc)
    assert cap["audioRate"] == AUDIO_RATE and cap["samples"] > 16000 and not cap["error"]
    src = stats["capture"]["source"]
    assert src["corrupt_frames"] == 0 and src["frames"] > 20 and src["samples"] > 16000
    assert h["counters"]["empty_video_bins"] < h["counters"]["bins"]  # bins had the camera
    assert h["model"] and h["second"] >= 2 and stats["rejected"] == {}
    assert "modalities: audio, video; engine torch on cpu" in proc.startup, proc.startup
    # drops by unit (before: `drops 30406`, samples, frames, chunks and bins added together)
    assert re.search(r"drops (none|\d[\d.]* (s of sound|frames|bins|seconds|messages))", hud), hud
    # demo weights say so, in the terminal and on the page (before: on neither)
    assert "UNTRAINED demo weights: the maps mean nothing" in proc.startup, proc.startup
    assert hud.startswith("UNTRAINED demo weights"), hud
    # said before the models load (before: nothing for the 30-60 s they took)
    assert proc.startup.startswith("loading the models (demo)"), proc.startup
    assert "Traceback" not in out


def watched_page(browser, url: str):
    """A page that records the `stream_id` of every prediction its WebSocket receives."""
    page = browser.new_page()
    page.seen = []

    def on_socket(ws) -> None:
        def frame(payload) -> None:
            if isinstance(payload, bytes) and payload[:4] == b"PRED":
                n = struct.unpack("<I", payload[4:8])[0]
                page.seen.append(json.loads(payload[8 : 8 + n])["stream_id"])

        ws.on("framereceived", frame)

    page.on("websocket", on_socket)
    page.goto(url)
    page.wait_for_function("window.tribe && window.tribe.presents > 0", timeout=60_000)
    return page


def test_two_pages_capture_at_once_and_each_sees_only_its_own_stream(browser):
    """Each capturing page is a stream of its own on one server; the page beyond
    `--max-streams` is told busy on the page and gets nothing."""
    pytest.importorskip("aiohttp")
    pytest.importorskip("transformers")
    url = f"tcp://127.0.0.1:{free_port()}"
    proc, page_url = start_web(
        url, "--capture", "--checkpoint", "demo", "--no-text", "--max-streams", "2", timeout=300
    )
    try:
        pages = [watched_page(browser, page_url) for _ in range(2)]
        for page in pages:
            page.click("#capture")
        for page in pages:
            page.wait_for_function("tribe.capture.accepted && tribe.drawn >= 2", timeout=90_000)
        third = watched_page(browser, page_url)
        third.click("#capture")
        third.wait_for_function(
            "document.getElementById('capture-state').textContent.startsWith('busy')",
            timeout=30_000,
        )
        label = third.inner_text("#capture-state")
        ids = [page.evaluate("tribe.header.stream_id") for page in pages]
        n = [len(page.seen) for page in pages]
        for page, k in zip(pages, n, strict=True):  # still going with the third refused
            page.wait_for_function(f"tribe.received > {k}", timeout=30_000)
        stats = json.loads(get(page_url + "stats")[1])
        third_state = third.evaluate("[tribe.capture.accepted, tribe.received]")
    finally:
        out = stop_web(proc)
    assert len(set(ids)) == 2 and all(i and i.startswith("page-") for i in ids), ids
    for page, sid in zip(pages, ids, strict=True):
        assert page.seen and set(page.seen) == {sid}, (sid, set(page.seen))
    assert third_state == [False, 0] and third.seen == []
    assert "try again" in label, label
    assert stats["capture"]["capturing"] == 2 and sorted(stats["capture"]["streams"]) == sorted(ids)
    assert "Traceback" not in out
