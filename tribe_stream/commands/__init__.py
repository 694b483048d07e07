"""CLI subcommands: one module each, defining NAME, HELP, add_arguments(parser) and run(args) -> int.

`tribe_stream.cli` discovers every module here, so adding a command touches no other file.
"""

from __future__ import annotations

import argparse
import math
import signal
import threading
from collections.abc import Callable

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
"""A long-running command stopped by a signal exits with the shell's code for it."""


class SignalStop(threading.Event):
    """Set by Ctrl-C (SIGINT) or SIGTERM: `signal` says which, `code` the exit code (None while
    no signal came). A second Ctrl-C interrupts at once (KeyboardInterrupt)."""

    def __init__(self, on_stop: Callable[[], None] | None = None):
        super().__init__()
        self.signal: signal.Signals | None = None
        self._on_stop = on_stop

    @property
    def code(self) -> int | None:
        return EXIT_CODES.get(self.signal) if self.signal is not None else None

    def _handle(self, signum, frame) -> None:
        self.signal = signal.Signals(signum)
        self.set()
        if self._on_stop is not None:
            self._on_stop()
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def stop_on_signals(on_stop: Callable[[], None] | None = None) -> SignalStop:
    """An event that Ctrl-C or SIGTERM sets (calling `on_stop` too), so a long-running command
    stops cleanly, writes what it has and exits 130 or 143."""
    stop = SignalStop(on_stop)
    if threading.current_thread() is threading.main_thread():
        for sig in EXIT_CODES:
            signal.signal(sig, stop._handle)
    return stop


def number(
    kind: type = float,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
) -> Callable[[str], float]:
    """An argparse `type` that takes finite numbers in a range (`above`: strictly greater), so a
    bad option is refused with one line before anything starts."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a{'n integer' if kind is int else ' number'}"
            ) from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        if above is not None and value <= above:
            raise argparse.ArgumentTypeError(f"{text}: must be above {above:g}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"{text}: must be at least {minimum:g}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{text}: must be at most {maximum:g}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def add_video_fp8_arguments(p: argparse.ArgumentParser) -> None:
    """`--video-fp8` (V-JEPA2's matrix products in FP8) and `--video-fp8-attention` (its
    attention too), the same in every command that runs the video model."""
    p.add_argument(
        "--video-fp8",
        action="store_true",
        help="the video encoder's matrix products in FP8 (Hopper/Ada GPUs: faster, features "
        "within ~2%%)",
    )
    p.add_argument(
        "--video-fp8-attention",
        action="store_true",
        help="its attention in FP8 too, through cuDNN (Hopper GPUs, pip install "
        "nvidia-cudnn-frontend: faster again, features about twice as far from half precision); "
        "implies --video-fp8",
    )


def video_fp8(args: argparse.Namespace) -> bool | str:
    """The extractors' `video_fp8` from those options: False, True (products) or "all"."""
    return "all" if getattr(args, "video_fp8_attention", False) else bool(args.video_fp8)
