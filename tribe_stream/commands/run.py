"""`tribe-stream run`: camera and/or microphone (or a file) in, one prediction per second out.

`run_stream` is the shell `run` and `demo` share around a `tribe_stream.Stream`: the progress
line, the summary line and `--out`. Ctrl-C (SIGINT) or SIGTERM ends the stream after the step in
progress; what was predicted is still written, and the command exits 130 or 143 (0 at the
media's normal end). A second Ctrl-C interrupts at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tribe_stream.commands import add_video_fp8_arguments, video_fp8

if TYPE_CHECKING:
    from tribe_stream.stream.producer import PublishOptions, Stream

NAME = "run"
HELP = "run the live pipeline on a camera, a microphone or a file"


def add_arguments(p) -> None:
    p.add_argument(
        "--checkpoint", required=True, help="model folder, .safetensors, hub id, or `demo`"
    )
    p.add_argument(
        "--camera", metavar="DEV", help="/dev/videoN, a URL or file ffmpeg opens, or lavfi:SPEC"
    )
    p.add_argument(
        "--mic", metavar="DEV", help="microphone: a sounddevice index or name, or `default`"
    )
    p.add_argument(
        "--file", help="replay a media file (its video and audio) instead of live devices"
    )
    p.add_argument(
        "--fast", action="store_true", help="with --file: as fast as possible, not real time"
    )
    p.add_argument(
        "--lag",
        type=float,
        default=0.0,
        help="seconds of right-hand context (default 0: lowest latency)",
    )
    p.add_argument(
        "--audio-context",
        type=float,
        default=30.0,
        help="seconds of trailing audio the audio extractor hears per bin (default 30)",
    )
    p.add_argument(
        "--engine",
        default=None,
        help="torch, compiled, onnx, tensorrt (default: compiled on a GPU, torch on a CPU)",
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument(
        "--model-dtype", default=None, help="float32, float16, bfloat16 (default: float16 on GPU)"
    )
    from tribe_stream.protocol import add_publisher_arguments

    add_publisher_arguments(p)  # --publish URL (`none`: off), --dtype, --stream-id, CURVE keys
    add_video_fp8_arguments(p)
    p.add_argument("--view", action="store_true", help="open the live cortical viewer too")
    p.add_argument(
        "--linger",
        type=float,
        default=None,
        help="with --view: close the viewer this many seconds after the stream (default: stay open)",
    )
    p.add_argument(
        "--no-text", action="store_true", help="switch off speech recognition and text features"
    )
    p.add_argument("--seconds", type=float, help="stop after this many seconds")
    p.add_argument(
        "--out", metavar="NPY", help="also save the predictions, (seconds, n_outputs) float32"
    )
    p.add_argument("--record", metavar="H5", help="also write a recording (HDF5, as `record`)")
    add_roi_argument(p)


def add_roi_argument(p) -> None:
    p.add_argument(
        "--roi",
        nargs=2,
        metavar=("LH", "RH"),
        help="left and right annotations (.annot or .label.gii): also publish each second's "
        "region means on the tribe.roi topic",
    )


def publish_options(args) -> PublishOptions | None:
    """The `--publish` group of options as data; None for `--publish none`."""
    from tribe_stream.stream.producer import PublishOptions

    if args.publish in (None, "none"):
        if getattr(args, "roi", None):
            from tribe_stream.errors import InputError

            raise InputError("--roi publishes region means: it needs --publish URL, not none")
        return None
    return PublishOptions(
        url=args.publish,
        dtype=args.dtype,
        stream_id=args.stream_id,
        curve_secret=args.curve_secret,
        allow_clients=tuple(args.allow_client) if args.allow_client else None,
        roi=tuple(args.roi) if args.roi else None,
    )


def stream_options(args):
    """The `StreamOptions` of `run`'s and `serve`'s shared stream arguments."""
    from tribe_stream.stream.producer import StreamOptions

    return StreamOptions(
        checkpoint=args.checkpoint,
        lag=args.lag,
        engine=args.engine,
        device=args.device,
        dtype=args.model_dtype,
        text=not args.no_text,
        audio_context=args.audio_context,
        video_fp8=video_fp8(args),
        realtime=not args.fast,
        seconds=args.seconds,
    )


def run(args) -> int:
    from tribe_stream.stream.producer import Media, Stream

    options = stream_options(args)
    stream = Stream(Media(file=args.file, camera=args.camera, mic=args.mic), options)
    publish = publish_options(args)
    if publish is not None:
        stream.publish(publish)
    if args.record:
        stream.record(args.record)
    if args.view:
        stream.view(linger=args.linger)
    return run_stream(stream, out=args.out, total=args.seconds)


def run_stream(stream: Stream, *, out: str | None = None, total: float | None = None) -> int:
    """Run `stream` with a progress line; write `out` (.npy, (seconds, n_outputs) float32) at
    the end, also after a signal. Returns the exit code."""
    import logging
    import signal

    import numpy as np

    from tribe_stream.commands import stop_on_signals
    from tribe_stream.errors import InputError
    from tribe_stream.outputs import check_output, save_npy
    from tribe_stream.stream.progress import ProgressLine

    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    out_path = check_output(out, (".npy",)) if out else None  # before any model loads
    values: list = []
    signals = stop_on_signals(on_stop=stream.stop)
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
    except KeyboardInterrupt:  # a second Ctrl-C
        signals.signal = signal.SIGINT
    c = stream.counters
    if signals.signal is not None:
        print(f"\nstopped by {signals.signal.name}", flush=True)
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
        _write_sidecar(written, stream, len(values))
        print(f"wrote {written}: {len(values)} seconds", flush=True)
    if signals.signal is not None:
        return signals.code
    if not values:
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
