"""`tribe-stream bench`: the whole live pipeline measured on a replayed clip (see `tribe_stream.bench`)."""

from __future__ import annotations

from tribe_stream.commands import add_video_fp8_arguments, number, video_fp8

NAME = "bench"
HELP = "measure the live pipeline end to end (latency per stage, streams per GPU) against the sequential baseline"


def add_arguments(p) -> None:
    p.add_argument(
        "--checkpoint",
        default=None,
        help="model folder, hub id or `demo` (default: full-size random weights built here)",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--streams", type=number(int, minimum=1, maximum=64), default=1, help="concurrent streams"
    )
    g.add_argument(
        "--max-streams", action="store_true", help="find the most streams kept in real time"
    )
    p.add_argument(
        "--start-streams",
        type=number(int, minimum=1, maximum=64),
        default=4,
        help="--max-streams starts here",
    )
    p.add_argument(
        "--seconds", type=number(above=0), default=60.0, help="stream seconds per run (default 60)"
    )
    p.add_argument(
        "--warmup", type=number(minimum=0), default=5.0, help="seconds left out at each run's start"
    )
    p.add_argument(
        "--baseline-seconds", type=number(above=0), default=20.0, help="seconds of the baseline run"
    )
    p.add_argument(
        "--p99-ms", type=number(above=0), default=250.0, help="real time: p99 at most this"
    )
    p.add_argument("--clip", help="media file to replay (default: a generated clip with speech)")
    p.add_argument("--transcript", help="words with times (TSV, SRT, VTT) fed at their times")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    add_video_fp8_arguments(p)
    starts = p.add_mutually_exclusive_group()
    starts.add_argument(
        "--stagger",
        dest="aligned",
        action="store_false",
        help="streams start at phases spread evenly over one 0.5 s bin, as independent sources "
        "would (default)",
    )
    starts.add_argument(
        "--aligned",
        dest="aligned",
        action="store_true",
        help="every stream starts at one instant, so all their bins close together (worst case)",
    )
    p.set_defaults(aligned=False)
    p.add_argument("--no-text", action="store_true", help="leave the text model out")
    p.add_argument("--lag", type=float, default=0.0, help="seconds of right-hand context")
    p.add_argument("--out", default="bench.json", help="JSON report (default bench.json)")
    p.add_argument("--plot", default="bench.png", help="PNG of the latency distributions")


def run(args) -> int:
    from tribe_stream.bench import BenchOptions, run_bench

    run_bench(
        BenchOptions(
            checkpoint=args.checkpoint,
            streams=args.streams,
            max_streams=args.max_streams,
            start_streams=args.start_streams,
            seconds=args.seconds,
            warmup_s=args.warmup,
            baseline_seconds=args.baseline_seconds,
            p99_ms=args.p99_ms,
            clip=args.clip,
            transcript=args.transcript,
            device=args.device,
            video_fp8=video_fp8(args),
            aligned=args.aligned,
            text=not args.no_text,
            lag=args.lag,
            out=args.out,
            plot=args.plot,
        ),
        say=lambda line: print(line, flush=True),
    )
    return 0
