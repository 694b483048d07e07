"""Ray's overhead: the same clips through `predict_files` in this process and through a local Ray
cluster with one worker (one GPU, or this machine's CPUs), in one run, with the ratio.

Both paths get a short warm-up clip first (compiling and capturing happen there), then `--clips`
clips of `--seconds` each, no feature cache, no speech recognition. The in-process path runs
again after Ray, and the ratio is taken against that second run: the first one fills the
on-disk compile caches that every later process reuses, so it is slower for a reason that is
not Ray's. The whole batch is compared with the first run: the second reuses the models this
process already loaded. Three times per path:
starting the cluster (Ray only), the whole batch (models loaded, warm-up, clips), and the clips
alone (from the warm-up's end to the last output). The outputs of both paths are compared byte
for byte. `--checkpoint DIR` takes a full-size random-weight folder from
`tools/make_random_model.py`; `demo` the small untrained models.

    python tools/bench_cluster.py --checkpoint DIR --clips 10 --seconds 30 [--engine compiled]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class Clock:
    """`on_progress` for `predict_files`: when the first job (the warm-up) finished."""

    def __init__(self):
        self.warm_done: float | None = None

    def __call__(self, progress) -> None:
        if self.warm_done is None and progress.done >= 1:
            self.warm_done = time.perf_counter()


def timed_batch(inputs, out: Path, cluster, **kw) -> tuple[float, float, object]:
    """(whole batch s, clips after the warm-up s, report)."""
    from tribe_stream.cluster import predict_files

    clock = Clock()
    t0 = time.perf_counter()
    report = predict_files(inputs, out, cluster=cluster, on_progress=clock, **kw)
    t1 = time.perf_counter()
    if report.failed:
        raise SystemExit(f"failed: {[(r.job.media, r.error) for r in report.failed]}")
    return t1 - t0, t1 - (clock.warm_done or t0), report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="demo")
    ap.add_argument("--clips", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=30.0, help="length of each clip")
    ap.add_argument("--size", default="320x240", help="clip size WIDTHxHEIGHT")
    ap.add_argument("--engine", default=None, help="torch, compiled (default: compiled on a GPU)")
    args = ap.parse_args()

    from tribe_stream.cluster.ray_pool import connect, import_ray
    from tribe_stream.sources.clip import make_clip

    device = "cuda" if torch.cuda.is_available() else "cpu"
    engine = args.engine or ("compiled" if device == "cuda" else "torch")
    w, h = (int(v) for v in args.size.split("x"))
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    cpus = os.cpu_count() or 1
    print(f"device: {name}, {cpus} CPUs, torch {torch.__version__}; checkpoint {args.checkpoint}")
    options = {"checkpoint": args.checkpoint, "engine": engine, "use_cache": False, "asr": False}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "clips"
        src.mkdir()
        t0 = time.perf_counter()
        inputs = [make_clip(src / "0-warm.mp4", 4.0, width=w, height=h)]
        for i in range(args.clips):  # the lengths differ a little: no two clips are the same
            s = args.seconds + 0.5 * i
            inputs.append(make_clip(src / f"clip{i:02d}.mp4", s, width=w, height=h, speech=True))
        media_s = sum(args.seconds + 0.5 * i for i in range(args.clips))
        print(f"clips: {args.clips} x ~{args.seconds:.0f} s, {w}x{h}, made in "
              f"{time.perf_counter() - t0:.0f} s")  # fmt: skip

        ours = Path(tmp) / "in-process"
        whole_a, clips_a, _ = timed_batch(inputs, ours, None, **options)
        print(f"  in-process: batch {whole_a:.1f} s, clips {clips_a:.1f} s")
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()

        ray = import_ray()
        t0 = time.perf_counter()
        connect("local")
        start = time.perf_counter() - t0
        try:
            theirs = Path(tmp) / "ray"
            whole_b, clips_b, report = timed_batch(
                inputs, theirs, "local", workers=1, cpus_per_worker=cpus, **options
            )
        finally:
            ray.shutdown()
        busy = report.workers[0].busy_s if report.workers else float("nan")
        print(f"  ray: cluster start {start:.1f} s, batch {whole_b:.1f} s, clips {clips_b:.1f} s "
              f"(the worker's own time on all files {busy:.1f} s)")  # fmt: skip

        again = Path(tmp) / "in-process-again"
        whole_c, clips_c, _ = timed_batch(inputs, again, None, **options)
        print(f"  in-process again: batch {whole_c:.1f} s, clips {clips_c:.1f} s")

        same, worst = 0, 0.0
        files = sorted(p.name for p in ours.iterdir() if not p.name.startswith("."))
        for f in files:
            a, b = (ours / f).read_bytes(), (theirs / f).read_bytes()
            same += a == b
            if f.endswith(".npy") and a != b:
                worst = max(worst, float(np.abs(np.load(ours / f) - np.load(theirs / f)).max()))
    print(f"outputs: {same} of {len(files)} files byte-identical (max |difference| {worst:.1e})")
    print("\n| path | cluster start s | batch s (models, warm-up, clips) | clips s | "
          "media s per wall s (clips) | ratio (clips) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    rows = [("in-process, first (fills the compile caches)", None, whole_a, clips_a),
            ("Ray, one worker", start, whole_b, clips_b),
            ("in-process, again", None, whole_c, clips_c)]  # fmt: skip
    for label, s, whole, clips in rows:
        print(f"| {label} | {'-' if s is None else f'{s:.1f}'} | {whole:.1f} | {clips:.1f} | "
              f"{media_s / clips:.1f} | {clips / clips_c:.2f}x |")  # fmt: skip
    print(f"batch ratio (Ray with its start-up / in-process first; both load the models, the "
          f"second in-process run reuses them): {(start + whole_b) / whole_a:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    from tools.cli_guard import run_tool

    sys.exit(run_tool(main, __file__))
