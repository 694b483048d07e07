"""`tribe-stream view`: the live cortical viewer on a prediction stream."""

from __future__ import annotations

import argparse

from tribe_stream.options import number

NAME = "view"
HELP = "live window: the cortex lighting up as predictions arrive (latest-only subscriber)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tribe_stream.protocol import DEFAULT_URL, add_subscriber_arguments
    from tribe_stream.surface.colors import COLORMAPS
    from tribe_stream.surface.views import VIEWS

    parser.add_argument(
        "url", nargs="?", default=DEFAULT_URL, help=f"stream to watch (default {DEFAULT_URL})"
    )
    parser.add_argument("--view", default="both", choices=list(VIEWS), help="starting view")
    parser.add_argument("--cmap", default="cold_hot", choices=list(COLORMAPS), help="colormap")
    parser.add_argument("--size", help="window size WIDTHxHEIGHT (default 1280x800)")
    parser.add_argument(
        "--max-fps", type=number(above=0), default=60.0, help="frame-rate cap (default 60)"
    )
    parser.add_argument(
        "--transition",
        type=number(minimum=0),
        default=0.5,
        help="cross-fade seconds between predictions",
    )
    parser.add_argument(
        "--threshold-pct",
        type=number(minimum=0, maximum=100),
        default=50.0,
        help="hide |values| below this percentile",
    )
    parser.add_argument("--vmax", type=float, default=None, help="fixed colour limit")
    parser.add_argument(
        "--duration", type=number(above=0), default=None, help="close after this many seconds"
    )
    parser.add_argument(
        "--backend", default="glfw", help="vispy window backend (glfw; pyqt6/pyside6 if installed)"
    )
    add_subscriber_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import signal

    from tribe_stream.client import subscriber_from_args
    from tribe_stream.viewer.backend import use_window_backend
    from tribe_stream.viewer.live import LiveViewer, ViewerOptions
    from tribe_stream.viewer.render import parse_size

    size = parse_size(args.size or "1280x800")
    use_window_backend(args.backend)
    sub = subscriber_from_args(args, args.url, latest_only=True, topics=("prediction",))
    viewer = LiveViewer(
        ViewerOptions(
            url=args.url,
            views=(args.view,),
            cmap=args.cmap,
            size=size,
            max_fps=args.max_fps,
            transition_s=args.transition,
            threshold_pct=args.threshold_pct,
            vmax=args.vmax,
            duration_s=args.duration,
        ),
        subscriber=sub,
    )
    signal.signal(signal.SIGTERM, lambda signum, frame: viewer.stop())
    stats = viewer.run()
    elapsed = max(stats.frame_times[-1] - stats.started, 1e-9) if stats.frame_times else 0.0
    if elapsed:
        print(
            f"viewer: {stats.frames} frames in {elapsed:.1f} s, {stats.received} predictions shown"
        )
    return 0
