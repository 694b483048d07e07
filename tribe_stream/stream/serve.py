"""Several live streams in one process, on one copy of every model: the `Server`.

Every turn (`step`) each stream takes its new media and plans the features of the bins that
closed (`Pipeline.intake`); then the clips of every stream go through V-JEPA2 together
(`extractors.video.encode_clips`), every audio pass through w2v-BERT together
(`AudioExtractor.extract_passes`), and every stream whose second closed gets its row from one
brain-model call (`Engine.run_batch`). Words reach the text model as they arrive, one stream
after another (each stream keeps its own KV cache). A single `Pipeline` runs as a server of one
stream, so one stream and many take the same path.

Fairness: each stream's work is bounded by its own queues (`PipelineConfig.max_pending_bins`,
`max_pending_seconds`): one that falls behind leaves its own oldest bins empty and skips its own
oldest seconds, counted in its headers; the others' work is never dropped for it. A stream whose
sources end is flushed and leaves; one whose source or step raises leaves with what it had
(counted in `counters["stream_failures"]`); the rest run on.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator

from tribe_stream.stream.clock import StreamClock
from tribe_stream.stream.pipeline import Pipeline, PipelineConfig, WindowJob
from tribe_stream.types import Prediction

log = logging.getLogger("tribe_stream.serve")


def run_windows(engine, windows: list[dict], rows: list[int]) -> list:
    """Each window's pooled row (or its exception), through `engine.run_batch` when the engine
    has it, else one `run` per window."""
    batch = getattr(engine, "run_batch", None)
    if batch is not None:
        try:
            return batch(windows, rows)
        except Exception as exc:  # noqa: BLE001 - every window of the call counts it
            return [exc] * len(windows)
    out: list = []
    for w, r in zip(windows, rows, strict=True):
        try:
            out.append(engine.run(w, rows=[r])[0])
        except Exception as exc:  # noqa: BLE001
            out.append(exc)
    return out


def _groups(items: Iterable, key) -> dict[int, tuple[object, list]]:
    """Items grouped by the identity of `key(item)` (the shared model object), in order."""
    out: dict[int, tuple[object, list]] = {}
    for item in items:
        k = key(item)
        out.setdefault(id(k), (k, []))[1].append(item)
    return out


class Server:
    """Runs `pipelines` (one per stream, sharing extractors and engine) turn by turn."""

    def __init__(
        self,
        pipelines: Iterable[Pipeline] = (),
        *,
        clock: StreamClock | None = None,
        config: PipelineConfig | None = None,
    ):
        self.streams: list[Pipeline] = list(pipelines)
        self.done: list[Pipeline] = []
        self.clock = clock or (self.streams[0].clock if self.streams else StreamClock())
        self.config = config or (self.streams[0].config if self.streams else PipelineConfig())
        self.counters = {
            "turns": 0,
            "video_forwards": 0,
            "video_clips": 0,
            "audio_calls": 0,
            "audio_passes": 0,
            "engine_calls": 0,
            "engine_windows": 0,
            "stream_failures": 0,
        }

    def add(self, pipeline: Pipeline) -> Pipeline:
        self.streams.append(pipeline)
        return pipeline

    # ----- one turn -----

    def step(self, final: set[int] | None = None) -> list[tuple[str | None, Prediction]]:
        """One turn for every stream; streams whose `id` is in `final` close their last bins."""
        self.counters["turns"] += 1
        for p in list(self.streams):
            try:
                p.intake(final=final is not None and id(p) in final)
            except Exception as exc:  # noqa: BLE001 - a failing source ends its stream only
                self._fail(p, exc)
        active = list(self.streams)
        self._video(active)
        self._audio(active)
        for p in active:
            p.commit_bins()
        out = self._predict(active)
        for p in active:
            p.heartbeat()
        return out

    def _video(self, active: list[Pipeline]) -> None:
        todo = [p for p in active if p.video_jobs]
        for extractor, members in _groups(todo, lambda p: p.ex.video).values():
            from tribe_stream.extractors.video import encode_clips

            sets = [clips for p in members for _, clips in p.video_jobs]
            results = encode_clips(extractor, sets)
            n = sum(len(c) for c in sets)
            self.counters["video_clips"] += n
            self.counters["video_forwards"] += -(-n // max(1, extractor.max_batch))
            i = 0
            for p in members:
                k = len(p.video_jobs)
                p.apply_video(results[i : i + k])
                i += k

    def _audio(self, active: list[Pipeline]) -> None:
        todo = [p for p in active if p.audio_jobs]
        for extractor, members in _groups(todo, lambda p: p.live_audio.extractor).values():
            passes = [job for p in members for _, job in p.audio_jobs]
            results = extractor.extract_passes(passes)
            self.counters["audio_calls"] += 1
            self.counters["audio_passes"] += len(passes)
            i = 0
            for p in members:
                k = len(p.audio_jobs)
                p.apply_audio(results[i : i + k])
                i += k

    def _predict(self, active: list[Pipeline]) -> list[tuple[str | None, Prediction]]:
        jobs: list[tuple[Pipeline, WindowJob]] = [(p, j) for p in active for j in p.plan_seconds()]
        out = []
        for engine, members in _groups(jobs, lambda pj: pj[0].engine).values():
            t_start = self.clock.now()
            results = run_windows(
                engine, [j.features for _, j in members], [j.window.row for _, j in members]
            )
            t_done = self.clock.now()
            self.counters["engine_calls"] += 1
            self.counters["engine_windows"] += len(members)
            for (p, j), values in zip(members, results, strict=True):
                pred = p.apply_prediction(j, values, t_start, t_done)
                if pred is not None:
                    out.append((p.stream_id, pred))
        return out

    def _fail(self, p: Pipeline, exc: Exception) -> None:
        if len(self.streams) + len(self.done) == 1:
            raise exc  # the only stream: its caller hears why
        self.counters["stream_failures"] += 1
        p.counters["stream_failed"] = 1
        log.warning(
            "stream %s failed (%s: %s); the other streams go on",
            p.stream_id,
            type(exc).__name__,
            exc,
        )
        self._retire(p)

    def _retire(self, p: Pipeline) -> None:
        if p in self.streams:
            self.streams.remove(p)
            self.done.append(p)
        p.stop()

    # ----- the loop -----

    def predictions(
        self,
        seconds: float | None = None,
        *,
        idle_sleep: float = 0.01,
        stop=None,
    ) -> Iterator[tuple[str | None, Prediction]]:
        """`(stream_id, prediction)` as they are made: starts every stream's sources, turns until
        each stream's sources end (then flushes its last seconds), it has `seconds` of stream
        time, or `stop` (a threading.Event) is set. Leaving early stops every source."""
        interval = sys.getswitchinterval()
        if self.config.switch_interval_s is not None:
            sys.setswitchinterval(self.config.switch_interval_s)
        self.clock.restart()
        for p in self.streams:
            for sink in p.sinks:  # consumers map stream time to wall time from the new zero
                if hasattr(sink, "set_metadata"):
                    sink.set_metadata({"t0_wall": self.clock.t0_wall})
        try:
            for p in list(self.streams):
                try:
                    p.start()
                except Exception as exc:  # noqa: BLE001 - the only stream re-raises
                    self._fail(p, exc)
            while self.streams and (stop is None or not stop.is_set()):
                preds = self.step()
                yield from preds
                if seconds is not None:
                    for p in [p for p in self.streams if p.next_second >= seconds]:
                        self._retire(p)
                ended = {id(p) for p in self.streams if p.ended}
                if ended:
                    yield from self.step(final=ended)
                    for p in [p for p in self.streams if id(p) in ended]:
                        self._retire(p)
                if not preds:
                    time.sleep(idle_sleep)
        finally:
            sys.setswitchinterval(interval)
            for p in list(self.streams):
                self._retire(p)

    def all_counters(self) -> dict[str, dict[str, float]]:
        """Each stream's counters, by stream id."""
        return {str(p.stream_id): p.all_counters() for p in self.done + self.streams}
