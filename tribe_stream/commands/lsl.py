"""`tribe-stream lsl URL`: re-publish a prediction stream as a Lab Streaming Layer outlet."""

from __future__ import annotations

import argparse

from tribe_stream.options import AtlasOptions, add_options, from_args, number
from tribe_stream.protocol import add_subscriber_arguments

NAME = "lsl"
HELP = "bridge a prediction stream to Lab Streaming Layer (a channel per vertex, LSL-clock stamps)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="publisher endpoint, e.g. tcp://127.0.0.1:5556")
    parser.add_argument("--outlet-name", default="tribe-stream", help="LSL stream name")
    parser.add_argument("--type", default="fMRI", help="LSL content type (default fMRI)")
    parser.add_argument("--source-id", help="LSL source id (default tribe-stream:STREAM_ID)")
    parser.add_argument(
        "--stamp",
        choices=("stimulus", "bold", "arrival"),
        default="stimulus",
        help="what each sample's LSL time marks: its stimulus second's start (default), the "
        "predicted-BOLD time, or its arrival here",
    )
    parser.add_argument("--no-labels", action="store_true", help="no per-channel description")
    parser.add_argument(
        "--topic",
        choices=("prediction", "roi", "structures"),
        default="prediction",
        help="prediction: a channel per vertex (default); roi: one named channel per region "
        "(the stream's tribe.roi topic: start it with --roi ATLAS, --region NAME for some); "
        "structures: one per Harvard-Oxford structure of the subcortical head",
    )
    add_options(
        parser.add_argument_group("regions made here (instead of --topic roi)"), AtlasOptions
    )
    parser.add_argument(
        "--stream-id",
        help="with several streams on one publisher (serve), the one to bridge (default: the "
        "first whose metadata comes)",
    )
    parser.add_argument(
        "--markers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a marker outlet NAME-markers beside it (default on): the stream's words at their "
        "onsets (word/TEXT) and its events (event/stream-start, stream-end, drops, errors)",
    )
    parser.add_argument(
        "--count", type=number(int, minimum=1), help="stop after this many predictions"
    )
    add_subscriber_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from tribe_stream.commands import stop_on_signals
    from tribe_stream.errors import InputError
    from tribe_stream.lsl import run_bridge

    regions = from_args(AtlasOptions, args)
    atlas = None
    if regions.given or regions.regions:
        if args.topic != "prediction":
            raise InputError(
                "--topic roi bridges the regions the stream publishes; --atlas makes them here "
                "from its vertex predictions: give one of the two"
            )
        atlas = regions.load()  # before anything subscribes: one line if it cannot be had
    stop = stop_on_signals()
    print(f"bridging {args.url} to LSL stream {args.outlet_name!r} (Ctrl-C to stop)", flush=True)
    summary = run_bridge(
        args.url,
        stop=stop,
        count=args.count,
        markers=args.markers,
        stream_id=args.stream_id,
        bridge_kwargs={
            "name": args.outlet_name,
            "stype": args.type,
            "source_id": args.source_id,
            "stamp": args.stamp,
            "labels": not args.no_labels,
            "regions": {"roi": True, "structures": "structures"}.get(args.topic, False),
            "atlas": atlas,
        },
        curve_server_key=args.curve_server_key,
        curve_keypair=args.curve_keypair,
    )
    marks = f"; markers: {summary['words']} words, {summary['events']} events"
    print(
        f"pushed {summary['pushed']} samples; missed {summary['missed']}, "
        f"rejected {summary['rejected']}{marks if args.markers else ''}"
    )
    return stop.code or 0
