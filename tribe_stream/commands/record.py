"""`tribe-stream record URL OUT`: write a stream to HDF5, crash-safe (docs/PROTOCOL.md)."""

from __future__ import annotations

import argparse

from tribe_stream.options import number
from tribe_stream.protocol import add_subscriber_arguments

NAME = "record"
HELP = "record a prediction stream to HDF5 (crash-safe: a killed recorder loses at most the last second)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="publisher endpoint, e.g. tcp://127.0.0.1:5556")
    parser.add_argument("out", help="output file (.h5)")
    parser.add_argument("--duration", type=number(above=0), help="stop after this many seconds")
    parser.add_argument(
        "--count", type=number(int, minimum=1), help="stop after this many predictions"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument(
        "--flush-interval",
        type=number(above=0),
        default=1.0,
        help="seconds between flushes to disk: the most a crash can lose (default 1)",
    )
    add_subscriber_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from tribe_stream.commands import stop_on_signals
    from tribe_stream.recording import record

    stop = stop_on_signals()
    print(f"recording {args.url} -> {args.out} (Ctrl-C to stop)", flush=True)
    summary = record(
        args.url,
        args.out,
        count=args.count,
        duration=args.duration,
        overwrite=args.overwrite,
        flush_interval=args.flush_interval,
        stop=stop,
        curve_server_key=args.curve_server_key,
        curve_keypair=args.curve_keypair,
    )
    heads = "".join(f" + {n} {name}" for name, n in summary.get("head_rows", {}).items())
    print(
        f"{summary['path']}: {summary['rows']} predictions{heads}, "
        f"{summary['status_rows']} heartbeats; "
        f"missed {summary['missed']} in {summary['gaps']} gaps, rejected {summary['rejected']}, "
        f"publisher restarts {summary['restarts']}, resyncs {summary.get('resyncs', 0)}, "
        f"rows not written {summary.get('write_errors', 0)}"
    )
    return stop.code or 0
