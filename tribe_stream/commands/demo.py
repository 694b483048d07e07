"""`tribe-stream demo`: the whole live pipeline on a clip it makes, with UNTRAINED demo weights."""

from __future__ import annotations

NAME = "demo"
HELP = (
    "run the live pipeline on a generated clip with small untrained weights (no downloads, no GPU)"
)

BANNER = (
    "tribe-stream demo: UNTRAINED random weights (brain model and extractors), built locally.\n"
    "The maps show the pipeline working end to end; they are not brain predictions."
)


def add_arguments(p) -> None:
    from tribe_stream.commands.run import add_roi_argument

    add_roi_argument(p)
    p.add_argument(
        "--linger",
        type=float,
        default=None,
        help="with --view: close the viewer this many seconds after the clip (default: stay open)",
    )
    p.add_argument(
        "--seconds", type=float, default=10.0, help="length of the generated clip (default 10)"
    )
    p.add_argument(
        "--publish",
        metavar="URL",
        help="publish predictions over ZeroMQ (e.g. tcp://127.0.0.1:5556)",
    )
    p.add_argument(
        "--view", action="store_true", help="open the live cortical viewer (publishes on loopback)"
    )
    p.add_argument(
        "--lag", type=float, default=0.0, help="seconds of right-hand context (multiple of 0.5)"
    )
    p.add_argument(
        "--engine",
        default=None,
        help="torch, compiled, onnx (default: compiled on a GPU, torch on a CPU)",
    )
    p.add_argument(
        "--fast", action="store_true", help="replay as fast as possible instead of in real time"
    )
    p.add_argument(
        "--out", metavar="NPY", help="also save the predictions, (seconds, 20484) float32"
    )


def run(args) -> int:
    from tribe_stream.commands.run import run_stream
    from tribe_stream.stream.producer import Stream

    print(BANNER, flush=True)
    stream = Stream.demo(
        seconds=args.seconds, lag=args.lag, engine=args.engine, realtime=not args.fast
    )
    if args.publish:
        stream.publish(args.publish, roi=tuple(args.roi) if args.roi else None)
    elif args.roi:
        from tribe_stream.errors import InputError

        raise InputError("--roi publishes region means: add --publish URL")
    if args.view:
        stream.view(linger=args.linger)
    return run_stream(stream, out=args.out, total=args.seconds)
