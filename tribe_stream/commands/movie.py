"""`tribe-stream movie`: an MP4 of a prediction file or recording, optionally beside the stimulus
video, with its sound."""

from __future__ import annotations

import argparse

from tribe_stream.options import number

NAME = "movie"
HELP = "render predictions as an MP4 of the cortex, optionally beside the stimulus video"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tribe_stream.surface.colors import COLORMAPS
    from tribe_stream.surface.views import VIEWS

    parser.add_argument(
        "recording",
        help="prediction file (.npy, .h5, .func.gii or .mgh/.mgz pair: either hemisphere or the "
        "common name) or a recording made by `tribe-stream record`",
    )
    parser.add_argument("--out", required=True, help="output .mp4")
    parser.add_argument("--size", help="movie size WIDTHxHEIGHT, even numbers (default 1280x720)")
    parser.add_argument(
        "--fps",
        type=number(above=0, maximum=240),
        default=1.0,
        help="frames per second (default 1: one per prediction)",
    )
    parser.add_argument(
        "--interpolate", action="store_true", help="blend between seconds (use with --fps > 1)"
    )
    parser.add_argument("--views", nargs="+", default=["both"], choices=list(VIEWS))
    parser.add_argument("--cmap", default="cold_hot", choices=list(COLORMAPS))
    parser.add_argument("--threshold-pct", type=number(minimum=0, maximum=100), default=50.0)
    parser.add_argument(
        "--stimulus", default=None, help="stimulus video to show on the left (its sound kept)"
    )
    parser.add_argument(
        "--stimulus-offset",
        type=float,
        default=0.0,
        help="stimulus video time at stream time 0, in seconds (default 0)",
    )
    parser.add_argument("--codec", default=None, help="encoder (default libx264, else mpeg4)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tribe_stream.viewer.movie import MovieOptions, write_movie
    from tribe_stream.viewer.render import parse_size

    info = write_movie(
        args.recording,
        MovieOptions(
            out=Path(args.out),
            size=parse_size(args.size or "1280x720"),
            fps=args.fps,
            interpolate=args.interpolate,
            views=tuple(args.views),
            cmap=args.cmap,
            threshold_pct=args.threshold_pct,
            stimulus=Path(args.stimulus) if args.stimulus else None,
            stimulus_offset_s=args.stimulus_offset,
            codec=args.codec,
        ),
    )
    w, h = info["size"]
    print(
        f"wrote {args.out}: {info['frames']} frames of {w}x{h} ({info['codec']}) "
        f"from {info['seconds']} predicted rows"
        + (", with the stimulus's sound" if info["sound"] else "")
    )
    return 0
