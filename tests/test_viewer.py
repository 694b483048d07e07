"""The live viewer for real: a real publisher, `tribe-stream view` in a real GL window under
Xvfb (Mesa llvmpipe), screenshots of the X screen checked pixel by pixel.

The viewer's pure parts (heads-up line, colours, views, sizes) are in test_viewer_pure.py, which
needs no display.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tribe_stream import N_VERTICES_HEMI

pytestmark = pytest.mark.skipif(
    shutil.which("Xvfb") is None, reason="Xvfb is not installed (apt-get install xvfb)"
)

BG = np.array([18, 18, 23])  # scene.BACKGROUND in 8-bit
SHOTS = (
    Path(os.environ.get("TRIBE_STREAM_SHOTS", "")) if os.environ.get("TRIBE_STREAM_SHOTS") else None
)


@pytest.fixture(scope="module")
def display():
    pytest.importorskip("glfw", reason="the viewer's window backend: pip install glfw")
    from tribe_stream.viewer.xvfb import virtual_display

    with virtual_display((1024, 768)) as name:
        yield name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def grab(display: str) -> np.ndarray | None:
    """The viewer's 800 x 600 window cut from a screenshot of the X screen (found by its
    background colour), or None while it is not on screen."""
    from PIL import ImageGrab

    img = np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB")).astype(int)
    bg = np.abs(img - BG).sum(-1) < 6
    if bg.sum() < 10000:
        return None
    rows, cols = np.nonzero(bg.any(1))[0], np.nonzero(bg.any(0))[0]
    win = img[rows[0] : rows[0] + 600, cols[0] : cols[0] + 800]
    return win if win.shape[:2] == (600, 800) else None


def quadrants(img: np.ndarray) -> dict[str, dict[str, int]]:
    """Warm/cool/cortex pixel counts in the 2 x 2 panels of the "both" view."""
    h, w = img.shape[:2]
    body = img[34 : h - 72]  # between the heads-up line and the colorbar strip
    bh = body.shape[0]
    out = {}
    for name, part in {
        "left lateral": body[: bh // 2, : w // 2],
        "right lateral": body[: bh // 2, w // 2 :],
        "left medial": body[bh // 2 :, : w // 2],
        "right medial": body[bh // 2 :, w // 2 :],
    }.items():
        r, b = part[..., 0], part[..., 2]
        cortex = (np.abs(part - BG).sum(-1) > 40) & (part.max(-1) > 60)
        out[name] = {
            "cortex": int(cortex.sum()),
            "warm": int((cortex & (r > b + 60) & (r > 120)).sum()),
            "cool": int((cortex & (b > r + 60) & (b > 120)).sum()),
        }
    return out


def mostly(q: dict[str, int], colour: str) -> bool:
    other = "cool" if colour == "warm" else "warm"
    return q[colour] > 2000 and q[colour] > 10 * q[other]


def lateral_map(left_sign: float, right_sign: float) -> np.ndarray:
    """A smooth map, one sign per hemisphere (never crossing zero)."""
    from tribe_stream.surface.mesh import load_brain_mesh

    xyz = load_brain_mesh().vertices
    v = 1.6 + np.sin(xyz[:, 1] / 14.0) * np.cos(xyz[:, 2] / 18.0)
    v[:N_VERTICES_HEMI] *= left_sign
    v[N_VERTICES_HEMI:] *= right_sign
    return v.astype(np.float32)


class Viewer:
    """`tribe-stream view` as a child process, with its stdout collected."""

    def __init__(self, url: str, display: str, *extra: str):
        env = {**os.environ, "DISPLAY": display}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tribe_stream.cli", "view", url, "--size", "800x600", *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def wait_line(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None, "viewer exited:\n" + "\n".join(self.lines)
            assert time.monotonic() < deadline, f"no {text!r} in:\n" + "\n".join(self.lines)
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def wait_screen(display: str, check, timeout: float = 20.0, name: str = "") -> np.ndarray:
    """Screenshots until `check(img)` holds; saves the last one when TRIBE_STREAM_SHOTS is set."""
    deadline = time.monotonic() + timeout
    while True:
        img = grab(display)
        ok = img is not None and check(img)
        if ok or time.monotonic() > deadline:
            assert img is not None, f"{name}: the viewer's window is not on the screen"
            if SHOTS is not None and name:
                from PIL import Image

                SHOTS.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img.astype(np.uint8)).save(SHOTS / f"{name}.png")
            assert ok, f"{name}: screen never matched; panels: {quadrants(img)}"
            return img
        time.sleep(0.2)


def test_live_viewer_draws_the_cortex_and_follows_the_stream(display):
    from tribe_stream.clock import StreamClock
    from tribe_stream.publish import Publisher
    from tribe_stream.types import Prediction

    url = f"tcp://127.0.0.1:{free_port()}"
    clock = StreamClock()
    pub = Publisher(url, clock=clock)
    viewer = Viewer(url, display, "--transition", "0.2")
    try:
        viewer.wait_line("viewer: waiting")

        # Waiting: the cortex in sulcal grey only, no colours.
        def grey_cortex(img):
            q = quadrants(img)
            return all(p["cortex"] > 20000 and p["warm"] + p["cool"] < 50 for p in q.values())

        wait_screen(display, grey_cortex, timeout=30, name="1-waiting")

        # A heartbeat: the window knows the publisher is there (and is subscribed).
        deadline = time.monotonic() + 15
        while not any("viewer: connected" in x for x in viewer.lines):
            assert time.monotonic() < deadline, "\n".join(viewer.lines)
            pub.status({"frames_dropped": 0})
            time.sleep(0.2)

        def send(values: np.ndarray) -> None:
            # Stamped like a live stream: the newest complete stimulus second.
            k = max(0, int(clock.now()) - 1)
            pub.send(Prediction(k, values, (k, k + 1), k + 5, {}, {"frames_dropped": 3}))

        # Left hemisphere positive, right negative: warm on the left panels, cool on the right.
        send(lateral_map(+1, -1))
        viewer.wait_line("viewer: receiving")

        def left_warm(img):
            q = quadrants(img)
            return mostly(q["left lateral"], "warm") and mostly(q["right lateral"], "cool")

        first = wait_screen(display, left_warm, name="2-left-warm")
        # The heads-up line is drawn: bright text pixels in the top strip.
        assert (first[:34].min(-1) > 180).sum() > 300

        # New data, new colours: the signs flip.
        send(lateral_map(-1, +1))

        def right_warm(img):
            q = quadrants(img)
            return mostly(q["left lateral"], "cool") and mostly(q["right lateral"], "warm")

        second = wait_screen(display, right_warm, name="3-right-warm")
        assert np.abs(second[34:-72] - first[34:-72]).sum(-1).mean() > 20

        # Latest only: a burst faster than any frame rate ends on the newest map.
        maps = [lateral_map(+1, -1), lateral_map(-1, +1)]
        for k in range(2, 40):
            send(maps[k % 2])
        send(lateral_map(+1, +1))

        def all_warm(img):
            q = quadrants(img)
            return all(mostly(p, "warm") for p in q.values())

        wait_screen(display, all_warm, name="4-newest-after-burst")
    finally:
        rc = viewer.stop()
        pub.close()
    assert rc == 0, "\n".join(viewer.lines)
    summary = [x for x in viewer.lines if "frames in" in x]
    assert summary, "\n".join(viewer.lines)
    assert int(summary[0].split()[1]) > 30  # it kept drawing frames, not only on new data


def press(display: str, key: str) -> None:
    subprocess.run(
        ["xdotool", "search", "--name", "tribe-stream view", "windowfocus", "--sync", "key", key],
        env={**os.environ, "DISPLAY": display},
        check=True,
        timeout=10,
    )


@pytest.mark.skipif(shutil.which("xdotool") is None, reason="apt-get install xdotool")
def test_keys_switch_view_and_colormap(display):
    from tribe_stream.publish import Publisher
    from tribe_stream.types import Prediction

    url = f"tcp://127.0.0.1:{free_port()}"
    pub = Publisher(url)
    viewer = Viewer(url, display, "--transition", "0")
    try:
        viewer.wait_line("viewer: waiting")
        deadline = time.monotonic() + 15
        while not any("viewer: receiving" in x for x in viewer.lines):
            assert time.monotonic() < deadline, "\n".join(viewer.lines)
            pub.send(Prediction(0, lateral_map(+1, +1), (0, 1), 5))
            time.sleep(0.3)

        def both(img):
            return all(mostly(p, "warm") for p in quadrants(img).values())

        wait_screen(display, both, name="5-keys-both")
        press(display, "4")  # dorsal: one panel in the middle, nothing at the far left

        def dorsal(img):
            body = img[34:-72]
            side = (np.abs(body[:, 20:150] - BG).sum(-1) > 40) & (body[:, 20:150].max(-1) > 60)
            middle = (np.abs(body[:, 300:500] - BG).sum(-1) > 40) & (body[:, 300:500].max(-1) > 60)
            return side.sum() < 200 and middle.mean() > 0.4

        before = wait_screen(display, dorsal, name="6-keys-dorsal")
        press(display, "c")  # next colormap: coolwarm's positive end is red, not orange-yellow

        def recoloured(img):
            warm = lambda im: (im[..., 0] > im[..., 2] + 60) & (im[..., 0] > 120)  # noqa: E731
            g_before = before[34:-72][warm(before[34:-72])][:, 1].mean()
            mask = warm(img[34:-72])
            return mask.sum() > 2000 and img[34:-72][mask][:, 1].mean() < g_before - 40

        wait_screen(display, recoloured, name="7-keys-coolwarm")
        press(display, "q")
        assert viewer.proc.wait(15) == 0
    finally:
        viewer.stop()
        pub.close()


def test_demo_with_view_shows_a_live_cortex(display, tmp_path):
    """`tribe-stream demo --view`: the whole pipeline publishes, the viewer window draws it."""
    import subprocess
    import sys

    from PIL import ImageGrab

    env = dict(os.environ, DISPLAY=display)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tribe_stream.cli",
            "demo",
            "--seconds",
            "8",
            "--viewer",
            "--publish",
            f"tcp://127.0.0.1:{port}",
            "--linger",
            "10",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        for line in proc.stdout:  # wait until the stream runs
            lines.append(line)
            if line.startswith("second 2/"):
                break
        deadline = time.monotonic() + 30
        while True:  # the viewer shows the stream within a few frames (slower on a busy machine)
            img = np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB")).astype(int)
            r, b = img[..., 0], img[..., 2]
            coloured = ((r > b + 60) & (r > 120)) | ((b > r + 60) & (b > 120))
            if coloured.sum() > 2000 or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(0.3)
        if SHOTS is not None:
            from PIL import Image

            SHOTS.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.astype(np.uint8)).save(SHOTS / "demo-view.png")
        assert coloured.sum() > 2000, "the demo's predictions do not colour the cortex"
        lines += proc.stdout.readlines()
        assert proc.wait(timeout=60) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines)
    assert "UNTRAINED" in out and "done: 8 predictions" in out
