"""`tribe-stream replay FILE --publish URL`: publish a recording again, at its pace or faster."""

from __future__ import annotations

import argparse

from tribe_stream.options import LiveOptions, add_options, number

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
    add_options(parser, LiveOptions, only=("realtime",))  # --fast: --speed 0
    parser.add_argument("--loop", action="store_true", help="start again at the end, until Ctrl-C")
    parser.add_argument(
        "--wait-subscribers",
        type=number(minimum=0),
        default=0.0,
        metavar="S",
        help="wait up to S seconds for a first subscriber before starting",
    )
    from tribe_stream.commands.run import add_publish_arguments

    add_publish_arguments(parser, skip=("roi", "regions"))


def run(args: argparse.Namespace) -> int:
    from tribe_stream.commands import stop_on_signals
    from tribe_stream.commands.run import publish_options
    from tribe_stream.errors import InputError
    from tribe_stream.recording import replay

    publish = publish_options(args)
    if publish is None:
        raise InputError("replay publishes: give --publish URL, not none")
    stop = stop_on_signals()
    kwargs = {"stream_id": publish.stream_id} if publish.stream_id else {}  # else the file's

    def ready(n: int) -> None:  # after the file is read: a bad one is refused before this line
        print(
            f"replaying {args.file} ({n} predictions) on {publish.url} (Ctrl-C to stop)", flush=True
        )

    sent = replay(
        args.file,
        publish.url,
        speed=args.speed if args.realtime else 0.0,
        loop=args.loop,
        wait_subscribers=args.wait_subscribers,
        stop=stop,
        on_ready=ready,
        dtype=publish.payload_dtype,
        curve_secret_key=publish.curve_secret,
        allowed_client_keys=list(publish.allow_clients) if publish.allow_clients else None,
        **kwargs,
    )
    print(f"sent {sent} predictions")
    return stop.code or 0
