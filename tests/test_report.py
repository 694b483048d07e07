"""`tribe-stream report`: one self-contained HTML page, made by the command from a small prediction
file and a PyAV clip, opened in headless Chromium; the pictures are decoded and looked at."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from tribe_stream import N_VERTICES
from tribe_stream.errors import InputError

CHROMIUM = "/usr/bin/chromium"
SECONDS = 5
COLOURS = [(220, 30, 30), (30, 220, 30), (30, 30, 220)]  # the clip's colour in second k: k % 3


def _clip(path: Path) -> Path:
    """SECONDS s of 8 fps video, one plain colour a second (red, green, blue, red, ...)."""
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=8)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(8 * SECONDS):
            img = np.full((48, 64, 3), COLOURS[(i // 8) % 3], np.uint8)
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    return path


def _prediction(folder: Path) -> Path:
    """pred.npy (untrained, per its JSON), its words and its three modality contributions."""
    rng = np.random.default_rng(0)
    meta = {"model": {"untrained": True, "source": "demo"}, "stimulus_sha256": "x"}
    for name in ("pred", "pred.text", "pred.audio", "pred.video"):
        np.save(folder / f"{name}.npy", rng.standard_normal((SECONDS, N_VERTICES)).astype("f4"))
        (folder / f"{name}.json").write_text(json.dumps(meta))
    words = "text\tstart\tduration\nhello\t0.2\t0.3\nthere\t3.4\t0.3\n"
    (folder / "pred.words.tsv").write_text(words)
    return folder / "pred.npy"


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    """The page `tribe-stream report` writes (a real process, as a user runs it)."""
    from tribe_stream.viewer.backend import DisplayError, use_offscreen_backend

    try:
        use_offscreen_backend()
    except DisplayError as exc:
        pytest.skip(f"no headless OpenGL here ({exc})")
    folder = tmp_path_factory.mktemp("report")
    pred, clip = _prediction(folder), _clip(folder / "clip.mp4")
    out = folder / "report.html"
    r = run_cli("report", str(pred), "--stimulus", str(clip), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "UNTRAINED" in r.stdout + r.stderr and str(out) in r.stdout
    return out


def _images(text: str) -> list[tuple[str, bytes]]:
    return [
        (cls, base64.b64decode(data))
        for cls, data in re.findall(
            r'<img class="(\w+)"[^>]*src="data:image/\w+;base64,([^"]+)"', text
        )
    ]


def test_the_page_holds_everything_inline_aligned_to_the_stimulus(page_file):
    from PIL import Image

    text = page_file.read_text()
    assert "http:" not in text and "https:" not in text and "<script" not in text
    images = _images(text)
    kinds = [cls for cls, _ in images]
    assert kinds.count("frame") == SECONDS and kinds.count("cortex") == SECONDS
    assert kinds.count("rgb") == 1
    # the frame of row k is the clip in the middle of second k: its colour is second k's
    frames = [
        np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for c, b in images if c == "frame"
    ]
    for k, frame in enumerate(frames):
        centre = frame[100:160, 150:210].reshape(-1, 3).mean(axis=0)
        assert np.argmax(centre) == np.argmax(COLOURS[k % 3]), (k, centre)
    cortex = [
        np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for c, b in images if c == "cortex"
    ]
    assert all(np.ptp(c.reshape(-1, 3), axis=0).max() > 100 for c in cortex)  # a picture, not blank
    assert not np.array_equal(cortex[0], cortex[1])  # each second its own map
    # the time courses (hemispheres: no atlas) and the contributions' r, one line per modality
    assert text.count("<svg") == 2 and text.count("<polyline") == 2 + 3
    # words of the second they were spoken in
    rows = text.split("<tr>")
    assert "hello" in next(r for r in rows if "<b>0 s</b>" in r)
    assert "there" in next(r for r in rows if "<b>3 s</b>" in r)


def test_the_page_in_chromium_shows_its_pictures_and_the_untrained_stamp(page_file):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            requests = []
            page.on("request", lambda req: requests.append(req.url))
            page.goto(page_file.as_uri())
            sizes = page.evaluate("[...document.images].map(i => [i.naturalWidth, i.complete])")
            assert len(sizes) == 2 * SECONDS + 1 and all(w > 0 and ok for w, ok in sizes)
            assert page.locator("svg.plot polyline").count() == 5
            banner = page.locator("#untrained")
            assert banner.is_visible() and "UNTRAINED demo weights" in banner.inner_text()
            assert page.title().startswith("UNTRAINED demo weights")
            assert page.locator("svg.plot text.stamp").count() == 2
            png = page.screenshot(full_page=True)
        finally:
            browser.close()
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    from PIL import Image

    shot = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    assert shot.std() > 30 and len(np.unique(shot.reshape(-1, 3), axis=0)) > 500


def test_rows_shown_are_capped_with_a_stride():
    from tribe_stream.report import shown_rows

    assert shown_rows(5) == ([0, 1, 2, 3, 4], 1)
    rows, stride = shown_rows(600, max_frames=24)
    assert stride == 25 and len(rows) == 24 and rows[-1] == 575
    assert shown_rows(100, max_frames=24, stride=2) == (list(range(0, 48, 2)), 2)
    with pytest.raises(InputError):
        shown_rows(10, max_frames=0)


def test_bad_inputs_are_one_line_before_any_rendering(tmp_path):
    pred = _prediction(tmp_path)
    r = run_cli("report", str(pred), "--stimulus", str(tmp_path / "nope.mp4"), "--out",
                str(tmp_path / "r.html"))  # fmt: skip
    assert r.returncode == 2 and "nope.mp4 does not exist" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("report", str(pred), "--out", str(tmp_path / "r.png"))
    assert r.returncode == 2 and "must end in .html" in r.stderr
    assert not (tmp_path / "r.html").exists()
