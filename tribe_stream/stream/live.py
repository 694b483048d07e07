"""Running a `Stream` from the command line (`run`, `demo`): the progress line, signals, the
summary line and `--out`.

Ctrl-C (SIGINT) or SIGTERM ends the stream after the step in progress; what was predicted is
still written, and the command exits 130 or 143 (0 at the media's normal end). A second Ctrl-C
interrupts at once.
"""

from __future__ import annotations

import logging
import signal
import threading

import numpy as np

from tribe_stream.errors import InputError
from tribe_stream.stream.producer import Stream

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class _Signals:
    """While active, SIGINT/SIGTERM stop the stream instead of killing the process."""

    def __init__(self, stream: Stream):
        self.stream = stream
        self.received: signal.Signals | None = None
        self._old: dict = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in EXIT_CODES:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signal.Signals(signum)
        self.stream.stop()
        if signum == signal.SIGINT:  # a second Ctrl-C interrupts whatever is running
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def run_stream(stream: Stream, *, out: str | None = None, total: float | None = None) -> int:
    """Run `stream` with a progress line; write `out` (.npy, (seconds, n_outputs) float32) at
    the end, also after a signal. Returns the exit code."""
    from tribe_stream.outputs import check_output, save_npy
    from tribe_stream.stream.progress import ProgressLine

    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    out_path = check_output(out, (".npy",)) if out else None  # before any model loads
    values: list[np.ndarray] = []
    with _Signals(stream) as signals:
        try:
            with stream.open() as running:
                for note in stream.notes:
                    print(note, flush=True)
                progress = ProgressLine(total=total)
                try:
                    for p in running:
                        values.append(p.values)
                        progress.update(p)
                finally:
                    progress.close()
        except KeyboardInterrupt:  # a second Ctrl-C, or one while the models were loading
            signals.received = signal.SIGINT
    c = stream.counters
    if signals.received is not None:
        print(f"\nstopped by {signals.received.name}", flush=True)
    if c:
        print(
            f"done: {int(c['predictions'])} predictions, {int(c['bins'])} bins, "
            f"{int(c.get('words', 0))} words, dropped {int(c['dropped_bins'])} bins and "
            f"{int(c['dropped_seconds'])} seconds, "
            f"{int(c['extractor_errors'] + c['engine_errors'])} errors",
            flush=True,
        )
    if out_path is not None and values:
        written = save_npy(out_path, np.stack(values).astype(np.float32))
        print(f"wrote {written}: {len(values)} seconds", flush=True)
    if signals.received is not None:
        return EXIT_CODES[signals.received]
    if not values:
        raise InputError(_why_nothing(stream, c))
    return 0


def _why_nothing(stream: Stream, counters: dict) -> str:
    """The one line a run that predicted nothing ends with."""
    what = stream.media.file or stream.media.camera or stream.media.mic or "the demo clip"
    bad = {k: v for k, v in counters.items() if v and k.startswith("source") and "error" in k}
    bad |= {k: v for k, v in counters.items() if v and k.endswith("corrupt_frames")}
    if bad:
        detail = ", ".join(f"{k.split('.', 1)[-1]} {int(v)}" for k, v in bad.items())
        return f"no prediction was made: nothing in {what} could be decoded ({detail})"
    seconds = counters.get("bins", 0) / 2
    return (
        f"no prediction was made: {what} gave {seconds:g} s of media, less than one whole "
        "second to predict"
    )
