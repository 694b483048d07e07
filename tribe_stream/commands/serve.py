"""`tribe-stream serve`: several live streams in one process, one copy of every model.

Each `--file`, `--camera` and `--mic` is a stream of its own (`--streams N`: N copies of one
file, for benchmarks), named `ID-0`, `ID-1`, ... (`--stream-id ID`, default `tribe-stream`) on
one publisher; every header carries its stream's `stream_id` and `seq` counts per stream.
"""

from __future__ import annotations

from tribe_stream.commands import add_video_fp8_arguments, number

NAME = "serve"
HELP = "run several live streams (cameras, microphones, files) on one set of models"


def add_arguments(p) -> None:
    from tribe_stream.commands.run import add_roi_argument
    from tribe_stream.protocol import add_publisher_arguments

    p.add_argument(
        "--checkpoint", required=True, help="model folder, .safetensors, hub id, or `demo`"
    )
    p.add_argument("--file", action="append", default=[], help="a media file; repeat")
    p.add_argument("--camera", action="append", default=[], metavar="DEV", help="repeat")
    p.add_argument("--mic", action="append", default=[], metavar="DEV", help="repeat")
    p.add_argument(
        "--streams",
        type=number(int, minimum=1, maximum=64),
        default=1,
        help="with one --file: that many copies of it, each its own stream",
    )
    p.add_argument("--fast", action="store_true", help="files as fast as possible")
    p.add_argument("--lag", type=float, default=0.0, help="seconds of right-hand context")
    p.add_argument("--audio-context", type=float, default=30.0, help="seconds (default 30)")
    p.add_argument("--engine", default=None, help="torch, compiled, onnx, tensorrt")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--model-dtype", default=None, help="float32, float16, bfloat16")
    add_video_fp8_arguments(p)
    p.add_argument("--no-text", action="store_true", help="no speech recognition or text")
    p.add_argument("--seconds", type=number(above=0), help="stop after this many seconds")
    p.add_argument("--out", metavar="DIR", help="also save each stream's predictions, ID.npy")
    add_publisher_arguments(p)
    add_roi_argument(p)


def media_list(args) -> list:
    """The streams the arguments name, as `Media` (checked: one line for a bad combination)."""
    from tribe_stream.errors import InputError
    from tribe_stream.stream.producer import Media

    if args.streams > 1 and (len(args.file) != 1 or args.camera or args.mic):
        raise InputError("--streams N copies one file: give exactly one --file with it")
    medias = [Media(file=f) for f in args.file * args.streams]
    medias += [Media(camera=c) for c in args.camera] + [Media(mic=m) for m in args.mic]
    if not medias:
        raise InputError("nothing to serve: give --file, --camera or --mic (each one a stream)")
    return medias


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from tribe_stream.commands import stop_on_signals
    from tribe_stream.commands.run import publish_options, stream_options
    from tribe_stream.errors import InputError
    from tribe_stream.outputs import save_npy
    from tribe_stream.stream.producer import Stream

    stream = Stream(media_list(args), stream_options(args))
    publish = publish_options(args)
    if publish is not None:
        stream.publish(publish)
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is a file; give a folder for the ID.npy files")
    values: dict[str, list] = {}
    signals = stop_on_signals(on_stop=stream.stop)
    with stream.open() as running:
        for note in stream.notes:
            print(note, flush=True)
        print(f"serving {len(stream.pipelines)} streams", flush=True)
        last = -1
        for p in running:
            values.setdefault(str(p.stream_id), []).append(p.values)
            if p.second > last:  # one line per second of the newest stream
                last = p.second
                behind = max(q.counters["behind_s"] for q in stream.pipelines)
                drops = sum(
                    q.counters["dropped_bins"] + q.counters["dropped_seconds"]
                    for q in stream.pipelines
                )
                print(
                    f"second {p.second + 1}: {len(values)} streams, behind at most "
                    f"{behind:.2f} s, drops {int(drops)}",
                    flush=True,
                )
    for q in stream.pipelines:
        c = q.all_counters()
        print(
            f"{q.stream_id}: {int(c['predictions'])} predictions, dropped "
            f"{int(c['dropped_bins'])} bins and {int(c['dropped_seconds'])} seconds, "
            f"{int(c['extractor_errors'] + c['engine_errors'])} errors"
            + (", failed" if c.get("stream_failed") else ""),
            flush=True,
        )
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for sid, rows in values.items():
            save_npy(out_dir / f"{sid}.npy", np.stack(rows).astype(np.float32))
        print(f"wrote {len(values)} files to {out_dir}", flush=True)
    if signals.signal is not None:
        return signals.code
    if not values:
        raise InputError("no prediction was made: the media gave less than one whole second")
    return 0
