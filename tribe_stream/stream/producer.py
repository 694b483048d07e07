"""The producer side in a few lines: a `Stream` of predictions from a file, devices or the demo.

    from tribe_stream import Stream

    stream = Stream.from_file("clip.mp4", checkpoint="demo").publish("tcp://127.0.0.1:5556")
    for pred in stream:                   # one Prediction per second of media
        print(pred.second, pred.values.shape)

`Stream.from_devices(camera=..., mic=...)` and `Stream.demo(seconds=10)` are the other sources;
`.serve(max_streams=N)` keeps it serving until `stop()`, taking streams that come and go
(`add(Media(...))`, `end(stream_id)`, from any thread; `ServerBusy` beyond N);
`.publish(url)`, `.record(path)` and `.view()` add where predictions go and return the stream, so
they chain. Options are dataclasses (`StreamOptions`, `PublishOptions`), checked when the stream
is made, before any model loads; the `run` and `demo` commands only parse arguments into them.
Iterating opens the stream (models, sources, sinks), runs it until its media ends (or
`seconds`, or `stop()` from any thread or a signal handler) and closes everything, also when
the loop is left early.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from tribe_stream import AUDIO_RATE, MAX_TOKENS
from tribe_stream.errors import InputError, install_hint
from tribe_stream.options import PublishOptions, StreamOptions, check_seconds
from tribe_stream.protocol import DEFAULT_URL
from tribe_stream.types import Prediction, Sink

log = logging.getLogger("tribe_stream.stream")


@dataclass
class Media:
    """What feeds a stream: a file, a camera and/or a microphone, or the generated demo clip."""

    file: str | None = None
    camera: str | None = None
    mic: str | None = None
    demo_seconds: float | None = None
    stream_id: str | None = None
    """Its name in the headers when one Stream serves several media (default: `ID-i`)."""
    start_s: float = 0.0
    """When it starts, seconds after the first stream (independent sources start at unrelated
    times): a Stream of media starting apart gives each its own clock, zero at its own start."""
    words: list | None = None
    """Words with their times, fed live when the clock passes each word's end (`WordSource`)."""
    source: Any = None
    """A ready source object (e.g. `sources.browser.BrowserSource`) with `kinds()`, used alone;
    the stream gives it its clock before starting it."""

    def validate(self) -> Media:
        if self.file and (self.camera or self.mic):
            raise InputError("a file replays a recording; use it without a camera or microphone")
        if not (isinstance(self.start_s, int | float) and 0 <= self.start_s < 3600):
            raise InputError(f"start_s {self.start_s!r}: give seconds from 0 to 3600")
        if self.demo_seconds is not None:
            check_seconds("--seconds", self.demo_seconds)
        elif not (self.file or self.camera or self.mic or self.source is not None):
            raise InputError("nothing to listen to: pass --camera DEV, --mic DEV, or --file FILE")
        if self.camera:
            from tribe_stream.sources.camera import check_camera

            check_camera(self.camera)  # a missing device fails here, before models load
        if self.mic:
            from tribe_stream.sources.microphone import check_microphone

            check_microphone(self.mic)
        if self.file:  # a missing or unreadable file fails here, before models load
            from tribe_stream.media import probe_stimulus

            probe_stimulus(self.file)
        return self


class Stream:
    """A live stream of predictions (see the module docs). Not thread-safe, except `stop()`."""

    def __init__(
        self,
        media: Media | Sequence[Media] = (),
        options: StreamOptions | None = None,
        **overrides: Any,
    ):
        self.medias = [media] if isinstance(media, Media) else list(media)
        for m in self.medias:
            m.validate()
        self.media = self.medias[0] if self.medias else Media()
        """The first (or only) stream's media; `medias` holds all of them."""
        self._serve: dict | None = None
        self._session: _Session | None = None
        self.options = replace(options or StreamOptions(), **overrides).validate()
        from tribe_stream.models import check_device

        check_device(self.options)  # FP8 on this device: said before any model loads
        self._publish: PublishOptions | None = None
        self._record: Path | None = None
        self._view: dict | None = None
        self._extra_sinks: list[Sink] = []
        self._stop = threading.Event()
        self.pipeline = None
        self.pipelines: list = []
        """One per media (`pipeline` is the first); run together by `server`."""
        self.server = None
        self.publisher = None
        self.notes: list[str] = []
        """What the stream decided while opening (modalities, engine, publishing), to show."""
        self.words = 0
        self.model: dict = {}
        """The brain model's identity once open (`untrained` for demo weights)."""
        self._models: tuple | None = None
        self.capacity = None
        """A serving stream without `max_streams`: what its warm-up measured fits
        (`stream.capacity.Capacity`), once open."""

    # ----- making one -----

    @classmethod
    def from_file(
        cls, path: str | Path, checkpoint: str = "demo", *, realtime: bool = True, **options: Any
    ) -> Stream:
        """Replay a media file (its pictures and sound) through the live pipeline."""
        return cls(
            Media(file=str(path)),
            StreamOptions(checkpoint=checkpoint, realtime=realtime, **options),
        )

    @classmethod
    def from_devices(
        cls,
        camera: str | int | None = None,
        mic: str | int | None = None,
        checkpoint: str = "demo",
        **options: Any,
    ) -> Stream:
        """A camera (`/dev/video0`, `0`, a URL, `lavfi:SPEC`) and/or a microphone (`default`, an
        index or a name)."""
        return cls(
            Media(
                camera=None if camera is None else str(camera),
                mic=None if mic is None else str(mic),
            ),
            StreamOptions(checkpoint=checkpoint, **options),
        )

    @classmethod
    def demo(cls, seconds: float = 10.0, **options: Any) -> Stream:
        """The generated demo clip (moving picture, tones and a spoken sentence) through the
        whole pipeline with small UNTRAINED weights: no downloads, no GPU."""
        options.setdefault("checkpoint", "demo")
        return cls(Media(demo_seconds=seconds), StreamOptions(**options))

    # ----- where predictions go -----

    def publish(self, url: str | PublishOptions = DEFAULT_URL, **options: Any) -> Stream:
        """Publish over ZeroMQ (`PublishOptions` fields as keywords); returns the stream."""
        opts = url if isinstance(url, PublishOptions) else PublishOptions(url=url, **options)
        self._publish = opts.validate()
        return self

    def record(self, path: str | Path, overwrite: bool = False) -> Stream:
        """Also write every prediction to an HDF5 recording (the recorder's layout)."""
        from tribe_stream.outputs import check_output

        if len(self.medias) > 1:
            raise InputError("a recording holds one stream; record each with `tribe-stream record`")
        from importlib.util import find_spec

        if find_spec("h5py") is None:
            raise InputError("recording needs h5py: " + install_hint("record"))
        p = check_output(path, (".h5", ".hdf5"), what="recording")
        if p.exists() and not overwrite:
            raise InputError(f"{p} exists; choose another file (or pass overwrite=True)")
        self._record = p
        return self

    def view(self, linger: float | None = None) -> Stream:
        """Open the live cortical viewer (a window; publishes on loopback if not publishing).
        `linger`: seconds it stays open after the stream ends (None: until closed)."""
        from importlib.util import find_spec

        missing = [m for m in ("vispy", "glfw") if find_spec(m) is None]
        if missing:
            raise InputError(f"the viewer needs {' and '.join(missing)}: " + install_hint("viewer"))
        self._view = {"linger": linger}
        return self

    def serve(self, max_streams: int | None = None) -> Stream:
        """Serve on until `stop()`, also with no stream left: streams come and go with `add` and
        `end` (any thread), at most `max_streams` at once (the models are warmed up for that
        many; None: what fits, measured as it opens, `capacity`); returns the stream. Needs no
        media of its own. Caps glibc's malloc arenas
        (`heap.limit_arenas`, before the models load): streams' short-lived threads otherwise
        spread the heap over up to 8 arenas a core, whose fragments kept resident memory growing."""
        if max_streams is not None and not 1 <= int(max_streams) <= 64:
            raise InputError(f"max_streams {max_streams!r}: give 1 to 64")
        if max_streams is not None and len(self.medias) > int(max_streams):
            raise InputError(
                f"{len(self.medias)} streams given, more than max_streams {max_streams}: give "
                "fewer, or a limit of at least as many"
            )
        from tribe_stream.stream.heap import limit_arenas

        limit_arenas()
        self._serve = {"max_streams": None if max_streams is None else int(max_streams)}
        return self

    def add(self, media: Media) -> str:
        """Start another stream on the open, serving stream (any thread): its own sources,
        clock, speech recogniser and publisher channel; returns its stream id. `ServerBusy`
        (an InputError: "busy, ... try again") when `max_streams` are running."""
        if self._session is None or self.server is None or not self.server.running:
            raise InputError("add streams to a stream that is open and serving (`serve()`)")
        return self._session.add(media.validate())

    def end(self, stream_id: str) -> bool:
        """End the stream `stream_id` (any thread); it gives back its threads, sockets and
        memory. False if no such stream runs."""
        return self.server is not None and self.server.end(stream_id)

    def use_models(self, models, extractors=None) -> Stream:
        """Run on models already loaded (`tribe_stream.models.Models`; `extractors`: this
        stream's own `Extractors`, with its own speech-recognition state) instead of loading
        them, so that several runs, or a run and a `Predictor`, share one copy of the weights."""
        self._models = (models, extractors)
        return self

    def add_sink(self, sink: Sink) -> Stream:
        self._extra_sinks.append(sink)
        return self

    # ----- running -----

    def stop(self) -> None:
        """End the stream soon (after the step in progress); safe from any thread or signal."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def open(self) -> _Session:
        """Load the models, open the sources and sinks: a context manager to iterate over, for
        callers that want to show `notes` before the first second (iterating does this too)."""
        return _Session(self)

    def __iter__(self) -> Iterator[Prediction]:
        with self.open() as session:
            yield from session

    def run(self, on_prediction: Callable[[Prediction], None] | None = None) -> list[Prediction]:
        """Run to the end; every prediction is also passed to `on_prediction`."""
        out = []
        for p in self:
            if on_prediction is not None:
                on_prediction(p)
            out.append(p)
        return out

    @property
    def counters(self) -> dict[str, float]:
        """The pipeline's running counts (predictions, bins, drops, errors, words, ...)."""
        return self.pipeline.all_counters() if self.pipeline is not None else {}


class _Session:
    """One run of a Stream: what it opened, closed again in reverse order."""

    def __init__(self, stream: Stream):
        self.s = stream
        stream._session = self
        self.tmp: tempfile.TemporaryDirectory | None = None
        self._added = 0
        self._add_lock = threading.Lock()
        self.sinks: list[Sink] = []
        self.viewer: subprocess.Popen | None = None
        self._loop: Iterator | None = None  # the server's predictions while they are iterated

    def __enter__(self) -> _Session:
        try:
            self._open()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _open(self) -> None:
        from tribe_stream.clock import StreamClock
        from tribe_stream.models import Models
        from tribe_stream.stream.pipeline import Pipeline, PipelineConfig

        s, o = self.s, self.s.options
        if not s.medias and s._serve is None:
            raise InputError("nothing to listen to: give at least one file, camera or microphone")
        s.notes = []
        clock = StreamClock()
        staggered = any(m.start_s for m in s.medias)  # then each stream has a clock of its own
        clocks = [StreamClock() if staggered else clock for _ in s.medias]
        opened = [self._sources(c, m) for c, m in zip(clocks, s.medias, strict=True)]
        want = tuple(dict.fromkeys(k for _, kinds in opened for k in kinds))
        if s._serve is not None:  # streams to come may bring any medium
            want = ("video", "audio", "text")
        models, extractors = s._models if s._models is not None else (Models(o), None)
        if extractors is None:
            extractors = models.live(want, o.text, s.notes)
        loaded, engine, device, dtype = models.loaded, models.engine, models.device, models.dtype
        engine_name = engine.name
        active = extractors.active()
        s.model = dict(loaded.identity)
        if o.video_clips != 2:  # in every header and recording: not the official features
            s.model["video_clips_per_second"] = o.video_clips
        if models.untrained:
            from tribe_stream.untrained import UNTRAINED_LABEL

            s.notes.append(UNTRAINED_LABEL)
        s.notes.append(
            f"modalities: {', '.join(active) or 'none'}; engine {engine_name} on {device} "
            f"({dtype}); lag {o.lag:g} s"
        )
        publish = s._publish
        if publish is None and s._view is not None:
            publish = PublishOptions().validate()
        ids = [m.stream_id for m in s.medias]
        if len(ids) > 1 or s._serve is not None:
            base = (publish.stream_id if publish is not None else None) or "tribe-stream"
            ids = [sid or f"{base}-{i}" for i, sid in enumerate(ids)]
        self.heads = [models.head(o.subcortical)] if o.subcortical else []
        if publish is not None:
            if ids and ids[0] is not None:
                publish = replace(publish, stream_id=ids[0])
            s.publisher = publish.publisher(model=s.model, clock=(clocks or [None])[0])
            for head in self.heads:  # before anyone subscribes: a recorder's layout is fixed
                s.publisher.add_head(head.space, mask=_mask(head.space, s.notes))
            self.sinks.append(s.publisher)
            s.notes.append(f"publishing on {s.publisher.url}")
        for head in self.heads:
            s.notes.append(f"{head.space.name} head: {o.subcortical} on the same features")
        if s._record is not None:
            from tribe_stream.stream.sinks import RecorderSink

            self.sinks.append(RecorderSink(s._record, model=s.model, clock=clocks[0]))
            s.notes.append(f"recording to {s._record}")
        self._base = (publish.stream_id if publish is not None else None) or "tribe-stream"
        self.sinks += s._extra_sinks
        if s._view is not None:
            self.viewer = subprocess.Popen(
                [sys.executable, "-m", "tribe_stream.cli", "view", s.publisher.url]
            )
            # the viewer subscribes once its window is up: start the stream after that
            if not s.publisher.wait_for_subscribers(1, timeout=20.0):
                log.warning("the viewer has not connected after 20 s; starting anyway")
        limit = (s._serve or {}).get("max_streams")
        most = max(len(opened), limit or 0)
        if s._serve is not None and limit is None:  # what fits (the probe warms what it runs)
            from tribe_stream.stream import capacity

            try:
                probe = partial(capacity.probe, extractors, o, models, Stream, Media)
                s.capacity = capacity.measure(probe, models.device, s._stop)
                if s.capacity is not None:  # None: stopped while it measured
                    limit = most = max(s.capacity.streams, len(opened))
                    s.notes.append(s.capacity.line())
            except Exception as exc:  # noqa: BLE001 - a default, not a reason to stop serving
                s.notes.append(f"no stream limit: measuring what fits failed ({exc}); "
                               "--max-streams N sets one")  # fmt: skip
        if getattr(models, "warmed_for", 0) < most:  # once per set of models and width
            warm_up(extractors, engine, o.audio_context, streams=most)
            models.warmed_for = most
        warm_heads(self.heads, extractors.active(), most)
        if limit and extractors.text is not None:
            # each stream's text steps made now, not when a visitor arrives: on a GPU a new
            # stream's CUDA-graph captures held every other stream up for seconds
            extractors.text.prefill(limit)
        config = PipelineConfig(
            lag=o.lag, live=o.realtime, audio_context_s=o.audio_context,
            video_clips_per_second=o.video_clips,
        )  # fmt: skip
        if o.video_clips == 1 and "video" in extractors.active():
            s.notes.append(
                "video: one V-JEPA2 clip a second for both bins (--video-clips 1), not the "
                "official rate: predictions differ from the official pipeline's"
            )
        self.extractors, self.engine, self.config = extractors, engine, config
        from tribe_stream.stream.serve import Server

        s.pipelines = []
        for i, ((sources, kinds), sid, c) in enumerate(zip(opened, ids, clocks, strict=True)):
            ex = extractors  # the first stream's, or the same models for the next one
            if i or not set(ex.active()) <= set(kinds):
                ex = extractors.for_stream([m for m in extractors.active() if m in kinds])
            sinks = self.sinks
            if i:
                sinks = ([s.publisher.channel(sid, c)] if s.publisher else []) + s._extra_sinks
            s.pipelines.append(
                Pipeline(sources, engine, ex, sinks=sinks, config=config, clock=c, stream_id=sid)
            )
            s.pipelines[-1].heads = self.heads
        s.pipeline = s.pipelines[0] if s.pipelines else None
        serving = s._serve is not None
        s.server = Server(
            s.pipelines,
            clock=StreamClock() if staggered or serving else clock,
            config=config,
            max_streams=limit if serving else None,
        )
        s.server.keep_done = not serving
        s.server.text_batch = o.text_batch == "on"
        s.server.video_overlap = o.video_overlap

    def add(self, media: Media) -> str:
        """A stream more on the running server (`Stream.add`)."""
        from tribe_stream.clock import StreamClock
        from tribe_stream.stream.pipeline import Pipeline

        s = self.s
        if media.demo_seconds is not None:
            raise InputError("add a file, camera, microphone or source; the demo clip runs alone")
        with self._add_lock:
            sid = media.stream_id or f"{self._base}-{len(s.medias) + self._added}"
            self._added += 1
        if sid in s.server.ids():
            raise InputError(f"a stream {sid!r} is running already; give another stream_id")
        s.server.check_room()  # busy: said before anything opens
        clock = StreamClock()
        sources, kinds = self._sources(clock, media)
        ex = self.extractors.for_stream([m for m in self.extractors.active() if m in kinds])
        channel = s.publisher.channel(sid, clock) if s.publisher is not None else None
        sinks = ([channel] if channel is not None else []) + s._extra_sinks
        p = Pipeline(sources, self.engine, ex, sinks=sinks, config=self.config, clock=clock,
                     stream_id=sid)  # fmt: skip
        p.heads = self.heads
        if channel is not None:
            p.on_release.append(channel.close)
        try:
            s.server.add(p)
        except Exception:
            p.stop()
            for fn in p.on_release:
                fn()
            raise
        return sid

    def _sources(self, clock, media: Media) -> tuple[list, tuple[str, ...]]:
        """A stream's sources on `clock`, and the kinds of media they give."""
        sources, want = self._media_sources(clock, media)
        if media.words:
            from tribe_stream.sources.words import WordSource

            sources.append(WordSource(media.words, clock))
            want += () if "text" in want else ("text",)
        return sources, want

    def _media_sources(self, clock, m: Media) -> tuple[list, tuple[str, ...]]:
        o = self.s.options
        if m.source is not None:
            m.source.clock = clock
            kinds = m.source.kinds()
            return [m.source], (("video",) if "video" in kinds else ()) + (
                ("audio", "text") if "audio" in kinds else ()
            )
        if m.demo_seconds is not None:
            from tribe_stream.sources.clip import make_clip

            self.tmp = tempfile.TemporaryDirectory(prefix="tribe-stream-demo-")
            path = make_clip(Path(self.tmp.name) / "demo-clip.mp4", m.demo_seconds, speech=True)
            m = Media(file=str(path))
        if m.file:
            from tribe_stream.sources.replay import FileReplay

            src = FileReplay(m.file, clock=clock, realtime=o.realtime, max_size=292)
            kinds = src.kinds()
            want = (("video",) if "video" in kinds else ()) + (
                ("audio", "text") if "audio" in kinds else ()
            )
            return [src], want
        sources, want = [], ()
        if m.camera:
            from tribe_stream.sources.camera import open_camera

            sources.append(open_camera(m.camera, clock=clock, max_size=292))
            want += ("video",)
        if m.mic:
            from tribe_stream.sources.microphone import MicrophoneSource, mic_device

            sources.append(MicrophoneSource(mic_device(m.mic), clock=clock))
            want += ("audio", "text")
        return sources, want

    def __iter__(self) -> Iterator[Prediction]:
        s = self.s
        starts = [m.start_s for m in s.medias]
        persistent = s._serve is not None
        self._loop = s.server.predictions(
            s.options.seconds, stop=s._stop, starts=starts, persistent=persistent
        )
        for _, p in self._loop:
            s.words = int(p.counters.get("words", 0))
            yield p

    def __exit__(self, *exc: object) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            # a loop left mid-way (Ctrl-C between two predictions) ends its streams now, not
            # when a traceback's frames are collected, perhaps at exit: a speech recogniser
            # still running then aborted the process (CTranslate2; `AsrWorker.stop`)
            try:
                loop.close()
            except ValueError:  # running in another thread: `Stream.stop` ends it there
                pass
        if self.s.server is not None:
            self.s.server.released()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as e:  # noqa: BLE001 - closing one sink must not lose the others
                log.warning("closing %s failed: %s", type(sink).__name__, e)
        if self.viewer is not None:
            _close_viewer(self.viewer, self.s._view.get("linger") if self.s._view else None)
        if self.tmp is not None:
            self.tmp.cleanup()


def _mask(space, notes: list[str]):
    """A volume head's voxels (their structures: the published structure means), or None with
    a note when the atlas is not here (its predictions still go out)."""
    if not space.volume:
        return None
    from tribe_stream.spaces import mask_for

    try:
        return mask_for(space)
    except InputError as exc:
        notes.append(f"{space.name}: no structure means ({exc})")
        return None


def warm_up(extractors, engine, audio_context: float, streams: int = 1) -> None:
    """Run every model once before the clock starts, so that compiling (seconds on a GPU) is
    never mistaken for the stream falling behind; with several `streams` on a GPU, at every batch
    size their turns can make (clips per forward, audio passes, engine windows:
    `serve.batch_limits`).
    The brain model: `warm_engine`; further heads: `warm_heads`. Each stream's text steps are
    made by `Pipeline.warm_up`."""
    t = time.perf_counter()
    try:
        if streams > 1 and str(getattr(engine, "device", "cpu")).startswith("cuda"):
            # a GPU compiles and captures per batch size; a CPU has nothing to prepare
            warm_up_batches(extractors, audio_context, streams)
        if extractors.video is not None:
            frames = np.zeros((4, 256, 256, 3), np.uint8)
            extractors.video.extract([1.0, 1.5], frames, np.arange(4) / 4)  # two bins a pass
            extractors.video.extract([1.5], frames, np.arange(4) / 4)  # and one, as live bins come
        if extractors.audio is not None:  # through the live path: its CUDA graph is captured here
            live = extractors.audio.live(audio_context)
            live.feed(np.zeros(int(audio_context * AUDIO_RATE), np.float32), 0.0)
            n = int(audio_context * 2)
            live.extract([n - 2, n - 1])
        warm_engine(engine, extractors.active(), streams)
    except Exception as exc:  # noqa: BLE001 - warming up is an optimisation; the stream will say more
        log.warning(
            "warm-up failed (%s: %s); the first seconds may be slow", type(exc).__name__, exc
        )
    log.info("models warmed up in %.1f s", time.perf_counter() - t)


def warm_heads(heads: Sequence, modalities: Sequence[str], streams: int = 1) -> None:
    """Each further head's engine (`models.Head`, the subcortical model) warmed like the
    cortical one, once per width: a compiled head compiled on the stream's first seconds (a
    lent H100: 287 ms of head time per stream-second in the bench, all of it compiling)."""
    for head in heads:
        if head.warmed_for >= streams:
            continue
        try:
            warm_engine(head.engine, modalities, streams)
            head.warmed_for = streams
        except Exception as exc:  # noqa: BLE001 - as in warm_up
            log.warning("warming the %s head up failed (%s)", head.space.name, exc)


def warm_engine(engine, modalities: Sequence[str], streams: int = 1) -> None:
    """A brain-model engine at every batch size a server of `streams` streams makes
    (`serve.batch_limits`; on a GPU only), each three times: in CUDA-graph mode its graph is
    recorded on a later call than the first."""
    window = {
        m: np.zeros((*engine.config.feature_dims[m], MAX_TOKENS), np.float32) for m in modalities
    }
    row = MAX_TOKENS // 2 - 1
    sizes = [1]
    if streams > 1 and str(getattr(engine, "device", "cpu")).startswith("cuda"):
        from tribe_stream.stream.serve import batch_limits

        sizes += range(2, batch_limits(streams, 1)["engine"] + 1)
    for b in sizes:
        for _ in range(3):
            if b == 1:
                engine.run(window, rows=[row])
            else:
                engine.run_batch([window] * b, [row] * b)


def warm_up_batches(extractors, audio_context: float, streams: int) -> None:
    """The extractors' batched calls of a server of `streams` streams, once at each size (the
    brain model's: `warm_engine`)."""
    import torch

    from tribe_stream.stream.serve import batch_limits

    video = extractors.video
    if video is not None:
        crop = video.prep.crop
        for b in range(1, batch_limits(streams, video.max_batch)["video"] + 1):
            video.encode(torch.zeros((b, video.n_frames, 3, crop, crop)))
    if extractors.audio is not None:
        from tribe_stream.extractors.audio import AudioPass

        n = int(audio_context * 2)
        span = np.zeros(int(audio_context * AUDIO_RATE), np.float32)
        pad_to = extractors.audio.live(audio_context).pad_to
        for b in range(1, streams + 1):
            extractors.audio.extract_passes(
                [AudioPass(span, 0.0, [n - 2, n - 1], pad_to) for _ in range(b)]
            )


def _close_viewer(viewer: subprocess.Popen, linger: float | None, grace: float = 20.0) -> None:
    """Wait for the viewer `linger` seconds (None: until its window is closed), then ask it to
    close (SIGTERM), and after `grace` seconds more end it (SIGKILL). Never raises: the stream
    has already succeeded, and the viewer's end must not turn that into a failure."""
    if linger is None:
        print("stream ended; close the viewer window to exit", flush=True)
    for wait, then in ((linger, viewer.terminate), (grace, viewer.kill), (5.0, None)):
        try:
            viewer.wait(timeout=wait)
            return
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            if then == viewer.kill:
                log.warning(
                    "the viewer did not close within %.0f s of being asked; ending it", grace
                )
            elif then is None:
                log.warning("the viewer (pid %d) is still running", viewer.pid)
            if then is not None:
                then()


__all__ = ["Media", "PublishOptions", "Stream", "StreamOptions"]
