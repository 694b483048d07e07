"""`tribe-stream report PRED --out report.html`: one self-contained HTML page of a prediction file,
aligned to its stimulus (`tribe_stream/report.py`)."""

from __future__ import annotations

import argparse

from tribe_stream.options import AtlasOptions, add_options, from_args, number

NAME = "report"
HELP = "one self-contained HTML page of a prediction: stimulus frames, cortex, regions, words"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pred", help="prediction file (.npy, .h5, .func.gii, .mgh/.mgz) or recording")
    p.add_argument("--out", required=True, help="the page to write (.html)")
    p.add_argument("--stimulus", help="the stimulus video: its frame in each second shown")
    add_options(p, AtlasOptions)
    p.add_argument(
        "--max-frames",
        type=number(int, minimum=1),
        default=24,
        help="at most this many seconds shown, one row each (default 24)",
    )
    p.add_argument(
        "--stride",
        type=number(int, minimum=1),
        default=None,
        help="rows between the rows shown (seconds at 1 Hz; default: the rows / --max-frames, "
        "rounded up)",
    )


def run(args: argparse.Namespace) -> int:
    from tribe_stream.report import write_report
    from tribe_stream.untrained import UNTRAINED_LABEL

    atlas_options = from_args(AtlasOptions, args)
    atlas = atlas_options.load() if atlas_options.given else None
    report = write_report(
        args.pred,
        args.out,
        stimulus=args.stimulus,
        atlas=atlas,
        max_frames=args.max_frames,
        stride=args.stride,
    )
    if report.untrained:
        print(UNTRAINED_LABEL)
    extra = f", contributions of {'/'.join(report.contributions)}" if report.contributions else ""
    print(
        f"wrote {report.out}: {len(report.shown)} of {report.seconds} seconds (every "
        f"{report.step:g} s), {report.frames} stimulus frames, {report.plots} plots, "
        f"{report.words} words{extra}"
    )
    return 0
