"""`tribe-stream run`: camera and/or microphone (or a file) in, one prediction per second out."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tribe_stream.stream.producer import PublishOptions

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
    p.add_argument(
        "--video-fp8",
        action="store_true",
        help="video encoder's matrix products in FP8 (H100/Ada: ~15%% faster, features within ~2%%)",
    )
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


def publish_options(args) -> PublishOptions | None:
    """The `--publish` group of options as data; None for `--publish none`."""
    from tribe_stream.stream.producer import PublishOptions

    if args.publish in (None, "none"):
        return None
    return PublishOptions(
        url=args.publish,
        dtype=args.dtype,
        stream_id=args.stream_id,
        curve_secret=args.curve_secret,
        allow_clients=tuple(args.allow_client) if args.allow_client else None,
    )


def run(args) -> int:
    from tribe_stream.stream.live import run_stream
    from tribe_stream.stream.producer import Media, Stream, StreamOptions

    options = StreamOptions(
        checkpoint=args.checkpoint,
        lag=args.lag,
        engine=args.engine,
        device=args.device,
        dtype=args.model_dtype,
        text=not args.no_text,
        audio_context=args.audio_context,
        video_fp8=args.video_fp8,
        realtime=not args.fast,
        seconds=args.seconds,
    )
    stream = Stream(Media(file=args.file, camera=args.camera, mic=args.mic), options)
    publish = publish_options(args)
    if publish is not None:
        stream.publish(publish)
    if args.record:
        stream.record(args.record)
    if args.view:
        stream.view(linger=args.linger)
    return run_stream(stream, out=args.out, total=args.seconds)
