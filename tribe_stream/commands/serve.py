"""`tribe-stream serve`: several live streams in one process, one copy of every model.

Each `--file` is a stream of its own, and so is each `--camera` with the `--mic` of its rank
(`--streams N`: N copies of one file, for benchmarks), named `ID-0`, `ID-1`, ... (`--stream-id
ID`, default `tribe-stream`) on one publisher; every header carries its stream's `stream_id` and `seq` counts per stream.
"""

from __future__ import annotations

from tribe_stream.options import number

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
    p.add_argument("--out", metavar="DIR", help="also save each stream's predictions, ID.npy")


def media_list(args) -> list:
    """The streams the arguments name (`run.media_list`), `--streams N` copies of one file."""
    from tribe_stream.commands.run import media_list
    from tribe_stream.errors import InputError

    if args.streams > 1 and (len(args.file or []) != 1 or args.camera or args.mic):
        raise InputError("--streams N copies one file: give exactly one --file with it")
    from dataclasses import replace

    return [replace(m) for _ in range(args.streams) for m in media_list(args)]


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from tribe_stream.commands import stop_on_signals
    from tribe_stream.commands.run import stream_from_args
    from tribe_stream.errors import InputError
    from tribe_stream.outputs import save_npy

    stream = stream_from_args(args, media_list(args))
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
