"""Scaling over the GPUs of one host: the same clips through `predict_files` on a local Ray
cluster with 1 worker and with N (one per GPU), then N again with one worker SIGKILLed mid-run;
media seconds per wall second, the scaling efficiency, the time the kill cost and whether every
output is still there and equal. `--serve` instead runs `tribe-stream bench --max-streams` in one
process per GPU at once and adds up their real-time streams.

Each run starts with one short warm-up clip per worker (each loads its models and compiles on
it); "steady" figures count from the moment every worker finished its warm-up clip. The
outputs of every run are compared byte for byte with the 1-worker run's.

    python tools/make_random_model.py /tmp/full
    python tools/bench_scaling.py --checkpoint /tmp/full --minutes 40 --workers 1,2 [--kill]
    python tools/bench_scaling.py --serve 2 -- --start-streams 6 --stagger --video-fp8
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class Watch:
    """`on_progress`: when all warm-up clips were done, and (optionally) one SIGKILL of the
    worker holding `victim` once it is in flight."""

    def __init__(self, warm: int, victim: str | None = None, delay_s: float = 2.0):
        self.warm, self.victim, self.delay_s = warm, victim, delay_s
        self.warm_done: float | None = None
        self.killed: int | None = None

    def __call__(self, progress) -> None:
        if self.warm_done is None and progress.done >= self.warm:
            self.warm_done = time.perf_counter()
        if self.victim is None or self.killed is not None:
            return
        for media, pid in progress.running.values():
            if media == self.victim and pid:
                self.killed = pid  # mid-file: a few seconds into it
                threading.Timer(self.delay_s, _kill, (pid,)).start()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run(inputs, out: Path, workers: int, watch: Watch, **options) -> dict:
    from tribe_stream.cluster import predict_files

    t0 = time.perf_counter()
    report = predict_files(
        inputs, out, cluster="local", workers=workers, on_progress=watch, **options
    )
    wall = time.perf_counter() - t0
    steady = wall - ((watch.warm_done or t0) - t0)
    return {
        "workers": workers,
        "wall_s": wall,
        "steady_s": steady,
        "failed": [(r.job.media, r.error) for r in report.failed],
        "retried": sum(w.retried for w in report.workers),
        "killed_pid": watch.killed,
    }


def same_outputs(a: Path, b: Path) -> tuple[int, int]:
    def clips(folder: Path) -> list[str]:  # the warm-up clips' outputs differ in number
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith((".", "0-warm")))

    names, others = clips(a), clips(b)
    same = sum((a / n).read_bytes() == (b / n).read_bytes() for n in names if n in others)
    return same, max(len(names), len(others))


def bench_predict(args) -> int:
    import torch

    from tribe_stream.cluster.ray_pool import connect, import_ray
    from tribe_stream.sources.clip import make_clip

    gpus = torch.cuda.device_count()
    counts = args.workers or [1, max(1, gpus)]
    w, h = (int(v) for v in args.size.split("x"))
    n_clips = max(1, round(args.minutes * 60 / args.clip_seconds))
    print(f"device: {gpus} GPU(s) {torch.cuda.get_device_name() if gpus else 'CPU'}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}; checkpoint {args.checkpoint}")  # fmt: skip
    options = {"checkpoint": args.checkpoint, "use_cache": False, "asr": False}
    if args.engine:
        options["engine"] = args.engine
    ray = import_ray()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "clips"
        src.mkdir()
        t0 = time.perf_counter()
        warm = [
            make_clip(src / f"0-warm{i}.mp4", 4.0, width=w, height=h) for i in range(max(counts))
        ]
        clips = [
            make_clip(src / f"clip{i:03d}.mp4", args.clip_seconds + 0.5 * (i % 4), width=w,
                      height=h, speech=True)
            for i in range(n_clips)
        ]  # fmt: skip
        media_s = sum(args.clip_seconds + 0.5 * (i % 4) for i in range(n_clips))
        print(f"clips: {n_clips} x ~{args.clip_seconds:.0f} s ({media_s / 60:.1f} min), "
              f"{w}x{h}, made in {time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
        connect("local")
        rows = []
        try:
            for n in counts:
                out = Path(tmp) / f"out-{n}"
                r = run([*warm[:n], *clips], out, n, Watch(n), **options)
                r["out"] = out
                rows.append(r)
                print(f"  {n} worker(s): wall {r['wall_s']:.1f} s, steady {r['steady_s']:.1f} s",
                      flush=True)  # fmt: skip
            if args.kill and max(counts) > 1:
                n = max(counts)
                out = Path(tmp) / f"out-{n}-kill"
                victim = str(clips[len(clips) // 2])
                r = run([*warm[:n], *clips], out, n, Watch(n, victim, args.kill_after), **options)
                r["out"], r["kill"] = out, True
                rows.append(r)
                print(f"  {n} workers, one killed: wall {r['wall_s']:.1f} s, retried "
                      f"{r['retried']}", flush=True)  # fmt: skip
        finally:
            ray.shutdown()
        base = rows[0]
        print("\n| run | wall s | steady s | media s per wall s (steady) | speed-up | "
              "efficiency | outputs equal to 1 worker's | failed |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|---|---:|")
        for r in rows:
            speed = base["steady_s"] / r["steady_s"]
            same, total = same_outputs(base["out"], r["out"])
            label = f"{r['workers']} worker(s)" + (
                ", one SIGKILLed mid-file" if r.get("kill") else ""
            )
            print(f"| {label} | {r['wall_s']:.1f} | {r['steady_s']:.1f} | "
                  f"{media_s / r['steady_s']:.1f} | {speed:.2f}x | "
                  f"{speed / (r['workers'] / base['workers']):.0%} | {same} of {total} | "
                  f"{len(r['failed'])} |")  # fmt: skip
        for r in rows:
            for media, error in r["failed"]:
                print(f"failed ({r['workers']} worker(s)): {Path(media).name}: {error}")
        kills = [r for r in rows if r.get("kill")]
        if kills:
            plain = next(
                r for r in rows if r["workers"] == kills[0]["workers"] and not r.get("kill")
            )
            print(f"the kill cost {kills[0]['wall_s'] - plain['wall_s']:.1f} s of wall time "
                  f"(worker pid {kills[0]['killed_pid']}, files retried {kills[0]['retried']})")  # fmt: skip
    return 1 if any(r["failed"] for r in rows) else 0


def bench_serve(args) -> int:
    """One `tribe-stream bench` process per GPU, all at once; their real-time streams added."""
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.serve):
            out = Path(tmp) / f"gpu{i}.json"
            cmd = [sys.executable, "-m", "tribe_stream.cli", "bench", "--max-streams",
                   "--out", str(out), "--plot", str(Path(tmp) / f"gpu{i}.png"), *args.bench_args]  # fmt: skip
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(i)}
            log = open(Path(tmp) / f"gpu{i}.log", "w")  # noqa: SIM115 - closed below
            procs.append((i, out, log, subprocess.Popen(cmd, env=env, stdout=log, stderr=log)))
        total = 0
        print("| GPU | real-time streams | one stream p50 / p99 ms | exit |")
        print("|---|---:|---:|---:|")
        for i, out, log, proc in procs:
            rc = proc.wait()
            log.close()
            if rc != 0 or not out.is_file():
                tail = (Path(tmp) / f"gpu{i}.log").read_text()[-600:]
                print(f"| {i} | - | - | {rc} |\n{tail}")
                continue
            report = json.loads(out.read_text())
            one = report["one_stream"]
            total += report.get("max_streams", 0)
            print(f"| {i} | {report.get('max_streams', 0)} | {one['p50_ms']:.1f} / "
                  f"{one['p99_ms']:.1f} | 0 |")  # fmt: skip
        print(f"total real-time streams on {args.serve} GPU(s), one process each: {total}")
    return 0


def _counts(text: str) -> list[int]:
    try:
        counts = [int(n) for n in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: worker counts like 1,2,4")
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="demo")
    ap.add_argument("--minutes", type=float, default=40.0, help="media in all")
    ap.add_argument("--clip-seconds", type=float, default=120.0)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--engine", default=None)
    ap.add_argument("--workers", default=None, type=_counts,
                    help="worker counts, e.g. 1,2,4 (default 1,GPUs)")  # fmt: skip
    ap.add_argument("--kill", action="store_true", help="also the largest count with a SIGKILL")
    ap.add_argument("--kill-after", type=float, default=2.0, help="s into the victim file")
    ap.add_argument("--serve", type=int, default=0, metavar="N", help="bench serve on N GPUs")
    ap.add_argument("bench_args", nargs="*", help="after --: options for tribe-stream bench")
    args = ap.parse_args()
    if not args.serve:
        from tribe_stream.resolve import checkpoint_path

        if args.checkpoint != "demo":
            checkpoint_path(args.checkpoint)  # a bad one: one line before any clip is made
    return bench_serve(args) if args.serve else bench_predict(args)


if __name__ == "__main__":
    from tools.cli_guard import run_tool

    sys.exit(run_tool(main, __file__))
