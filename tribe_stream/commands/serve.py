"""`tribe-stream serve`: several live streams in one process, one copy of every model.

Each `--file` is a stream of its own, and so is each `--camera` with the `--mic` of its rank
(`--streams N`: N copies of one file, for benchmarks), named `ID-0`, `ID-1`, ... (`--stream-id
ID`, default `tribe-stream`) on one publisher; every header carries its stream's `stream_id` and `seq` counts per stream.

`--control tcp://127.0.0.1:PORT` keeps it serving until Ctrl-C, also with no stream, and takes
streams that come and go (add a file or camera, end one: `stream/control.py`); `--max-streams N`
answers one more "busy, try again". A stream that ends writes its `--out` file then.
"""

from __future__ import annotations

from tribe_stream.options import ServeOptions, add_options, from_args, number

NAME = "serve"
HELP = "run several live streams (cameras, microphones, files) on one set of models"


def add_arguments(p) -> None:
    from tribe_stream.commands.run import add_media_arguments, add_stream_arguments

    add_media_arguments(p)
    p.add_argument(
        "--streams",
        type=number(int, minimum=1, maximum=64),
        default=1,
        help="with one --file: that many copies of it, each its own stream",
    )
    add_stream_arguments(p)
    add_options(p, ServeOptions)
    p.add_argument(
        "--control",
        metavar="URL",
        help="keep serving and take streams that come and go: a loopback ZeroMQ endpoint "
        "(tcp://127.0.0.1:PORT) answering add/end/list requests (JSON)",
    )
    p.add_argument("--out", metavar="DIR", help="also save each stream's predictions, ID.npy")


def media_list(args) -> list:
    """The streams the arguments name (`run.media_list`), `--streams N` copies of one file."""
    from tribe_stream.commands.run import media_list
    from tribe_stream.errors import InputError

    if args.streams > 1 and (len(args.file or []) != 1 or args.camera or args.mic):
        raise InputError("--streams N copies one file: give exactly one --file with it")
    from dataclasses import replace

    if getattr(args, "control", None) and not (args.file or args.camera or args.mic):
        return []  # streams come through the control endpoint
    return [replace(m) for _ in range(args.streams) for m in media_list(args)]


def run(args) -> int:
    import time
    from pathlib import Path

    import numpy as np

    from tribe_stream.commands import stop_on_signals
    from tribe_stream.commands.run import stream_from_args
    from tribe_stream.errors import InputError
    from tribe_stream.outputs import save_npy
    from tribe_stream.stream.control import ControlServer, check_control_url

    serve = from_args(ServeOptions, args).validate()
    if args.control:
        check_control_url(args.control)
    stream = stream_from_args(args, media_list(args))
    if args.control or serve.max_streams is not None:
        stream.serve(serve.max_streams)
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is a file; give a folder for the ID.npy files")
    values: dict[str, list] = {}
    written: list[str] = []

    def write(sid: str) -> None:
        rows = values.pop(sid)
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            save_npy(out_dir / f"{sid}.npy", np.stack(rows).astype(np.float32))
        written.append(sid)

    signals = stop_on_signals(on_stop=stream.stop)
    control = None
    with stream.open() as running:
        for note in stream.notes:
            print(note, flush=True)
        if args.control:
            control = ControlServer(stream, args.control)
            print(f"control on {args.control} (add, end, list)", flush=True)
        print(f"serving {len(stream.pipelines)} streams", flush=True)
        last = -1.0
        try:
            for p in running:
                values.setdefault(str(p.stream_id), []).append(p.values)
                now = time.monotonic()
                if now - last >= 1.0:  # one line a second
                    last = now
                    counters = stream.server.all_counters()
                    live = stream.server.ids()
                    for sid in [s for s in values if s not in live]:
                        write(sid)  # that stream ended: its file now, its rows let go
                    behind = max((c["behind_s"] for c in counters.values()), default=0.0)
                    drops = sum(c["dropped_bins"] + c["dropped_seconds"] for c in counters.values())
                    print(
                        f"second {p.second + 1} of {p.stream_id}: {len(live)} streams, behind "
                        f"at most {behind:.2f} s, drops {int(drops)}",
                        flush=True,
                    )
        finally:
            if control is not None:
                control.close()
    for sid in list(values):
        write(sid)
    for sid, c in stream.server.all_counters().items():
        print(
            f"{sid}: {int(c['predictions'])} predictions, dropped "
            f"{int(c['dropped_bins'])} bins and {int(c['dropped_seconds'])} seconds, "
            f"{int(c['extractor_errors'] + c['engine_errors'])} errors"
            + (", failed" if c.get("stream_failed") else ""),
            flush=True,
        )
    if out_dir is not None:
        print(f"wrote {len(written)} files to {out_dir}", flush=True)
    if signals.signal is not None:
        return signals.code
    if not written:
        raise InputError("no prediction was made: the media gave less than one whole second")
    return 0
