"""Long runs, measured: a server with streams arriving and leaving at random, or one command's
memory over time.

    python tools/soak.py serve --minutes 30 [--checkpoint demo] [--min-streams 2]
        [--max-streams 4] [--seed 0] [--clip FILE] [--out soak.json] [--arena-max N]
        [--mmap-threshold-kb KB] [--tracemalloc MIN1,MIN2] [--slope-from 4]
        [serve's --engine, --dtype, --video-fp8[-attention], --video-batch N, --video-overlap,
        --video-clips 1, --lag S]
    python tools/soak.py watch [--every 60] -- tribe-stream run --file clip.mp4 --seconds 1200

`serve`: one `Server` (the public `Stream` with `Stream.add`/`Stream.end`) running for
`--minutes`, streams (file replays in real time, seeded arrivals and lifetimes) kept between
`--min-streams` and `--max-streams`; each minute: host RSS (and GPU memory allocated when there
is a GPU), streams started and ended and callers told busy, threads and open file descriptors,
predictions received by a subscriber and their latency percentiles (end of the data window ->
received, `stream/latency.py`), bins and seconds dropped, seconds of sound the speech
recogniser dropped, errors, the loop's busy share of the minute (its stage times) and the
compiles or CUDA-graph captures after the warm-up so far, the heap the server handed back so
far (`trim_heap`), and where the
C heap is (`stream/heap.heap_stats`: glibc's totals, resident memory by main heap, arena heaps,
other anonymous maps, files). A table at the end (markdown, for docs/BENCHMARKS.md), the RSS
and heap slopes from `--slope-from` (least squares), and the rows as JSON. `--arena-max` and
`--mmap-threshold-kb` tune glibc's malloc first (`heap.limit_arenas`, `heap.fix_mmap_threshold`);
`--tracemalloc 5,12` diffs the Python heap between those minutes.
Without speech-recognition weights (a lent GPU has none) each stream is fed the bench's
built-in words at their times, so the text model runs in every stream all the same.

`watch`: runs the command and prints its resident memory (VmRSS) every `--every` seconds.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tribe_stream.stream.heap import (  # noqa: E402
    fix_mmap_threshold,
    heap_stats,
    limit_arenas,
)
from tribe_stream.stream.serve import open_fds, rss_mb  # noqa: E402  (the package's own probes)


def watch(args) -> int:
    if not args.cmd:
        raise SystemExit("watch: give the command after --")
    cmd = args.cmd[1:] if args.cmd[0] == "--" else args.cmd
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd)
    rows = []
    print(f"watching pid {proc.pid}: {' '.join(cmd)}", flush=True)
    while proc.poll() is None:
        time.sleep(min(args.every, 1.0))
        t = time.monotonic() - t0
        if not rows or t - rows[-1][0] >= args.every:
            rows.append((t, rss_mb(proc.pid)))
            print(f"watch: {t / 60:6.1f} min  RSS {rows[-1][1]:7.0f} MB", flush=True)
    print("| minute | RSS MB |\n|---|---|")
    for t, r in rows:
        print(f"| {t / 60:.1f} | {r:.0f} |")
    return proc.returncode


COUNTED = ("dropped_bins", "dropped_seconds")
STAGES = ("intake", "text", "video", "audio", "engine", "head")  # `Server` seconds by stage
FAULTS = ("extractor_errors", "engine_errors", "sink_errors", "asr_errors", "stream_failed")


class Listener:
    """A real subscriber: each prediction's end-to-end latency (data window end -> received,
    `stream/latency.py`), kept for the minute it arrived in."""

    def __init__(self, url: str):
        from tribe_stream.client import Subscriber

        self.sub = Subscriber(url)
        self.delays: list[float] = []
        self.received = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="soak-listener", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from tribe_stream.stream.latency import END_TO_END, stage_delays

        while not self._stop.is_set():
            msg = self.sub.recv(timeout=0.25)
            if msg is None or msg.header.get("t0_wall") is None:
                continue
            d = stage_delays(msg.header, time.time() - msg.header["t0_wall"]).get(END_TO_END)
            with self._lock:
                self.received += 1
                if d is not None:
                    self.delays.append(d)

    def take(self) -> tuple[int, list[float]]:
        with self._lock:
            n, d = self.received, self.delays
            self.received, self.delays = 0, []
        return n, d

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sub.close()


def totals(server, seen: dict[str, dict]) -> tuple[float, float, float]:
    """(bins and seconds dropped, faults, seconds of sound the speech recogniser dropped) summed
    over every stream so far (`seen` keeps the ended ones')."""
    for _ in range(5):
        try:
            seen.update(server.all_counters())
            break
        except RuntimeError:  # a counter dict changed under us: again
            time.sleep(0.01)
    drops = sum(c.get(k, 0) for c in seen.values() for k in COUNTED)
    asr = sum(c.get("asr_dropped_s", 0) for c in seen.values())
    return drops, sum(c.get(k, 0) for c in seen.values() for k in FAULTS), asr


def gpu_mb() -> float | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.memory_allocated() / 2**20 if torch.cuda.is_available() else None


def serve(args) -> int:
    import socket
    import tempfile

    import numpy as np

    from tribe_stream import Stream
    from tribe_stream.extractors.asr import asr_available
    from tribe_stream.options import StreamOptions, from_args
    from tribe_stream.sources.clip import make_clip
    from tribe_stream.stream.latency import quantiles
    from tribe_stream.stream.producer import Media
    from tribe_stream.stream.serve import ServerBusy

    if args.arena_max:
        print(f"soak: glibc arenas capped at {limit_arenas(args.arena_max)}", flush=True)
    if args.mmap_threshold_kb:
        fixed = fix_mmap_threshold(args.mmap_threshold_kb << 10)
        print(f"soak: glibc mmap threshold fixed at {fixed} bytes", flush=True)
    traced: dict[int, object] = {}
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(8)
    if args.clip:
        Media(file=args.clip).validate()  # a missing or unreadable clip: said before models load
    rng = random.Random(args.seed)
    tmp = tempfile.TemporaryDirectory(prefix="tribe-soak-")
    clip = args.clip or str(make_clip(Path(tmp.name) / "soak.mp4", args.clip_seconds, speech=True))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    # the product's own model and live options (--video-fp8, --video-clips 1, ...) as given
    options = from_args(StreamOptions, args, text=not args.no_text)
    # serving caps glibc's arenas (`heap.limit_arenas`): before the models load, whose threads
    # would otherwise have made their arenas already (a lent H100 counted 132 heap-like maps; CUDA may
    # make some of them)
    stream, words = Stream([], options).publish(url).serve(args.max_streams), None
    if not args.no_text and asr_available() is not None:
        # no recogniser weights (a lent GPU has none): the bench's built-in words, fed at their
        # times, so the text model still runs in every stream
        from tribe_stream import bench

        o = from_args(bench.BenchOptions, options, seconds=args.clip_seconds).validate()
        built = bench.build_models(o)
        built.extractors.asr = None
        words, how = bench.bench_words(o, args.clip_seconds, False)
        stream.use_models(built.models, built.extractors)
        print(f"soak: text: {how}", flush=True)
    session = stream.open().__enter__()
    made = [0]
    runner = threading.Thread(
        target=lambda: [made.__setitem__(0, made[0] + 1) for _ in session], name="soak-server"
    )
    runner.start()
    while not stream.server.running:
        time.sleep(0.01)
    listener = Listener(url)
    server, seen, rows = stream.server, {}, []
    ends: dict[str, float] = {}  # stream id -> when it is to end
    started = ended = busy = 0
    t0 = time.monotonic()
    next_arrival, minute_end = t0, t0 + 60
    base, busy_base = (0.0, 0.0, 0.0), 0.0
    interrupted = False
    print(f"soak: {args.minutes:g} min, streams {args.min_streams}-{args.max_streams}, seed "
          f"{args.seed}, clip {clip}; {'; '.join(stream.notes)}", flush=True)  # fmt: skip
    try:
        while time.monotonic() - t0 < args.minutes * 60 and runner.is_alive():
            now = time.monotonic()
            live = set(server.ids())
            for sid in [s for s in ends if s not in live]:
                ends.pop(sid)
                ended += 1  # its clip ended
            for sid in [s for s, t in ends.items() if t <= now]:
                server.end(sid)
                ends.pop(sid)
                ended += 1
            if now >= next_arrival or len(ends) < args.min_streams:
                try:
                    sid = stream.add(Media(file=clip, words=words))
                    ends[sid] = now + rng.uniform(args.life_min, args.life_max)
                    started += 1
                except ServerBusy:
                    busy += 1
                next_arrival = now + rng.expovariate(1.0 / args.arrive_s)
            if now >= minute_end:
                minute_end += 60
                gc.collect()
                n, delays = listener.take()
                now_totals = totals(server, seen)
                drops, faults, asr = (a - b for a, b in zip(now_totals, base, strict=True))
                q = quantiles(delays, (50, 95, 99)) if delays else {}
                n_fds, socks = open_fds()
                c = server.counters
                busy_s = sum(c[f"{k}_s"] for k in STAGES)
                row = {
                    "minute": len(rows) + 1, "streams": len(server.ids()), "started": started,
                    "ended": ended, "busy": busy, "rss_mb": round(rss_mb(), 1),
                    "gpu_mb": gpu_mb(), "threads": threading.active_count(), "fds": n_fds,
                    "sockets": socks, "received": n,
                    **{k: round(v, 1) for k, v in q.items()},
                    "drops": drops, "asr_dropped_s": round(asr, 1), "errors": faults,
                    "trimmed_mb": round(server.counters["heap_trimmed_mb"], 1),
                    # the loop's busy share of the minute, and compiles or CUDA-graph captures
                    # after the warm-up (a new stream's shape the warm-up missed) so far
                    "loop_busy_pct": round(100 * (busy_s - busy_base) / 60.0),
                    "compiles": c["compiles_after_warmup"] + c["captures_after_warmup"],
                    **heap_stats(),
                }  # fmt: skip
                if len(rows) + 1 in args.tracemalloc:
                    traced[len(rows) + 1] = tracemalloc.take_snapshot()
                base, busy_base = now_totals, busy_s
                started = ended = busy = 0
                rows.append(row)
                print("soak: " + json.dumps(row), flush=True)
            time.sleep(0.05)
    except KeyboardInterrupt:  # the rows so far are still worth a table
        interrupted = True
        print(f"soak: interrupted after {len(rows)} full minute(s)", flush=True)
    finally:
        stream.stop()
        runner.join(120)
        listener.close()
        session.__exit__(None, None, None)
        tmp.cleanup()
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    print(table(rows))
    rss = np.array([r["rss_mb"] for r in rows])
    if len(rss) > 3:
        print(f"RSS from minute 3 to the end: {rss[2]:.0f} -> {rss[-1]:.0f} MB "
              f"(min {rss[2:].min():.0f}, max {rss[2:].max():.0f})")  # fmt: skip
    for key, value in slopes(rows, args.slope_from).items():
        print(f"slope from minute {args.slope_from}: {key} {value:+.2f} MB/min")
    if len(traced) == 2:
        first, last = (traced[k] for k in sorted(traced))
        print(f"tracemalloc, minute {min(traced)} -> {max(traced)}, largest growth:")
        for stat in last.compare_to(first, "traceback")[:12]:
            print(
                f"  {stat.size_diff / 2**20:+.2f} MB in {stat.count_diff:+d} blocks: "
                + " <- ".join(f"{f.filename.split('/')[-1]}:{f.lineno}" for f in stat.traceback[:4])
            )
    return 130 if interrupted else 0


def slopes(rows: list[dict], start: int) -> dict[str, float]:
    """Least-squares MB a minute of RSS and each heap figure, from minute `start` on."""
    import numpy as np

    rows = [r for r in rows if r["minute"] >= start]
    if len(rows) < 3:
        return {}
    t = np.array([r["minute"] for r in rows], float)
    keys = ["rss_mb"] + [k for k in rows[-1] if k.startswith(("malloc_", "rss_"))]
    keys = [k for k in dict.fromkeys(keys) if all(k in r for r in rows)]
    return {k: float(np.polyfit(t, [r[k] for r in rows], 1)[0]) for k in keys}


# the options of `tribe-stream serve` a soak takes as they are (the models' precision, the video
# levers), beside its own --checkpoint, --device, --no-text and --text-batch
LIVE_OPTIONS = (
    "engine",
    "dtype",
    "video_fp8",
    "video_batch",
    "video_overlap",
    "video_clips",
    "lag",
)


def table(rows: list[dict]) -> str:
    cols = [("minute", "min"), ("streams", "streams"), ("started", "started"),
            ("ended", "ended"), ("busy", "busy"), ("rss_mb", "RSS MB"), ("gpu_mb", "GPU MB"),
            ("threads", "threads"), ("fds", "fds"), ("received", "received"),
            ("p50", "p50 ms"), ("p95", "p95 ms"), ("p99", "p99 ms"), ("drops", "drops"),
            ("asr_dropped_s", "ASR dropped s"), ("errors", "errors"), ("loop_busy_pct", "loop busy %"),
            ("compiles", "compiles"),
            ("trimmed_mb", "trimmed MB")]  # fmt: skip
    if all(r.get("gpu_mb") is None for r in rows):
        cols = [c for c in cols if c[0] != "gpu_mb"]
    out = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for k, _ in cols:
            v = r.get(k)
            cells.append("" if v is None else f"{v:.0f}" if isinstance(v, float) else str(v))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    w = sub.add_parser("watch", help="a command's RSS over time")
    w.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    w.add_argument("cmd", nargs=argparse.REMAINDER)
    v = sub.add_parser("serve", help="a server with streams coming and going")
    v.add_argument("--minutes", type=float, default=30.0)
    v.add_argument("--checkpoint", default="demo")
    v.add_argument("--device", default=None)
    v.add_argument("--min-streams", type=int, default=2)
    v.add_argument("--max-streams", type=int, default=4, help="the server's limit too")
    v.add_argument("--arrive-s", type=float, default=20.0, help="mean seconds between arrivals")
    v.add_argument("--life-min", type=float, default=20.0, help="a stream's shortest life (s)")
    v.add_argument("--life-max", type=float, default=120.0, help="and longest (s)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--clip", help="media file each stream replays (default: a generated one)")
    v.add_argument("--clip-seconds", type=float, default=150.0)
    v.add_argument("--no-text", action="store_true", help="no speech recognition and text")
    v.add_argument("--text-batch", choices=("on", "off"), default="off",
                   help="the streams' words in one forward a turn (serve's --text-batch)")  # fmt: skip
    v.add_argument("--arena-max", type=int, help="cap glibc's malloc arenas (heap.limit_arenas)")
    v.add_argument(
        "--tracemalloc",
        type=lambda x: [int(m) for m in x.split(",")],
        default=[],
        help="MIN1,MIN2: Python-heap snapshots at those minutes, diffed at the end",
    )
    v.add_argument("--mmap-threshold-kb", type=int, help="fix glibc's mmap threshold (KB)")
    v.add_argument("--slope-from", type=int, default=4, help="first minute of the fitted slopes")
    v.add_argument("--out", help="the rows as JSON")
    from tribe_stream.options import StreamOptions, add_options

    add_options(v, StreamOptions, only=LIVE_OPTIONS)
    args = ap.parse_args()
    from tribe_stream.errors import TribeStreamError

    try:
        return watch(args) if args.mode == "watch" else serve(args)
    except TribeStreamError as exc:  # a bad checkpoint, clip or device: one line
        print(f"soak.py {args.mode}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the soak started (models loading)
        print(f"soak.py {args.mode}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
