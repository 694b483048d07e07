"""Assemble and run a live stream from user options: the code behind `run` and `demo`."""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tribe_stream import AUDIO_RATE
from tribe_stream.stream.clock import StreamClock
from tribe_stream.stream.pipeline import Extractors, Pipeline, PipelineConfig
from tribe_stream.stream.progress import ProgressLine

log = logging.getLogger("tribe_stream.live")

DEFAULT_URL = "tcp://127.0.0.1:5556"


@dataclass
class LiveOptions:
    checkpoint: str
    file: str | None = None
    camera: str | None = None
    mic: str | None = None
    demo_seconds: float | None = None
    lag: float = 0.0
    engine: str | None = None
    """Brain-model engine; None: `compiled` on a GPU (one static window replayed as CUDA graphs:
    1.6 ms a call on an H100, where eager took 64 ms at the ever-new window lengths of a live
    stream's first 100 s), `torch` on a CPU."""
    device: str | None = None
    dtype: str | None = None
    publish: str | None = None
    view: bool = False
    realtime: bool = True
    text: bool = True
    out: str | None = None
    seconds: float | None = None
    audio_context: float = 30.0
    video_fp8: bool = False
    """The video encoder's matrix products in FP8 (GPU: faster, features within about 2%)."""
    linger: float | None = None
    """With a viewer: seconds it stays open after the stream ends (None: until it is closed)."""
    publish_args: object | None = None
    """The `run` command's publishing options (payload dtype, stream id, CURVE keys)."""


def _device(opts: LiveOptions) -> tuple[str, str]:
    from tribe_stream.devices import dtype_name, pick_device, pick_dtype

    device = pick_device(opts.device)
    return device, dtype_name(pick_dtype(device, opts.dtype))


def default_engine(engine: str | None, device: str) -> str:
    """The brain-model engine a live run uses: the one asked for, else `compiled` on a GPU (a live
    window's length changes every second for 100 s; eager pays for each new length) and `torch`
    on a CPU (compiling costs more there than it saves)."""
    return engine or ("compiled" if device.startswith("cuda") else "torch")


def load_stream_extractors(
    opts: LiveOptions, loaded, device: str, want: tuple[str, ...]
) -> Extractors:
    """The extractors the checkpoint's config names (or the demo's), for the media at hand."""
    from tribe_stream.extractors.asr import asr_available

    text_ok = opts.text and "text" in want
    reason = asr_available() if text_ok else None
    if text_ok and reason:
        print(f"text features off: speech recognition unavailable ({reason})", flush=True)
        text_ok = False
    mods = tuple(m for m in ("audio", "video") if m in want) + (("text",) if text_ok else ())
    if opts.checkpoint == "demo":
        from tribe_stream.extractors.demo import load_demo_extractors

        found = load_demo_extractors(device=device, modalities=mods, video_fp8=opts.video_fp8)
    else:
        from tribe_stream.extractors.config import from_experiment
        from tribe_stream.extractors.suite import load_extractors

        found = load_extractors(
            from_experiment(loaded.experiment),
            device=device,
            modalities=mods,
            compile=device.startswith("cuda"),
            video_fp8=opts.video_fp8,
        )
    asr = None
    if "text" in found:
        from tribe_stream.extractors.asr import LiveASR, WhisperASR

        asr = LiveASR(WhisperASR())
    return Extractors(
        video=found.get("video"), audio=found.get("audio"), text=found.get("text"), asr=asr
    )


def _sources(opts: LiveOptions, clock: StreamClock, tmp: Path):
    if opts.checkpoint == "demo" and not (opts.file or opts.camera or opts.mic):
        from tribe_stream.sources.clip import make_clip

        opts.file = str(make_clip(tmp / "demo-clip.mp4", opts.demo_seconds or 10.0))
    if opts.file:
        from tribe_stream.sources.replay import FileReplay

        src = FileReplay(opts.file, clock=clock, realtime=opts.realtime, max_size=292)
        kinds = src.kinds()
        want = (("video",) if "video" in kinds else ()) + (
            ("audio", "text") if "audio" in kinds else ()
        )
        return [src], want
    sources, want = [], ()
    if opts.camera:
        from tribe_stream.sources.camera import open_camera

        sources.append(open_camera(opts.camera, clock=clock, max_size=292))
        want += ("video",)
    if opts.mic:
        from tribe_stream.sources.microphone import MicrophoneSource

        device = (
            None if opts.mic == "default" else (int(opts.mic) if opts.mic.isdigit() else opts.mic)
        )
        sources.append(MicrophoneSource(device, clock=clock))
        want += ("audio", "text")
    return sources, want


def warm_up(extractors: Extractors, engine, audio_context: float) -> None:
    """Run every model once before the clock starts, so that compiling (seconds on a GPU) is
    never mistaken for the stream falling behind."""
    t = time.perf_counter()
    try:
        if extractors.video is not None:
            frames = np.zeros((4, 256, 256, 3), np.uint8)
            extractors.video.extract([1.0, 1.5], frames, np.arange(4) / 4)  # two bins a pass
            extractors.video.extract([1.5], frames, np.arange(4) / 4)  # and one, as live bins come
        if extractors.audio is not None:  # through the live path: its CUDA graph is captured here
            live = extractors.audio.live(audio_context)
            live.feed(np.zeros(int(audio_context * AUDIO_RATE), np.float32), 0.0)
            n = int(audio_context * 2)
            live.extract([n - 2, n - 1])
        window = {
            m: np.zeros((*engine.config.feature_dims[m], 200), np.float32)
            for m in extractors.active()
        }
        engine.run(window, rows=[99])
    except Exception as exc:  # noqa: BLE001 - warming up is an optimisation; the stream will say more
        log.warning(
            "warm-up failed (%s: %s); the first seconds may be slow", type(exc).__name__, exc
        )
    log.info("models warmed up in %.1f s", time.perf_counter() - t)


def _close_viewer(viewer: subprocess.Popen, linger: float | None) -> None:
    if linger is None:
        print("stream ended; close the viewer window to exit", flush=True)
    try:
        viewer.wait(timeout=linger)
    except subprocess.TimeoutExpired:
        viewer.terminate()
        viewer.wait(timeout=10)
    except KeyboardInterrupt:
        viewer.terminate()


def run_live(opts: LiveOptions) -> int:
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    from tribe_stream.engines import make_engine
    from tribe_stream.model.loading import load_brain_model

    device, dtype = _device(opts)
    clock = StreamClock()
    sinks, viewer = [], None
    with tempfile.TemporaryDirectory(prefix="tribe-stream-") as tmpdir:
        sources, want = _sources(opts, clock, Path(tmpdir))
        loaded = load_brain_model(opts.checkpoint)
        engine_name = default_engine(opts.engine, device)
        engine = make_engine(engine_name, loaded, device=device, dtype=dtype)
        extractors = load_stream_extractors(opts, loaded, device, want)
        active = extractors.active()
        print(
            f"modalities: {', '.join(active) or 'none'}; engine {engine_name} on {device} ({dtype}); lag {opts.lag:g} s",
            flush=True,
        )
        url = opts.publish or (DEFAULT_URL if opts.view else None)
        if url:
            from tribe_stream.publish import Publisher, publisher_from_args

            if opts.publish_args is not None:
                pub = publisher_from_args(opts.publish_args, model=loaded.identity, clock=clock)
            else:
                pub = Publisher(url, model=loaded.identity, clock=clock)
            sinks.append(pub)
            print(f"publishing on {pub.url}", flush=True)
        if opts.view and url:
            viewer = subprocess.Popen([sys.executable, "-m", "tribe_stream.cli", "view", url])
            time.sleep(1.0)  # let the viewer connect before the first second
        warm_up(extractors, engine, opts.audio_context)
        config = PipelineConfig(
            lag=opts.lag, live=opts.realtime, audio_context_s=opts.audio_context
        )
        pipe = Pipeline(sources, engine, extractors, sinks=sinks, config=config, clock=clock)
        progress = ProgressLine(total=opts.demo_seconds or opts.seconds)
        values = []

        def on_prediction(p):
            values.append(p.values)
            progress.update(p)

        try:
            pipe.run(seconds=opts.seconds, on_prediction=on_prediction)
        except KeyboardInterrupt:
            print("\nstopped", flush=True)
        finally:
            progress.close()
            for s in sinks:
                s.close()
            if viewer is not None:
                _close_viewer(viewer, opts.linger)
    c = pipe.all_counters()
    print(
        f"done: {int(c['predictions'])} predictions, {int(c['bins'])} bins, dropped {int(c['dropped_bins'])} bins "
        f"and {int(c['dropped_seconds'])} seconds, {int(c['extractor_errors'] + c['engine_errors'])} errors",
        flush=True,
    )
    if opts.out and values:
        np.save(opts.out, np.stack(values).astype(np.float32))
        print(f"wrote {opts.out}", flush=True)
    return 0
