"""`tribe-stream render`: a still picture of one prediction on the cortex, or (`--rgb`) of the
modalities' contributions as one map: text red, audio green, video blue (`predict --contributions`
writes them). `--atlas`/`--annot` with `--region`: only those regions drawn (and the colour
limits taken from them), the rest of the cortex bare."""

from __future__ import annotations

import argparse

from tribe_stream.options import AtlasOptions, add_options, from_args, number

NAME = "render"
HELP = "draw a prediction (any prediction file or recording) on the cortex as a PNG, colorbar"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tribe_stream.surface.colors import COLORMAPS
    from tribe_stream.surface.views import VIEWS

    parser.add_argument(
        "pred",
        nargs="+",
        help="prediction file: .npy ((20484,) or (T, 20484)), .h5 (predict's or a recording), "
        ".func.gii or .mgh/.mgz pair (either hemisphere or the common name); with --rgb: a "
        "prediction file with its contributions beside it, or the contribution files",
    )
    parser.add_argument("--out", required=True, help="output PNG path")
    parser.add_argument(
        "--views", nargs="+", default=["both"], choices=list(VIEWS), help="views (default: both)"
    )
    parser.add_argument("--cmap", default="cold_hot", choices=list(COLORMAPS), help="colormap")
    parser.add_argument("--size", help="image size WIDTHxHEIGHT (default 1200x900)")
    parser.add_argument(
        "--second",
        type=float,
        default=None,
        help="which row to draw: its stimulus second (after predict --tr: volume time - 5 s; "
        "negative: counted from the end)",
    )
    parser.add_argument(
        "--threshold", type=float, default=None, help="hide |values| at or below this"
    )
    parser.add_argument(
        "--threshold-pct",
        type=number(minimum=0, maximum=100),
        default=50.0,
        help="hide values below this percentile of |values| (default 50; --threshold overrides)",
    )
    parser.add_argument("--vmax", type=float, default=None, help="colour limit (default: 98th pct)")
    parser.add_argument("--title", default=None, help="caption line (default: file and second)")
    parser.add_argument(
        "--rgb",
        action="store_true",
        help="the contributions as one map: text red, audio green, video blue (the mean over "
        "time unless --second)",
    )
    parser.add_argument(
        "--percentile",
        type=number(minimum=1, maximum=100),
        default=95.0,
        help="--rgb: the three maps' common scale tops out at this percentile (official: 95)",
    )
    parser.add_argument(
        "--background",
        type=number(minimum=0, maximum=1),
        default=0.0,
        help="--rgb: mix this much sulcal grey into the colours (official default 0)",
    )
    add_options(parser.add_argument_group("regions (the rest of the cortex bare)"), AtlasOptions)


def run(args: argparse.Namespace) -> int:
    from tribe_stream.errors import InputError
    from tribe_stream.outputs import check_output
    from tribe_stream.surface.colors import get_colormap, robust_limits
    from tribe_stream.viewer import render

    size = render.parse_size(args.size or "1200x900")
    check_output(args.out, (".png",))
    if args.rgb:
        channels, caption, found = render.load_contributions(args.pred, args.second)
    elif len(args.pred) != 1:
        raise InputError(
            f"give one prediction file, not {len(args.pred)} (several only with --rgb)"
        )
    else:
        values, caption = render.load_map(args.pred[0], args.second)
    regions = from_args(AtlasOptions, args)
    if regions.given or regions.regions:
        if args.rgb:
            raise InputError("--atlas, --annot and --region draw one map: not with --rgb")
        values = regions.load().mask(values)  # NaN outside: drawn as bare cortex
    title, text = render.picture_text(
        caption if args.title is None else args.title, render.map_metadata(args.pred[0])
    )
    if args.rgb:
        image = render.render_rgb_image(
            channels,
            views=args.views,
            size=size,
            percentile=args.percentile,
            background=args.background,
            title=title,
        )
        absent = [m for m in ("text", "audio", "video") if m not in found]
        note = f"; no {', '.join(absent)} contribution (its channel is black)" if absent else ""
        what = f"RGB of {', '.join(found)}{note}"
    else:
        cm = get_colormap(args.cmap)
        limits = robust_limits(
            values, cm.diverging, threshold_percentile=args.threshold_pct, threshold=args.threshold
        )
        if args.vmax is not None:
            limits = limits.with_vmax(args.vmax, cm.diverging)
        image = render.render_image(
            values, views=args.views, cmap=args.cmap, size=size, limits=limits, title=title
        )
        what = f"views: {' '.join(args.views)}"
    render.save_png(args.out, image, text=text)
    print(f"wrote {args.out} ({size[0]}x{size[1]}, {what})")
    return 0
