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


DEMO_SECONDS = 10.0
"""The generated clip's length when `--seconds` is not given."""


def add_arguments(p) -> None:
    from tribe_stream.commands.run import add_output_arguments, add_stream_arguments

    add_stream_arguments(p, skip=("checkpoint",))  # always the demo weights
    add_output_arguments(p)


def run(args) -> int:
    from tribe_stream.commands.run import run_stream, stream_from_args
    from tribe_stream.stream.producer import Media

    seconds = args.seconds or DEMO_SECONDS
    stream = stream_from_args(args, Media(demo_seconds=seconds))
    print(BANNER, flush=True)
    if args.viewer:
        stream.view(linger=args.linger)
    return run_stream(stream, out=args.out, total=seconds)
