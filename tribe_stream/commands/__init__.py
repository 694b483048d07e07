"""CLI subcommands: one module each, defining NAME, HELP, add_arguments(parser) and run(args) -> int.

`tribe_stream.cli` discovers every module here, so adding a command touches no other file.
An option that more than one command has comes from `tribe_stream.options` (`add_options` to
declare it, `from_args` to read it back), so it is the same option wherever it appears
(`tests/test_cli_options.py` checks).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
"""A long-running command stopped by a signal exits with the shell's code for it."""


class SignalStop(threading.Event):
    """Set by Ctrl-C (SIGINT) or SIGTERM: `signal` says which, `code` the exit code (None while
    no signal came). A second Ctrl-C interrupts at once (KeyboardInterrupt), a second SIGTERM
    ends the process at once (exit 143), as a service manager's repeated stop expects."""

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
        else:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def stop_on_signals(on_stop: Callable[[], None] | None = None) -> SignalStop:
    """An event that Ctrl-C or SIGTERM sets (calling `on_stop` too), so a long-running command
    stops cleanly, writes what it has and exits 130 or 143."""
    stop = SignalStop(on_stop)
    if threading.current_thread() is threading.main_thread():
        for sig in EXIT_CODES:
            signal.signal(sig, stop._handle)
    return stop
