"""Frames per second of the live viewer while it receives a real stream.

A publisher in its own process sends predictions at each rate (1 Hz, 10 Hz); the viewer (this
process, real ZeroMQ subscriber, real GL window: Xvfb + Mesa llvmpipe if there is no display)
runs for a fixed time. Compared side by side:

- ours: the cortex drawn once per prediction into a texture, frames blend cached pictures;
- baseline: the cortex drawn every frame (what a plain vispy scene does).

    python tools/bench_viewer.py [--seconds 10] [--rates 1 10] [--size 1280x800] [--view both]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import numpy as np


def publish(url: str, rate: float, seconds: float, ready) -> None:
    """Send `rate` predictions a second for `seconds`, timed like a live stream."""
    from tribe_stream.clock import StreamClock
    from tribe_stream.publish import Publisher
    from tribe_stream.types import Prediction

    rng = np.random.default_rng(0)
    base = rng.standard_normal((8, 20484)).astype(np.float32)
    clock = StreamClock()
    with Publisher(url, clock=clock) as pub:
        ready.set()
        pub.wait_for_subscribers(1, timeout=30)
        t0 = time.perf_counter()
        k = 0
        while time.perf_counter() - t0 < seconds:
            values = base[k % 8] + 0.5 * np.sin(k / 3)
            second = int(clock.now())
            pub.send(
                Prediction(second, values, (second, second + 1), second + 5, {}, {"dropped": 0})
            )
            if k % max(1, int(rate)) == 0:
                pub.status({})
            k += 1
            time.sleep(max(0.0, t0 + k / rate - time.perf_counter()))


def measure(url: str, rate: float, seconds: float, cached: bool, max_fps: float, size, view):
    from tribe_stream.viewer.live import LiveViewer, ViewerOptions

    ready = mp.Event()
    proc = mp.Process(target=publish, args=(url, rate, seconds + 6, ready), daemon=True)
    proc.start()
    ready.wait(30)
    viewer = LiveViewer(
        ViewerOptions(
            url=url,
            views=(view,),
            size=size,
            max_fps=max_fps,
            duration_s=seconds + 2,
            cached=cached,
        )
    )
    cpu0 = time.process_time()
    stats = viewer.run()
    cpu = time.process_time() - cpu0
    proc.terminate()
    proc.join(5)
    # Skip the first 2 s of frames (start-up, first predictions), then count while receiving.
    first = stats.frame_times[0] + 2.0
    t = np.array([x for x in stats.frame_times if x >= first])
    fps = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 2 else 0.0
    dt = np.diff(t) * 1000 if len(t) > 2 else np.array([0.0])
    return {
        "fps": fps,
        "p50_ms": float(np.percentile(dt, 50)),
        "p95_ms": float(np.percentile(dt, 95)),
        "max_ms": float(dt.max()),
        "received": stats.received,
        "show_ms": 1000 * float(np.median(stats.display_latency)) if stats.display_latency else 0,
        "cpu_s": cpu,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rates", type=float, nargs="+", default=[1.0, 10.0])
    ap.add_argument("--size", default="1280x800")
    ap.add_argument("--view", default="both")
    args = ap.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))

    from contextlib import nullcontext

    from tribe_stream.viewer.xvfb import virtual_display

    display = nullcontext() if os.environ.get("DISPLAY") else virtual_display(size)
    load = os.getloadavg()[0]
    with display:
        from tribe_stream.viewer.backend import use_window_backend

        use_window_backend()
        import vispy.gloo.gl as gl
        from vispy import app

        c = app.Canvas(show=False)
        renderer = gl.glGetParameter(gl.GL_RENDERER)
        c.close()
        print(
            f"GL: {renderer}; {os.cpu_count()} CPUs (load average {load:.2f} at start); "
            f"window {args.size}, view {args.view}, {args.seconds:.0f} s per run"
        )
        print(
            f"{'rate':>6} {'mode':<22} {'fps':>6} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}"
            f" {'shown':>6} {'arrive->frame ms':>17} {'cpu s':>6}"
        )
        port = 5690
        for rate in args.rates:
            results = {}
            for name, cached, cap in (
                ("ours (cap 60)", True, 60.0),
                ("ours (uncapped)", True, 0.0),
                ("baseline (uncapped)", False, 0.0),
            ):
                port += 1
                url = f"tcp://127.0.0.1:{port}"
                r = measure(url, rate, args.seconds, cached, cap, size, args.view)
                results[name] = r
                print(
                    f"{rate:>4.0f}Hz {name:<22} {r['fps']:>6.1f} {r['p50_ms']:>7.1f}"
                    f" {r['p95_ms']:>7.1f} {r['max_ms']:>7.1f} {r['received']:>6}"
                    f" {r['show_ms']:>17.1f} {r['cpu_s']:>6.1f}",
                    flush=True,
                )
            base = results["baseline (uncapped)"]["fps"]
            ours = results["ours (uncapped)"]["fps"]
            print(
                f"{rate:>4.0f}Hz ratio ours/baseline (uncapped fps): {ours / max(base, 1e-9):.2f}x"
            )
        import glfw

        glfw.terminate()  # close the X connection before the virtual display goes away


if __name__ == "__main__":
    main()
