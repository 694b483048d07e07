"""Frame rate of the web viewer in a real browser while it receives a real stream.

A Publisher (this process) sends `--rate` predictions a second; `tribe-stream web` relays them;
headless Chromium (Debian's, driven by Playwright; WebGL through SwiftShader when there is no
GPU) shows the page for `--seconds`. Compared side by side on the same stream:

- ours: the cortex drawn once per prediction into an offscreen picture; frames in between only
  blend the old picture into the new one (and nothing is drawn when nothing changes);
- baseline (`?continuous=1`): the cortex drawn every frame.

Printed per mode: the page's frame rate (requestAnimationFrame callbacks a second: how smooth
the page is), cortex draws a second, predictions shown a second, and the browser's CPU seconds a
second (all its processes, from /proc); then the ratios ours / baseline.

    python tools/bench_web_fps.py [--seconds 10] [--rate 1] [--size 1280x800] [--view both]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]


def publish(pub, rate: float, stop: threading.Event) -> None:
    """Smoothly changing random maps, `rate` a second, until `stop`."""
    from tribe_stream.types import Prediction

    rng = np.random.default_rng(0)
    base = rng.standard_normal((8, 20484)).astype(np.float32)
    k = 0
    t0 = time.perf_counter()
    while not stop.is_set():
        values = base[k % 8] + 0.5 * np.sin(k / 3)
        pub.send(Prediction(k, values, (k, k + 1), k + 5, {}, {"dropped": 0}))
        pub.status({})
        k += 1
        stop.wait(max(0.0, t0 + k / rate - time.perf_counter()))


def cpu_seconds(marker: str) -> float:
    """User + system CPU seconds of every live process whose command line holds `marker`."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if marker.encode() not in cmd:
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total


SAMPLE = (
    "({frames: tribe.frameCount, draws: tribe.draws, shown: tribe.drawn, t: performance.now()})"
)


def measure(ctx, url: str, query: str, seconds: float, marker: str) -> dict[str, float]:
    page = ctx.new_page()
    page.goto(url + query)
    page.wait_for_function("window.tribe && tribe.drawn > 1", timeout=120_000)
    page.evaluate(
        "tribe.frameCount = 0; (function count() { tribe.frameCount++; "
        "requestAnimationFrame(count); })()"
    )
    time.sleep(2.0)  # settle
    a, cpu_a = page.evaluate(SAMPLE), cpu_seconds(marker)
    time.sleep(seconds)
    b, cpu_b = page.evaluate(SAMPLE), cpu_seconds(marker)
    renderer = page.evaluate(
        "(() => { const gl = document.createElement('canvas').getContext('webgl2');"
        " const d = gl.getExtension('WEBGL_debug_renderer_info');"
        " return d ? gl.getParameter(d.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER); })()"
    )
    page.close()
    dt = (b["t"] - a["t"]) / 1000
    return {
        "fps": (b["frames"] - a["frames"]) / dt,
        "draws": (b["draws"] - a["draws"]) / dt,
        "shown": (b["shown"] - a["shown"]) / dt,
        "cpu": (cpu_b - cpu_a) / dt,
        "renderer": renderer,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=1.0, help="predictions a second")
    ap.add_argument("--size", default="1280x800")
    ap.add_argument("--view", default="both")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from tribe_stream.clock import StreamClock
    from tribe_stream.publish import Publisher

    width, height = map(int, args.size.split("x"))
    stop = threading.Event()
    with Publisher("tcp://127.0.0.1:*", clock=StreamClock()) as pub:
        web = subprocess.Popen(
            [sys.executable, "-m", "tribe_stream.cli", "web", pub.url, "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            line = web.stdout.readline()
            url = re.search(r"web viewer on (\S+)", line).group(1)
            feeder = threading.Thread(target=publish, args=(pub, args.rate, stop), daemon=True)
            feeder.start()
            profile = tempfile.mkdtemp(prefix="bench-web-chromium-")
            with sync_playwright() as pw:
                ctx = pw.chromium.launch_persistent_context(
                    profile,
                    executable_path=CHROMIUM,
                    headless=True,
                    viewport={"width": width, "height": height},
                    args=FLAGS,
                )
                results = {}
                for mode, query in (("ours", ""), ("baseline", "?continuous=1")):
                    q = query + ("&" if query else "?") + f"view={args.view}"
                    results[mode] = measure(ctx, url, q, args.seconds, profile)
                ctx.close()
        finally:
            stop.set()
            web.terminate()
            web.wait(30)
    cpu = platform.processor() or platform.machine()
    try:
        cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()).group(1)
    except (OSError, AttributeError):
        pass
    print(f"device: {cpu}, {os.cpu_count()} cores; WebGL: {results['ours']['renderer']}")
    print(
        f"page {width}x{height}, view {args.view}, {args.rate:g} predictions/s, {args.seconds:g} s"
    )
    print(f"{'mode':10s} {'page fps':>9s} {'draws/s':>8s} {'shown/s':>8s} {'browser CPU s/s':>16s}")
    for mode, r in results.items():
        print(f"{mode:10s} {r['fps']:9.1f} {r['draws']:8.1f} {r['shown']:8.2f} {r['cpu']:16.2f}")
    ours, base = results["ours"], results["baseline"]
    print(
        f"ratio ours/baseline: page fps {ours['fps'] / max(base['fps'], 1e-9):.1f}x, "
        f"browser CPU {ours['cpu'] / max(base['cpu'], 1e-9):.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
