"""`tribe-stream run`: cameras, microphones or files in, one prediction per second out.

`run_stream` is the shell `run` and `demo` share around a `tribe_stream.Stream`: the progress
line, the summary line and `--out`. Ctrl-C (SIGINT) or SIGTERM ends the stream after the step in
progress; what was predicted is still written, and the command exits 130 or 143 (0 at the
media's normal end). A second Ctrl-C interrupts at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tribe_stream.options import PublishOptions, StreamOptions, add_options, from_args, number

if TYPE_CHECKING:
    from tribe_stream.stream.producer import Stream

NAME = "run"
HELP = "run the live pipeline on cameras, microphones or files"


def add_media_arguments(p) -> None:
    """`--file`, `--camera`, `--mic`, each repeatable (`run`, `serve`; see `media_list`)."""
    p.add_argument("--file", action="append", metavar="FILE", help="replay a media file; repeat")
    p.add_argument(
        "--camera", action="append", metavar="DEV",
        help="/dev/videoN, a URL or file ffmpeg opens, or lavfi:SPEC; repeat",
    )  # fmt: skip
    p.add_argument(
        "--mic", action="append", metavar="DEV",
        help="microphone: a sounddevice index or name, or `default`; repeat",
    )  # fmt: skip


def media_list(args) -> list:
    """The streams the arguments name, as `Media`: each file one stream; cameras and
    microphones paired in order (the first camera with the first microphone, ...), each pair or
    one left over a stream."""
    from itertools import zip_longest

    from tribe_stream.errors import InputError
    from tribe_stream.stream.producer import Media

    medias = [Media(file=f) for f in args.file or []]
    medias += [Media(camera=c, mic=m) for c, m in zip_longest(args.camera or [], args.mic or [])]
    if not medias:
        raise InputError("nothing to listen to: pass --camera DEV, --mic DEV, or --file FILE")
    return medias


def add_stream_arguments(p, skip: tuple[str, ...] = ()) -> None:
    """The stream's options and where its predictions are published (`run`, `serve`, `demo`)."""
    add_options(p, StreamOptions, skip=skip)
    add_publish_arguments(p)


def add_publish_arguments(p, skip: tuple[str, ...] = ()) -> None:
    """`PublishOptions` (`run`, `serve`, `demo`, `replay`)."""
    add_options(p.add_argument_group("publishing"), PublishOptions, skip=skip)


def publish_options(args) -> PublishOptions | None:
    """The checked `PublishOptions` of `add_publish_arguments`; None for `--publish none`."""
    publish = from_args(PublishOptions, args)
    return None if publish.off and not publish.roi else publish.validate()


def add_output_arguments(p) -> None:
    """Where `run`'s and `demo`'s predictions go besides the publisher."""
    p.add_argument("--viewer", action="store_true", help="open the live cortical viewer too")
    p.add_argument(
        "--linger", type=number(minimum=0), default=None,
        help="with --viewer: close it this many seconds after the stream (default: stay open)",
    )  # fmt: skip
    p.add_argument("--out", metavar="NPY", help="also save the predictions, (seconds, 20484)")


def add_arguments(p) -> None:
    add_media_arguments(p)
    add_stream_arguments(p)
    add_output_arguments(p)
    p.add_argument("--record", metavar="H5", help="also write a recording (HDF5, as `record`)")


def stream_from_args(args, media) -> Stream:
    """A `Stream` of `media` with the options and publishing the arguments say, all checked
    before any model loads: the media first (without torch), then the options."""
    from tribe_stream.stream.producer import Stream

    stream = Stream(media, from_args(StreamOptions, args))
    publish = publish_options(args)
    if publish is not None:
        stream.publish(publish)
    return stream


def run(args) -> int:
    from tribe_stream.errors import InputError

    stream = stream_from_args(args, media_list(args))
    if args.out and len(stream.medias) > 1:
        raise InputError("--out NPY holds one stream; for several, `serve --out DIR`")
    if args.record:
        stream.record(args.record)
    if args.viewer:
        stream.view(linger=args.linger)
    return run_stream(stream, out=args.out, total=args.seconds)


class NpyRows:
    """A `.npy` of float32 rows written as they come (a run of days keeps none in memory: 82 KB
    a second held before, issue 31 #9), into a temporary file beside `path` renamed over it by
    `finish` (atomic, as `outputs.atomic_write`); `discard` removes it."""

    HEADER = 128  # bytes reserved for the .npy header (rewritten with the row count at the end)

    def __init__(self, path) -> None:
        import os
        import secrets
        from pathlib import Path

        from tribe_stream.outputs import check_output

        self.path = check_output(path, (".npy",))
        name = f".{self.path.stem}.{os.getpid()}.{secrets.token_hex(4)}.rows.tmp"
        self.tmp = Path(self.path).with_name(name)
        self._f = None
        self.rows = 0
        self.width: int | None = None

    def append(self, values) -> None:
        import numpy as np

        row = np.ascontiguousarray(values, dtype="<f4").reshape(-1)
        if self._f is None:
            self._f = open(self.tmp, "wb")  # noqa: SIM115 - open for the whole run
            self._f.write(b"\0" * self.HEADER)
            self.width = row.size
        self._f.write(row.tobytes())
        self.rows += 1

    def finish(self):
        """The rows as `path` (.npy, (rows, width) float32); returns the path."""
        import os
        import struct

        from tribe_stream.outputs import atomic_write

        d = {"descr": "<f4", "fortran_order": False, "shape": (self.rows, self.width)}
        text = repr(d).encode("latin1")
        text += b" " * (self.HEADER - 10 - len(text) - 1) + b"\n"
        self._f.seek(0)
        self._f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text)
        self._f.close()
        self._f = None
        return atomic_write(self.path, lambda tmp: os.replace(self.tmp, tmp))

    def discard(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        self.tmp.unlink(missing_ok=True)


def run_stream(stream: Stream, *, out: str | None = None, total: float | None = None) -> int:
    """Run `stream` with a progress line; write `out` (.npy, (seconds, n_outputs) float32) at
    the end, also after a signal. Returns the exit code."""
    import logging
    import signal

    from tribe_stream.commands import stop_on_signals
    from tribe_stream.errors import InputError
    from tribe_stream.stream.progress import ProgressLine

    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    rows = NpyRows(out) if out else None  # checked before any model loads
    made = 0
    signals = stop_on_signals(on_stop=stream.stop)
    try:
        with stream.open() as running:
            for note in stream.notes:
                print(note, flush=True)
            progress = ProgressLine(total=total)
            try:
                for p in running:
                    made += 1
                    if rows is not None:
                        rows.append(p.values)
                    progress.update(p)
            finally:
                progress.close()
    except KeyboardInterrupt:  # a second Ctrl-C
        signals.signal = signal.SIGINT
    except BaseException:
        if rows is not None:
            rows.discard()
        raise
    c = stream.counters
    if signals.signal is not None:
        print(f"\nstopped by {signals.signal.name}", flush=True)
    if c:
        print(
            f"done: {int(c['predictions'])} predictions, {int(c['bins'])} bins, "
            f"{int(c.get('words', 0))} words, dropped {int(c['dropped_bins'])} bins and "
            f"{int(c['dropped_seconds'])} seconds"
            + (
                f", {c['asr_dropped_s']:.1f} s of sound for speech recognition"
                if c.get("asr_dropped_s")
                else ""
            )
            + f", {int(c['extractor_errors'] + c['engine_errors'])} errors",
            flush=True,
        )
    if rows is not None and rows.rows:
        written = rows.finish()
        _write_sidecar(written, stream, rows.rows)
        print(f"wrote {written}: {rows.rows} seconds", flush=True)
    elif rows is not None:
        rows.discard()
    if signals.signal is not None:
        return signals.code
    if not made:
        raise InputError(_why_nothing(stream, c))
    return 0


def _write_sidecar(npy, stream: Stream, seconds: int) -> None:
    """`NAME.json` beside `NAME.npy`, as `predict` writes: the model (`untrained` for demo
    weights, so `render` labels its pictures) and the rows' seconds."""
    import json

    from tribe_stream.outputs import atomic_write

    meta = {
        "source": "tribe-stream run (live)",
        "model": stream.model,
        "first_second": 0,
        "n_seconds": seconds,
        "tr_s": 1.0,
        "hemodynamic_offset_s": 5.0,
        "lag_s": stream.options.lag,
    }
    text = json.dumps(meta, indent=2, default=str) + "\n"
    atomic_write(npy.with_suffix(".json"), lambda tmp: tmp.write_text(text))


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
