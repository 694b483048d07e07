"""The live pipeline of one stream: sources → 0.5 s bins → extractors → feature rings → brain
model → sinks.

One compute loop owns the extractors and the engine (`stream/serve.py`'s `Server`, which runs
one stream or many); sources capture in their own threads and never wait for it. Every turn:
take the chunks that arrived, feed them to the media windows, close each bin that every active
modality has covered, extract its features (batched with the other streams' bins), then
predict each second whose window has closed (one engine call for every stream's due seconds).
Nothing after the newest closed bin is used.

Backpressure (stated policy): when compute falls behind, the oldest work is dropped first.
More than `max_pending_bins` bins awaiting extraction → the oldest are left empty (zeros) and
counted in `dropped_bins`; more than `max_pending_seconds` seconds awaiting prediction → only
the newest are predicted and the rest counted in `dropped_seconds`. `behind_s` says how far the
newest prediction trails real time.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from tribe_stream import AUDIO_RATE, BIN_SECONDS, HEMODYNAMIC_OFFSET_S
from tribe_stream.clock import StreamClock
from tribe_stream.models import Extractors
from tribe_stream.stream.ring import FeatureRing
from tribe_stream.stream.schedule import Window, lag_bins, ready, window_for
from tribe_stream.types import Chunk, Prediction, Sink, Word

log = logging.getLogger("tribe_stream.pipeline")

STALE_S = 1.0  # video older than this before a bin's start counts as a camera dropout


@dataclass
class PipelineConfig:
    lag: float = 0.0
    """Seconds of right-hand context: second k waits for bins up to k + 1 + lag."""
    live: bool = True
    """Close bins on the clock too (a stalled camera does not stall the stream)."""
    grace_s: float = 0.3
    """Live: a bin closes this long after its end even if a source has not covered it."""
    max_pending_bins: int = 8
    max_pending_seconds: int = 2
    audio_context_s: float = 30.0
    video_clips_per_second: int = 2
    """2: a V-JEPA2 clip per bin (the official rate); 1: one clip for each two bins planned
    together, ending at the later one's end (half the video work; not the official features)."""
    switch_interval_s: float | None = 0.0005
    """While `run` runs: how soon a busy Python thread (a source decoding, the speech
    recogniser) hands the interpreter lock back to the compute loop, which releases it at every
    GPU launch. CPython's default, 5 ms, can be paid at every launch: beside a thread spinning in
    Python, one eager brain-model call took 4.4 s instead of 10 ms on an H100, and 1.0 s at
    0.5 ms. None: leave it."""


class AsrWorker:
    """Speech recognition in its own thread, so a slow pass never holds up the compute loop.

    Audio goes in with `feed` (never blocks; beyond `max_queue` blocks the oldest is dropped,
    counted in blocks and seconds of sound, and said in the log: when the recogniser first falls
    half a queue behind, at the first drop and every `say_every_s` of sound dropped after it);
    stable words come out with `words()`.
    """

    def __init__(self, live_asr, max_queue: int = 600, say_every_s: float = 30.0):
        self.asr = live_asr
        self._in: queue.Queue = queue.Queue(maxsize=max_queue)
        self._out: queue.Queue = queue.Queue()
        self.counters = {"asr_dropped_chunks": 0, "asr_dropped_s": 0.0, "asr_errors": 0}
        self._said_behind, self._said_dropped, self._say_every = False, -1.0, say_every_s
        self._stop = threading.Event()
        self._busy = False
        self._thread = threading.Thread(target=self._loop, name="asr", daemon=True)
        self._thread.start()

    def feed(self, samples: np.ndarray, t_end: float) -> None:
        if not self._said_behind and self._in.qsize() > self._in.maxsize // 2:
            self._said_behind = True
            log.warning(
                "speech recognition is falling behind the stream (%d blocks of sound waiting); "
                "beyond %d its oldest sound is dropped",
                self._in.qsize(),
                self._in.maxsize,
            )
        while True:
            try:
                self._in.put_nowait((samples, t_end))
                return
            except queue.Full:
                try:
                    old, _ = self._in.get_nowait()
                except queue.Empty:
                    continue
                c = self.counters
                c["asr_dropped_chunks"] += 1
                c["asr_dropped_s"] += len(old) / AUDIO_RATE
                if (
                    c["asr_dropped_s"] - self._said_dropped >= self._say_every
                    or self._said_dropped < 0
                ):
                    self._said_dropped = c["asr_dropped_s"]
                    log.warning(
                        "speech recognition cannot keep up: %.1f s of sound dropped so far, its "
                        "words lost (a faster recogniser or device, or --no-text)",
                        c["asr_dropped_s"],
                    )

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                item = self._in.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is None:
                break
            self._busy = True
            try:
                for w in self.asr.feed(*item):
                    self._out.put(w)
            except Exception as exc:  # noqa: BLE001 - a failed pass loses its words, not the stream
                self.counters["asr_errors"] += 1
                log.warning("speech recognition failed (%s: %s); going on", type(exc).__name__, exc)
            finally:
                self._busy = False

    def pending(self) -> bool:
        """Sound still queued or a pass in progress (its words are still to come)."""
        return self._busy or not self._in.empty()

    def words(self) -> list[Word]:
        out = []
        while not self._out.empty():
            out.append(self._out.get_nowait())
        return out

    def finish(self, timeout: float = 60.0) -> list[Word]:
        """End of stream: let queued audio through (up to `timeout`), then flush the last hypothesis."""
        self._in.put(None)
        self._thread.join(timeout)
        words = self.words()
        if self._thread.is_alive():
            self.counters["asr_unfinished"] = 1
            log.warning("speech recognition still busy at the end; its last words are left out")
            return words
        try:
            words += self.asr.flush()
        except Exception as exc:  # noqa: BLE001
            self.counters["asr_errors"] += 1
            log.warning("speech recognition flush failed (%s)", exc)
        return words

    def stop(self, timeout: float = 60.0) -> None:
        """End the thread: it finishes the pass it is in (if any) and exits; waits up to
        `timeout`. A recogniser thread left running at exit aborts the process (CTranslate2)."""
        self._stop.set()
        try:
            self._in.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("speech recognition did not stop within %.0f s", timeout)


@dataclass
class _Close:
    """Bins closed in one go, waiting for their features (see `Pipeline.commit_bins`)."""

    target: int  # bins [0, target) are final once applied
    capture: float  # the newest capture time when they closed
    closed_at: float  # stream clock


@dataclass
class WindowJob:
    """A second whose window closed: the brain model's input for it (see `Pipeline.plan_seconds`)."""

    second: int
    window: Window
    features: dict


class Pipeline:
    """One live stream: `step()` once per loop turn, or `run()` until its sources end.

    The work of a turn is split so that a `Server` (stream/serve.py) can batch it across streams:
    `intake()` takes new media and plans the features of bins that closed (video clips, audio
    passes; words go straight into the text ring), the server runs every stream's clips and
    passes together and hands them back (`apply_video`, `apply_audio`, `commit_bins`),
    `plan_seconds()` says which seconds are due, the server runs their windows in one engine
    call and `apply_prediction` turns each row into a published `Prediction`. A Pipeline run on
    its own (`step`, `run`, `predictions`) is a server with one stream: the same code path.
    """

    def __init__(
        self,
        sources: Iterable,
        engine,
        extractors: Extractors,
        sinks: Iterable[Sink] = (),
        config: PipelineConfig | None = None,
        clock: StreamClock | None = None,
        stream_id: str | None = None,
    ):
        self.sources = list(sources)
        self.engine = engine
        self.ex = extractors
        self.sinks = list(sinks)
        self.config = config or PipelineConfig()
        self.clock = clock or StreamClock()
        self.stream_id = stream_id
        self.heads: list = []  # further brain models on the same windows (`models.Head`)
        lag_bins(self.config.lag)  # validate
        self.modalities = extractors.active()
        if not self.modalities:
            raise ValueError("switch on at least one of video, audio, text")
        device = getattr(engine, "device", "cpu")
        self.rings = {
            m: FeatureRing(getattr(extractors, m).shape, device=device) for m in self.modalities
        }
        self.live_audio = (
            extractors.audio.live(self.config.audio_context_s) if extractors.audio else None
        )
        self.live_text = extractors.text.live() if extractors.text else None
        self.live_video = None
        if extractors.video is not None:
            from tribe_stream.extractors.video import LiveVideo

            # frames are preprocessed once on arrival (on the extractor's device)
            self.live_video = LiveVideo(extractors.video)
        self._frame_times: list[float] = []  # recent frame stamps, for dropout checks
        self._pending_video: list[tuple[np.ndarray, np.ndarray, object]] = []
        self._asr = (
            AsrWorker(extractors.asr) if extractors.asr is not None and extractors.text else None
        )
        self._horizon = dict.fromkeys(self._covering(), 0.0)
        self._last_frame = -1.0
        self.closed_bins = 0  # bins [0, closed_bins) are final
        self._planned_bins = 0  # bins [0, _planned_bins) have their features planned
        self.video_jobs: list[tuple[list[int], object]] = []  # (bins, VideoClips) to encode
        self.audio_jobs: list[tuple[list[int], object]] = []  # (bins, AudioPass) to run
        self._closes: list[_Close] = []
        self.next_second = 0
        self.last_capture = 0.0
        self._bin_stamps: dict[
            int, tuple[float, float, float]
        ] = {}  # bin -> capture, closed, ready
        self.finished = False
        self.until: float | None = None
        """No second at or after this is planned (a run's `seconds`: `run --seconds N` makes N,
        also when one turn catches up several seconds at once)."""
        self.flushed_from: int | None = None
        """The first second predicted after the sources ended (the end-of-input flush): not a
        live second (a camera never ends), so the bench reports those apart."""
        self.words: list[Word] = []
        self.batch_words = False
        """Words wait in `pending_words` for the server's text stage (`Server._text`: every
        stream's next word in one forward) instead of running as they arrive."""
        self.pending_words: list[Word] = []
        self._video_partner: int | None = None
        """At one clip a second: the even bin waiting for its partner (`_video_groups`)."""
        self._words_sent = 0  # self.words[:_words_sent] went out with a prediction already
        self.counters: dict[str, float] = {
            "predictions": 0,
            "bins": 0,
            "dropped_bins": 0,
            "dropped_seconds": 0,
            "empty_video_bins": 0,
            "extractor_errors": 0,
            "engine_errors": 0,
            "head_errors": 0,
            "sink_errors": 0,
            "words": 0,
            "late_words": 0,
            "behind_s": 0.0,
            "busy_s": 0.0,
        }
        self._last_status = -1.0
        self.on_release: list = []
        """Called (no arguments) once the stream has left its server and stopped: what it
        alone holds (its publisher channel, a temporary folder) given back."""
        self.retired = False

    def _covering(self) -> list[str]:
        """Media kinds whose arrival closes bins."""
        kinds = []
        if self.ex.video is not None:
            kinds.append("video")
        if self.ex.audio is not None or self.ex.text is not None:
            kinds.append("audio")
        return kinds

    def start(self) -> None:
        for s in self.sources:
            s.start()

    def warm_up(self) -> None:
        """Before the clock starts: this stream's own static steps (its text model's CUDA graphs
        over its own KV cache, `LiveText.warm`) made now, so that no live word pays for them;
        and the first word's one-time costs (spaCy's sentence pipeline, 3 s on a CPU; the text
        model's first call), paid on a word its context then forgets: before, the demo's first
        words held its last seconds up by 3-4 s."""
        if self.live_text is not None:
            self.live_text.warm()
            self._safe("text warm-up", lambda: self.live_text.add(Word("Ready", 0.0, 0.5)), None)
            self.live_text.reset()

    def stop(self) -> None:
        """Stop the sources and the speech recogniser (the stream is over)."""
        for s in self.sources:
            try:
                s.stop()
            except Exception as exc:  # noqa: BLE001 - stopping one must not keep others running
                log.warning("stopping source %s failed: %s", getattr(s, "name", s), exc)
        if self._asr is not None:
            self._asr.stop()
            # words of the pass that was in progress at the end: in no prediction any more, but
            # counted (`words`, `late_words`) like any word that came after its second
            self._add_words(self._asr.words())
        self.batch_words = False
        self._add_words(self.pending_words)  # words no server turn took: run here, counted
        self.pending_words = []
        if self.live_text is not None:  # its KV cache and CUDA graphs go to the next stream
            self.live_text.close()

    @property
    def ended(self) -> bool:
        """Every source has ended (end of input, a fatal error, or stopped)."""
        return all(s.ended for s in self.sources)

    # ----- a turn, in the order a server runs it -----

    def intake(self, final: bool = False) -> None:
        """Words from speech recognition and chunks from the sources in; bins that closed get
        their features planned (`video_jobs`, `audio_jobs`). `final`: the sources ended, so the
        last bins close too (after the recogniser's last words)."""
        if self._asr is not None and not final:
            self._add_words(self._asr.words())
        for source in self.sources:
            for chunk in source.poll():
                self._take(chunk)
                self._close_bins()
        if final:
            if self.flushed_from is None:
                self.flushed_from = self.next_second
            if self._asr is not None and self.config.live:
                # live: the last seconds go out as promptly as the others; what the recogniser
                # still has (a pass in progress, its last hypothesis) is not waited for, as a
                # word arriving after its second never is (before: up to 3 s more, a warning)
                self._add_words(self._asr.words())
                if self._asr.pending():
                    self.counters["asr_unfinished"] = 1
                    log.info("speech recognition had sound left at the end: not waited for")
            elif self._asr is not None:  # a file as fast as possible: every word, as offline
                self._add_words(self._asr.finish(timeout=120.0))
            self.finished = True
            self._close_bins(final=True)
        else:
            self._close_bins()

    def apply_video(self, results: list) -> None:
        """Features (or the exception) of the first `len(results)` of `video_jobs`, in order
        (a server may run a stream's oldest clips now and the rest in a later batch)."""
        done, self.video_jobs = self.video_jobs[: len(results)], self.video_jobs[len(results) :]
        self._apply("video", done, results)

    def apply_audio(self, results: list) -> None:
        """Features (or the exception) of the first `len(results)` of `audio_jobs`, in order."""
        done, self.audio_jobs = self.audio_jobs[: len(results)], self.audio_jobs[len(results) :]
        self._apply("audio", done, results)

    def _apply(self, kind: str, done: list, results: list) -> None:
        """Each job's features into the ring; a failed forward is counted once, however many
        of this stream's jobs its batch held (its bins stay empty, counted when they go out)."""
        seen: set[int] = set()
        for (bins, _), feats in zip(done, results, strict=True):
            if isinstance(feats, Exception):
                if id(feats) not in seen:
                    seen.add(id(feats))
                    self._failed(kind, feats)
                continue
            if kind == "video" and len(feats) == 1 < len(bins):  # `video_clips_per_second` 1
                feats = [feats[0]] * len(bins)
            for b, v in zip(bins, feats, strict=True):
                self.rings[kind].set(b, v)

    def first_pending_bin(self) -> float:
        """The oldest bin whose features are still to run (inf when none)."""
        return min(
            (min(bins) for bins, _ in self.video_jobs + self.audio_jobs if bins),
            default=float("inf"),
        )

    def audio_ready(self) -> int:
        """How many of `audio_jobs` (oldest first) may run now: those whose bins' clips are in
        (a second goes out only when all its features are, so its pass need not run earlier)."""
        video = min((min(b) for b, _ in self.video_jobs if b), default=float("inf"))
        n = 0
        while n < len(self.audio_jobs) and max(self.audio_jobs[n][0]) < video:
            n += 1
        return n

    def deadline(self, bins: list[int]) -> float:
        """When `bins`' data ended, on the monotonic clock all streams share (earliest first)."""
        return self.clock.t0_monotonic + (max(bins) + 1) * BIN_SECONDS

    def commit_bins(self) -> bool:
        """Closes whose bins' features are all in become final (and stamped); True if any did."""
        pending = self.first_pending_bin()
        n = 0
        while n < len(self._closes) and self._closes[n].target <= pending:
            n += 1
        if not n:
            return False
        ready_at = self.clock.now()
        self.counters["busy_s"] += ready_at - self._closes[0].closed_at
        for c in self._closes[:n]:
            self._bin_stamps[c.target - 1] = (c.capture, c.closed_at, ready_at)
            self.closed_bins = max(self.closed_bins, c.target)
        for old in [b for b in self._bin_stamps if b < self.closed_bins - 400]:
            del self._bin_stamps[old]
        self.counters["bins"] = self.closed_bins
        del self._closes[:n]
        return True

    @property
    def has_work(self) -> bool:
        """Features planned and not yet final."""
        return bool(self._closes or self.video_jobs or self.audio_jobs)

    def plan_seconds(self) -> list[WindowJob]:
        """The seconds whose windows have closed (oldest dropped beyond `max_pending_seconds`)."""
        if self.finished and self._closes:  # the last bins' features are not all in: windows
            return []  # cut at `closed_bins` now would end before the stream does
        total = self.closed_bins if self.finished else None
        due = []
        k = self.next_second
        while (self.until is None or k < self.until) and (
            (self.finished and 2 * k + 2 <= self.closed_bins)
            or (not self.finished and ready(k, self.config.lag, self.closed_bins))
        ):
            due.append(k)
            k += 1
        if len(due) > self.config.max_pending_seconds and self.config.live and not self.finished:
            skipped = due[: -self.config.max_pending_seconds]
            self.counters["dropped_seconds"] += len(skipped)
            log.warning("compute behind: seconds %s skipped (oldest first)", skipped)
            due = due[-self.config.max_pending_seconds :]
        jobs = []
        for k in due:
            self.next_second = k + 1
            w = window_for(k, self.config.lag, total)
            features = {m: self.rings[m].window(w.start, w.stop) for m in self.modalities}
            jobs.append(WindowJob(k, w, features))
        return jobs

    def apply_prediction(
        self, job: WindowJob, values, t_start: float, t_done: float
    ) -> Prediction | None:
        """The engine's row for `job` (or its exception) -> the published Prediction."""
        k, w = job.second, job.window
        if isinstance(values, Exception):
            self.counters["engine_errors"] += 1
            log.warning(
                "brain model failed on second %d (%s: %s); going on",
                k,
                type(values).__name__,
                values,
            )
            return None
        self.counters["busy_s"] += t_done - t_start
        data_end = w.stop * BIN_SECONDS
        self.counters["predictions"] += 1
        self.counters["behind_s"] = (
            round(max(0.0, t_done - data_end), 3) if self.config.live else 0.0
        )
        # the newest capture taken when the window's last bin closed, when it closed, and when
        # its features were ready (stream clock, seconds)
        stamps = dict(zip(("capture", "bin_closed", "features_ready"), self._stamps(w.stop - 1),
                          strict=True))  # fmt: skip
        pred = self._prediction(job, values, t_start, t_done, stamps,
                                words=self.words[self._words_sent :])  # fmt: skip
        self._words_sent = len(self.words)
        self._publish(pred)
        return pred

    def apply_head(self, head, job: WindowJob, values, t_start: float, t_done: float) -> None:
        """A further head's row for `job` (the subcortical model's): published on its own topic
        by the sinks that take heads (the publisher); a failure is counted, the stream goes on."""
        if isinstance(values, Exception):
            self.counters["head_errors"] += 1
            log.warning("the %s head failed on second %d (%s: %s); going on", head.space.name,
                        job.second, type(values).__name__, values)  # fmt: skip
            return
        pred = self._prediction(job, values, t_start, t_done, {}, space=head.space.name)
        self._publish(pred, heads=True)

    def _prediction(
        self, job: WindowJob, values, t_start: float, t_done: float, stamps: dict, **fields
    ) -> Prediction:
        """The Prediction of `job`'s row (the cortex's, or a further head's: `fields`)."""
        k, w = job.second, job.window
        pred = Prediction(
            second=k,
            values=np.asarray(values, dtype=np.float32),
            stimulus=(float(k), float(k + 1)),
            bold_time=k + HEMODYNAMIC_OFFSET_S,
            timings={
                "window_start": w.start * BIN_SECONDS,
                "window_end": w.stop * BIN_SECONDS,
                **stamps,
                "model_start": t_start,
                "model_end": t_done,
                "model_ms": (t_done - t_start) * 1e3,
            },
            counters=self.all_counters(),
            **fields,
        )
        if self.stream_id is not None:
            pred.stream_id = self.stream_id
        return pred

    # ----- media in -----

    def _take(self, chunk: Chunk) -> None:
        self.last_capture = max(self.last_capture, chunk.capture_time)
        if chunk.kind == "video" and self.ex.video is not None:
            frames = np.asarray(chunk.data)
            times = np.asarray(chunk.times, dtype=np.float64)
            # frames wait here until their bins close, so the extractor's frame window (which
            # trails its newest frame) never loses frames a slower medium's bins still need
            # resized, cropped and sent to the device by a worker meanwhile (`LiveVideo.prepare`)
            self._pending_video.append((frames, times, self.live_video.prepare(frames)))
            self._frame_times.extend(times.tolist())
            del self._frame_times[: max(0, len(self._frame_times) - 1024)]
            self._horizon["video"] = max(self._horizon["video"], chunk.end)
            # a video bin ending at t samples the frame shown at t (the official clip times end
            # at t), so it closes once a frame stamped at or after t has arrived
            self._last_frame = max(self._last_frame, float(times[-1]) if len(times) else 0.0)
        elif chunk.kind == "audio" and "audio" in self._horizon:
            samples = np.asarray(chunk.data, dtype=np.float32)
            if self.live_audio is not None:
                self.live_audio.feed(samples, chunk.start)
            if self._asr is not None:
                self._asr.feed(samples, chunk.end)
            self._horizon["audio"] = max(self._horizon["audio"], chunk.end)
        elif chunk.kind == "words" and self.live_text is not None:
            self._add_words(list(chunk.data))

    def _add_words(self, words: list[Word]) -> None:
        words = [w for w in words if w.text.strip()]
        if self.batch_words:
            self.pending_words += words
            return
        for w in words:
            vec = self._safe("text", lambda w=w: self.live_text.add(w, on_device=True), None)
            if vec is not None:
                self.apply_word(w, vec)

    def apply_word(self, w: Word, vec) -> None:
        """A word's text features (an array, or a tensor on the ring's device: the server's
        batched words, never waited for) into the ring (its bins as the reference takes them)."""
        self.words.append(w)
        self.counters["words"] += 1
        start = round(2 * w.onset)  # the reference's bins: round(2·onset) for
        n_bins = max(1, round(2 * w.duration))  # max(1, round(2·duration)) bins
        if start < 2 * self.next_second:
            self.counters["late_words"] += 1  # its (first) second was already predicted
        for b in range(start, start + n_bins):
            self.rings["text"].add(b, vec)

    # ----- bins -----

    def _close_bins(self, final: bool = False) -> None:
        if final:  # the stream ended: every bin any medium covered closes
            horizon = max(self._horizon.values()) if self._horizon else 0.0
            target = int(np.floor(horizon / BIN_SECONDS + 1e-6))
        else:
            covered = dict(self._horizon)
            if "video" in covered:
                covered["video"] = self._last_frame + 1e-6
            horizon = min(covered.values()) if covered else 0.0
            if self.config.live and not any(s.ended for s in self.sources):
                horizon = max(horizon, self.clock.now() - self.config.grace_s)
            target = int(np.floor(horizon / BIN_SECONDS + 1e-6))
        if target <= self._planned_bins:
            return
        bins = list(range(self._planned_bins, target))
        if len(bins) > self.config.max_pending_bins and not final and self.config.live:
            dropped = bins[: -self.config.max_pending_bins]
            self.counters["dropped_bins"] += len(dropped)
            log.warning("compute behind: %d bins left empty (oldest first)", len(dropped))
            bins = bins[-self.config.max_pending_bins :]
        self._closes.append(_Close(target, self.last_capture, self.clock.now()))
        self._plan(bins, stream_end=target if final else None)
        self._planned_bins = target

    def _plan(self, bins: list[int], stream_end: int | None = None) -> None:
        """What the bins' features need, with the media they need taken now."""
        ends = [(b + 1) * BIN_SECONDS for b in bins]
        if self.live_video is not None:
            times = np.asarray(self._frame_times)
            fresh = []
            for b, end in zip(bins, ends, strict=True):
                # a bin's clip samples frames up to its end (never later); a camera that dropped
                # out STALE_S before the bin leaves it empty (counted) rather than frozen
                n = int(np.searchsorted(times, end + 1e-9, side="right"))
                if not n or times[n - 1] <= end - BIN_SECONDS - STALE_S:
                    self.counters["empty_video_bins"] += 1
                else:
                    fresh.append(b)
            # two bins at a time, each pair's clips taken from the frames up to its end: the
            # extractor keeps the last 5 s of frames, so a long backlog never starves old bins
            for group in self._video_groups(fresh, bins[-1] if bins else -1, stream_end):
                group_ends = [(b + 1) * BIN_SECONDS for b in group]
                self._feed_video(until=group_ends[-1] + BIN_SECONDS)
                if self.config.video_clips_per_second == 1:
                    group_ends = group_ends[-1:]  # one clip, its features for both bins
                clips = self._safe("video", lambda e=group_ends: self.live_video.clips(e), None)
                if clips is not None:
                    self.video_jobs.append((group, clips))
        if self.live_audio is not None:
            # one pass per second, ending at the second's end, for both its bins: bin 2k hears
            # up to k + 1, which its second's window holds anyway (and offline does the same)
            covered = [b for b in bins if (b + 1) * BIN_SECONDS <= self.live_audio.end_time + 1e-6]
            for b in covered:
                if b % 2 == 0 and b + 1 != stream_end:
                    continue  # waits for its partner
                pair = [b - 1, b] if b % 2 else [b]
                job = self._safe("audio", lambda p=pair: self.live_audio.plan(p), None)
                if job is not None:
                    self.audio_jobs.append((pair, job))

    def _video_groups(self, fresh: list[int], last: int, stream_end: int | None) -> list[list[int]]:
        """The bins planned together (`fresh`: those with frames, of the bins closed up to
        `last`): pairs in order at the official rate; at one clip a second, each second's two
        bins (an even bin waits for its partner, as the audio's does: its second goes out only
        after both anyway), a bin alone where its partner closed without frames or the stream
        ends."""
        if self.config.video_clips_per_second == 2:
            return [fresh[i : i + 2] for i in range(0, len(fresh), 2)]
        groups = []
        for b in fresh:
            waiting, self._video_partner = self._video_partner, None
            if waiting is not None and waiting != b - 1:
                groups.append([waiting])  # its partner had no frames: a clip of its own
                waiting = None
            if b % 2 == 0 and b + 1 != stream_end:
                self._video_partner = b
                continue
            groups.append([waiting, b] if waiting is not None else [b])
        if self._video_partner is not None and (
            stream_end is not None or last > self._video_partner
        ):
            groups.append([self._video_partner])
            self._video_partner = None
        return groups

    def _feed_video(self, until: float) -> None:
        """Hand the extractor the frames stamped up to `until` (preprocessed once, on arrival)."""
        while self._pending_video and self._pending_video[0][1][0] <= until:
            args = self._pending_video.pop(0)
            self._safe("video frames", lambda a=args: self.live_video.feed(*a), None)

    def _safe(self, what: str, fn, default):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - one bad chunk never kills the stream
            self._failed(what, exc)
            return default

    def _failed(self, what: str, exc: Exception) -> None:
        self.counters["extractor_errors"] += 1
        log.warning(
            "%s extractor failed on this bin (%s: %s); going on", what, type(exc).__name__, exc
        )

    # ----- predictions out -----

    def _stamps(self, last_bin: int) -> tuple[float, float, float]:
        later = [b for b in self._bin_stamps if b >= last_bin]
        return self._bin_stamps[min(later)] if later else (self.last_capture, 0.0, 0.0)

    def _publish(self, pred: Prediction, heads: bool = False) -> None:
        for sink in self.sinks:
            if heads and not sink.heads:
                continue
            try:
                sink.send(pred)
            except Exception as exc:  # noqa: BLE001
                self.counters["sink_errors"] += 1
                log.warning("sink %s failed (%s); going on", type(sink).__name__, exc)

    def heartbeat(self) -> None:
        """Each sink's 1 Hz status with the counters."""
        now = self.clock.now()
        if now - self._last_status < 1.0:
            return
        self._last_status = now
        counters = self.all_counters()
        for sink in self.sinks:
            try:
                sink.status(counters)
            except Exception as exc:  # noqa: BLE001
                self.counters["sink_errors"] += 1
                log.warning("sink %s status failed (%s)", type(sink).__name__, exc)

    def all_counters(self) -> dict[str, float]:
        """The pipeline's counters plus each source's (prefixed by its name)."""
        out = dict(self.counters)
        for i, s in enumerate(self.sources):
            for key, value in s.counters.items():
                if value:
                    out[f"source{i}.{key}"] = value
        if self.live_audio is not None:
            out.update({f"audio.{k}": v for k, v in self.live_audio.counters.items()})
        if self._asr is not None:
            out.update(self._asr.counters)
        return out

    def features(self, modality: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The bins this stream extracted, `(L, D, T)` numpy (for checks against offline runs)."""
        return (
            self.rings[modality]
            .window(start, self.closed_bins if stop is None else stop)
            .cpu()
            .numpy()
        )
