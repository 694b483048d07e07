"""What preparing a live stream's frames costs the server loop's thread: resized, cropped and sent
to the model's device on the loop's thread (`LiveVideo.feed` alone, before) against in the frame
workers (`LiveVideo.prepare` on arrival, `feed` taking the result when the bins close).

    python tools/bench_frame_prep.py [--streams 8] [--fps 30] [--seconds 5] [--device cpu]

The full-size V-JEPA2 preprocessing (shortest edge 292, centre crop 256), random frames of each
size at `--fps` for `--streams` streams, chunks of a tenth of a second as a camera gives them,
fed half a second after arrival (when their bins close). Prints, per frame size, the loop
thread's milliseconds per stream-second both ways and the ratio, and how long the workers took
for each second of all the streams (under 1 s: they keep up). No model is loaded.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tribe_stream.extractors.video import LiveVideo, VideoPreprocess  # noqa: E402

SIZES = [(240, 320), (480, 640), (720, 1280), (1080, 1920)]


def loop_seconds(ex, frames: np.ndarray, args, workers: bool) -> float:
    """The loop thread's time in `prepare`/`feed` for `args.streams` streams of `frames`."""
    chunk = max(1, args.fps // 10)
    lives = [LiveVideo(ex) for _ in range(args.streams)]
    queued: list[tuple[LiveVideo, np.ndarray, np.ndarray, object]] = []
    spent, t = 0.0, 0.0
    for _ in range(int(args.seconds * args.fps) // chunk):
        times = t + np.arange(chunk) / args.fps
        t += chunk / args.fps
        for live in lives:
            t0 = time.perf_counter()
            queued.append((live, frames, times, live.prepare(frames) if workers else None))
            spent += time.perf_counter() - t0
        while queued and queued[0][2][0] <= t - 0.5:  # the bins closed: fed
            live, f, ts, ready = queued.pop(0)
            if ready is not None:
                ready.exception()  # arrived half a second ago: waited here only if late
            t0 = time.perf_counter()
            live.feed(f, ts, ready)
            spent += time.perf_counter() - t0
    return spent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    ex = SimpleNamespace(
        prep=VideoPreprocess(),
        device=args.device,
        settings=SimpleNamespace(clip_seconds=64 / 30),
    )
    rng = np.random.default_rng(0)
    stream_seconds = args.streams * args.seconds
    print(f"{args.streams} streams at {args.fps} fps, {args.seconds} s each, on {args.device}:")
    print(
        "| frame | loop thread, feed alone (ms per stream-second) | with the frame workers | "
        "ratio | the workers' wall time per second of all streams |"
    )
    print("|---|---:|---:|---:|---:|")
    for h, w in SIZES:
        frames = rng.integers(0, 256, (max(1, args.fps // 10), h, w, 3), dtype=np.uint8)
        loop_seconds(ex, frames, SimpleNamespace(**{**vars(args), "seconds": 0.6}), True)  # warm
        alone = loop_seconds(ex, frames, args, workers=False) / stream_seconds * 1e3
        t0 = time.perf_counter()
        pooled = loop_seconds(ex, frames, args, workers=True) / stream_seconds * 1e3
        wall = (time.perf_counter() - t0) / args.seconds  # < 1: they keep up with the streams
        print(
            f"| {w}x{h} | {alone:.1f} | {pooled:.1f} | {alone / max(pooled, 1e-9):.1f}x "
            f"| {wall:.2f} s |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
