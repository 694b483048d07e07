"""`tribe-stream web`: the cortex in a browser, live; with --capture, from the browser's camera."""

from __future__ import annotations

from tribe_stream.options import ServeOptions, StreamOptions, add_options, from_args, number

NAME = "web"
HELP = (
    "serve a web page that shows a stream live (WebGL cortex, HUD, region bars); --capture runs "
    "the pipeline on the browser's own camera and microphone"
)


def add_arguments(p) -> None:
    from tribe_stream.protocol import DEFAULT_URL, add_subscriber_arguments
    from tribe_stream.surface.colors import COLORMAPS
    from tribe_stream.surface.views import VIEWS

    p.add_argument(
        "url",
        nargs="?",
        default=DEFAULT_URL,
        help=f"ZeroMQ stream to show (default {DEFAULT_URL}); with --capture, where it publishes",
    )
    p.add_argument(
        "--port",
        type=number(int, minimum=0, maximum=65535),
        default=8080,
        help="HTTP port (default 8080; 0: any free port)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to serve on (default 127.0.0.1; others need the token)",
    )
    p.add_argument("--token", help="access token (beyond loopback one is made if not given)")
    p.add_argument(
        "--cert",
        metavar="PEM",
        help="TLS certificate: serve https (needed for a remote browser's camera)",
    )
    p.add_argument("--key", metavar="PEM", help="the TLS certificate's private key")
    p.add_argument("--view", default="both", choices=list(VIEWS), help="starting view")
    p.add_argument("--cmap", default="cold_hot", choices=list(COLORMAPS), help="colormap")
    p.add_argument(
        "--threshold-pct",
        type=number(minimum=0, maximum=100),
        default=50.0,
        help="hide |values| below this percentile (default 50)",
    )
    p.add_argument(
        "--transition",
        type=number(minimum=0),
        default=0.5,
        help="cross-fade seconds between predictions (default 0.5)",
    )
    add_subscriber_arguments(p)
    g = p.add_argument_group("capture (the browser's camera and microphone)")
    g.add_argument(
        "--capture",
        action="store_true",
        help="run the live pipeline on what the page captures and show its predictions",
    )
    add_options(g, StreamOptions, skip=("realtime", "seconds"))  # a page: live, until stopped
    add_options(g, ServeOptions)


def run(args) -> int:
    import asyncio
    import threading

    from tribe_stream.commands import EXIT_CODES
    from tribe_stream.errors import InputError
    from tribe_stream.web.server import WebOptions, WebServer, require_web

    require_web()
    stream = from_args(StreamOptions, args)
    serve = from_args(ServeOptions, args).validate()
    if args.capture:
        stream.validate()  # before anything loads
    elif stream != StreamOptions() or serve != ServeOptions():
        raise InputError(
            "the model's options are for --capture; without it the page shows URL's stream"
        )
    subscriber = {}
    if args.curve_server_key or args.curve_keypair:
        subscriber = {
            "curve_server_key": args.curve_server_key,
            "curve_keypair": args.curve_keypair,
        }
    options = WebOptions(
        url=args.url,
        host=args.host,
        port=args.port,
        token=args.token,
        capture=args.capture,
        cert=args.cert,
        key=args.key,
        view=args.view,
        cmap=args.cmap,
        threshold_pct=args.threshold_pct,
        transition_s=args.transition,
        subscriber=subscriber,
    ).validate()
    options.ssl_context()  # a bad certificate fails now, in one line
    engine = _engine(stream, options, serve.max_streams) if args.capture else None
    server = WebServer(options, engine)
    got: list[int] = []

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            for sig in EXIT_CODES:
                loop.add_signal_handler(sig, lambda s=sig: (got.append(s), stop.set()))

        def ready(url: str) -> None:
            print(f"web viewer on {url}  (stream {options.url})", flush=True)
            if not options.local:
                print(
                    "  beyond loopback: share the URL with its token; it is the only key",
                    flush=True,
                )

        await server.serve(stop, on_ready=ready)

    try:
        asyncio.run(main())
    finally:
        if engine is not None:
            engine.close()
    return EXIT_CODES[got[0]] if got else 0


def _engine(stream: StreamOptions, options, max_streams: int | None):
    from tribe_stream.options import PublishOptions
    from tribe_stream.web.capture import CaptureEngine

    print(
        f"loading the models ({stream.checkpoint}) and warming them up; the page is served "
        "once they are ready (on a CPU this takes a minute)",
        flush=True,
    )
    engine = CaptureEngine(stream, PublishOptions(url=options.url), max_streams)
    for note in engine.open():
        print(note, flush=True)
    return engine
