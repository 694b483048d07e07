"""What a live stream's media costs the server loop's thread, ours against the way before, side
by side (no model is loaded):

- frames: resized, cropped and sent to the model's device on the loop's thread when their bins
  close (`LiveVideo.feed` alone, before) against by the frame workers as they arrive
  (`LiveVideo.prepare`, `feed` taking the result): the full-size V-JEPA2 preprocessing
  (shortest edge 292, centre crop 256), random frames of each size at `--fps`, chunks of a
  tenth of a second, fed half a second after arrival;
- sound: each chunk appended to the 32 s trailing context by a copy of the whole context (before)
  against in place in `LiveAudio`'s store, for 20 ms (a microphone) and 100 ms (a file) chunks.

    python tools/bench_intake.py [--streams 8] [--fps 30] [--seconds 5] [--device cpu]

Prints the loop thread's milliseconds per stream-second both ways and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tribe_stream import AUDIO_RATE  # noqa: E402
from tribe_stream.extractors.audio import LiveAudio  # noqa: E402
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


def sound_seconds(args, chunk_s: float, in_place: bool) -> float:
    """The loop thread's time appending `args.streams` streams' sound in `chunk_s` chunks."""
    n = int(round(chunk_s * AUDIO_RATE))
    x = np.random.default_rng(1).standard_normal(n).astype(np.float32)
    keep = int(round(32.0 * AUDIO_RATE))
    lives = [LiveAudio(SimpleNamespace(n_frames=lambda k: k), 30.0) for _ in range(args.streams)]
    bufs = [np.zeros(0, np.float32) for _ in range(args.streams)]
    t0 = time.perf_counter()
    for k in range(int(args.seconds / chunk_s)):
        for i in range(args.streams):
            if in_place:
                lives[i].feed(x, k * chunk_s)
            else:  # before: the whole context copied, then its oldest part cut
                bufs[i] = np.concatenate([bufs[i], x])
                if len(bufs[i]) > keep:
                    bufs[i] = bufs[i][len(bufs[i]) - keep :]
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.streams < 1 or args.fps < 1 or not args.seconds > 0:
        ap.error("--streams and --fps: 1 or more; --seconds: above 0")
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
    print()
    print(
        "| sound chunks | loop thread, context copied per chunk (ms per stream-second) | appended in place | ratio |"
    )
    print("|---|---:|---:|---:|")
    for chunk_s in (0.02, 0.1):
        sound_seconds(SimpleNamespace(**{**vars(args), "seconds": 40.0}), chunk_s, True)  # warm
        long = SimpleNamespace(**{**vars(args), "seconds": max(args.seconds, 40.0)})
        before = sound_seconds(long, chunk_s, False) / (args.streams * long.seconds) * 1e3
        ours = sound_seconds(long, chunk_s, True) / (args.streams * long.seconds) * 1e3
        print(
            f"| {chunk_s * 1e3:.0f} ms | {before:.2f} | {ours:.2f} | {before / max(ours, 1e-9):.1f}x |"
        )
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("bench_intake.py: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
