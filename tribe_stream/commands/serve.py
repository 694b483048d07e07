"""`tribe-stream serve`: several live streams in one process, one copy of every model.

Each `--file` is a stream of its own, and so is each `--camera` with the `--mic` of its rank
(`--streams N`: N copies of one file, for benchmarks), named `ID-0`, `ID-1`, ... (`--stream-id
ID`, default `tribe-stream`) on one publisher; every header carries its stream's `stream_id` and `seq` counts per stream.

`--control tcp://127.0.0.1:PORT` keeps it serving until Ctrl-C, also with no stream, and takes
streams that come and go (add a file or camera, end one: `stream/control.py`); `--max-streams N`
answers one more "busy, try again". A stream that ends writes its `--out` file then.

`--ray [ADDRESS]` spreads the streams over Ray Serve replicas (`cluster/serve_ray.py`,
docs/CLUSTER.md): `--replicas N` (default one per GPU, else 1), `--max-streams N` each; every
stream publishes on its replica's URL (printed), and `--control` takes the same requests.
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
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="spread the streams over Ray Serve replicas (docs/CLUSTER.md): no address or "
        "`local` starts a local cluster, `auto` joins the running one, HOST:PORT its head",
    )
    p.add_argument(
        "--replicas",
        type=number(int, minimum=1, maximum=1024),
        help="with --ray: how many (default: one per GPU of the cluster, else 1), each serving "
        "--max-streams streams",
    )


def media_list(args) -> list:
    """The streams the arguments name (`run.media_list`), `--streams N` copies of one file."""
    from tribe_stream.commands.run import media_list
    from tribe_stream.errors import InputError

    if args.streams > 1 and (len(args.file or []) != 1 or args.camera or args.mic):
        raise InputError("--streams N copies one file: give exactly one --file with it")
    from dataclasses import replace

    if getattr(args, "control", None) and not (args.file or args.camera or args.mic):
        return []  # streams come through the control endpoint
    medias = [replace(m) for _ in range(args.streams) for m in media_list(args)]
    if len(medias) == 1:  # named as its publisher names it (several are NAME-0, NAME-1, ...)
        medias[0] = replace(
            medias[0], stream_id=medias[0].stream_id or args.stream_id or "tribe-stream"
        )
    return medias


def run(args) -> int:
    import time

    import numpy as np

    from tribe_stream.commands import stop_on_signals
    from tribe_stream.commands.run import stream_from_args
    from tribe_stream.errors import InputError
    from tribe_stream.outputs import check_output_folder, save_npy
    from tribe_stream.stream.control import ControlServer, check_control_url

    serve = from_args(ServeOptions, args).validate()
    if args.control:
        check_control_url(args.control)
    if args.ray is not None:
        return run_ray(args, serve)
    if args.replicas is not None:
        raise InputError("--replicas N spreads streams over Ray Serve: add --ray (docs/CLUSTER.md)")
    out_dir = None  # checked now, made with the first file (bad media leave no empty folder)
    if args.out:
        out_dir = check_output_folder(args.out, "the streams' ID.npy files", make=False)
    stream = stream_from_args(args, media_list(args))
    if args.control or serve.max_streams is not None:
        stream.serve(serve.max_streams)
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


def check_ray_args(args) -> None:
    """`serve --ray`'s refusals, each one line, before any cluster starts."""
    import importlib.util

    from tribe_stream.errors import InputError
    from tribe_stream.options import PublishOptions, StreamOptions

    publish = from_args(PublishOptions, args)
    refused = {
        "--streams N": args.streams > 1,
        "--out DIR": args.out,
        "--publish URL": publish.url,
        "--payload-dtype": publish.payload_dtype != "float16",
        "--curve-secret": publish.curve_secret or publish.allow_clients,
        "--roi": publish.roi or publish.regions,
        "--device": from_args(StreamOptions, args).device,
    }
    why = {
        "--streams N": "add each stream with --file (or through --control)",
        "--out DIR": "subscribe to the URLs it prints (tribe_stream.client.Subscriber) instead",
        "--device": "Ray gives each replica its GPU (or CPU on a cluster without GPUs)",
    }
    for flag, given in refused.items():
        if given:
            raise InputError(
                f"serve --ray: {flag} is not taken there; "
                + why.get(flag, "each replica publishes every second on its own node's URL")
            )
    if not (args.file or args.camera or args.mic or args.control):
        raise InputError("nothing to serve: pass --file FILE (or --camera DEV), or --control URL")
    if importlib.util.find_spec("ray") is None:
        from tribe_stream.errors import install_hint

        raise InputError(f"serve --ray needs Ray Serve: {install_hint('ray')}")


def run_ray(args, serve: ServeOptions) -> int:
    """`serve --ray`: a `LiveCluster` serving the streams the arguments name and those the
    control endpoint adds, until Ctrl-C (130) or, without --control, until they all ended."""
    import os
    import signal
    from dataclasses import asdict

    from tribe_stream.cluster.serve_ray import LiveCluster
    from tribe_stream.commands import stop_on_signals
    from tribe_stream.errors import InputError
    from tribe_stream.options import StreamOptions
    from tribe_stream.stream.control import ControlServer

    check_ray_args(args)
    options = from_args(StreamOptions, args).validate()
    local = args.ray == "local"
    media = [
        {k: v for k, v in asdict(m.validate() if local or m.file else m).items()
         if k in ("file", "camera", "mic") and v}
        for m in media_list(args)
    ]  # fmt: skip
    for m in media:
        if m.get("file"):
            m["file"] = os.path.abspath(m["file"])
    if not local and any("file" not in m for m in media):
        print(
            "note: a camera or microphone opens on the node of the replica it lands on; only "
            "files (on a shared folder) mean the same on every node",
            flush=True,
        )
    cluster = LiveCluster(
        options,
        address=args.ray,
        replicas=args.replicas,
        max_streams=serve.max_streams,
        name=args.stream_id or "tribe-stream",
    )
    where = "a local Ray cluster" if local else f"the Ray cluster at {args.ray}"
    print(f"starting the replicas on {where}", flush=True)
    control = ControlServer(cluster, args.control) if args.control else None  # busy till started
    early = stop_on_signals(  # a Ctrl-C while Ray starts stops once it has (then shut down)
        on_stop=lambda: os.write(2, b"stopping once the cluster has started (Ctrl-C again: now)\n")
    )
    started = False
    try:
        started = bool(cluster.start())
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, what had started shut down
        print("stopped by SIGINT", flush=True)
        return 130
    finally:
        if control is not None and not started:
            control.close()
    signals = stop_on_signals()  # after Ray's start, which sets a SIGTERM handler of its own
    if early.signal is not None:
        signals.signal = early.signal
        signals.set()
    try:
        n = len(cluster.urls)
        print(f"{n} replica{'s' * (n != 1)}: {', '.join(cluster.urls.values())}", flush=True)
        print(f"status on {cluster.status_url} (the streams of a lost replica end)", flush=True)
        for m in media * (not signals.is_set()):
            got = cluster.add(m)
            if "url" not in got and not got.get("busy"):
                raise InputError(f"{next(iter(m.values()))}: {got['error']}")
            where = f"on {got['url']}" if "url" in got else f"not started: {got['error']}"
            print(f"{got.get('stream_id', m)} {where}", flush=True)
        if control is not None:
            print(f"control on {args.control} (add, end, list)", flush=True)
        told = 0
        while not signals.wait(1.0):
            for sid in cluster.ended[told:]:
                placed = cluster.streams.get(sid)
                again = f"restarted on {placed.url}" if placed else "ended"
                print(f"{sid}: its replica was lost; {again}", flush=True)
            told = len(cluster.ended)
            if control is None and not cluster.list():
                break  # every stream named ended
    except KeyboardInterrupt:  # a second Ctrl-C
        signals.signal = signals.signal or signal.SIGINT
    finally:
        if control is not None:
            control.close()
        cluster.close()
    if signals.signal is not None:
        print(f"stopped by {signals.signal.name}", flush=True)
        return signals.code
    return 0
