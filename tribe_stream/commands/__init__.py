"""CLI subcommands: one module each, defining NAME, HELP, add_arguments(parser) and run(args) -> int.

`tribe_stream.cli` discovers every module here, so adding a command touches no other file.
"""

from __future__ import annotations

import signal
import threading


def stop_on_signals() -> threading.Event:
    """An event that Ctrl-C (SIGINT) or SIGTERM sets, so a long-running command stops cleanly."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop
