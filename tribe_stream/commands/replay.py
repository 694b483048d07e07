"""`tribe-stream replay FILE --publish URL`: publish a recording again, at its pace or faster."""

from __future__ import annotations

import argparse

from tribe_stream.commands import number
from tribe_stream.protocol import add_publisher_arguments

NAME = "replay"
HELP = "publish a recording again, at its pace or faster, to test consumers without a camera"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a recording made by `tribe-stream record`")
    parser.add_argument(
        "--speed",
        type=number(minimum=0),
        default=1.0,
        help="pace: 1 real time, 10 ten times faster, 0 no wait",
    )
    parser.add_argument("--fast", action="store_true", help="as fast as possible (--speed 0)")
    parser.add_argument("--loop", action="store_true", help="start again at the end, until Ctrl-C")
    parser.add_argument(
        "--wait-subscribers",
        type=number(minimum=0),
        default=0.0,
        metavar="S",
        help="wait up to S seconds for a first subscriber before starting",
    )
    add_publisher_arguments(parser)
    parser.set_defaults(dtype=None)


def run(args: argparse.Namespace) -> int:
    from tribe_stream.commands import stop_on_signals
    from tribe_stream.recording import replay

    stop = stop_on_signals()
    kwargs = {}
    if args.dtype:
        kwargs["dtype"] = args.dtype
    if args.stream_id:
        kwargs["stream_id"] = args.stream_id
    print(f"replaying {args.file} on {args.publish} (Ctrl-C to stop)", flush=True)
    sent = replay(
        args.file,
        args.publish,
        speed=0.0 if args.fast else args.speed,
        loop=args.loop,
        wait_subscribers=args.wait_subscribers,
        stop=stop,
        curve_secret_key=args.curve_secret,
        allowed_client_keys=args.allow_client,
        **kwargs,
    )
    print(f"sent {sent} predictions")
    return stop.code or 0
