"""Several live streams in one process, on one copy of every model: the `Server`.

Every turn (`step`) each stream takes its new media and plans the features of the bins that
closed (`Pipeline.intake`). Then, earliest deadline first: the clips whose bins' data ended
first, whichever stream they come from, go through V-JEPA2 in one forward
(`extractors.video.encode_clips`; a batch takes the clips that are due now and never waits to
fill, the rest go in the next turn, after the next intake, so a bin that closed meanwhile
competes on its deadline; with `video_overlap` the turn goes on while the forward runs and a
later turn collects it); the audio passes whose clips are in run together
(`AudioExtractor.extract_passes`); every stream whose second is complete gets its row from one
brain-model call (`Engine.run_batch`). Ties (streams on one clock, their bins closing at the
same instant) go round-robin, so no stream is always last. Words reach the text model as they
arrive, one stream after another (each stream keeps its own KV cache). A single `Pipeline` runs
as a server of one stream, so one stream and many take the same path.

Batch sizes stay within what `producer.warm_up(streams=N)` compiled and captured for the
streams served (`batch_limits`); a compile or CUDA-graph capture after the warm-up (a shape it
missed) is logged and counted in `counters["compiles_after_warmup"]` /
`["captures_after_warmup"]`.

Fairness: each stream's work is bounded by its own queues (`PipelineConfig.max_pending_bins`,
`max_pending_seconds`): one that falls behind leaves its own oldest bins empty and skips its own
oldest seconds, counted in its headers; the others' work is never dropped for it. A stream whose
sources end is flushed and leaves; one whose source or step raises leaves with what it had
(counted in `counters["stream_failures"]`); the rest run on.

Streams that come and go (a server that runs for days): `add` and `end` are safe from any thread
while the loop runs (the loop admits and ends them at its next turn); beyond `max_streams` a new
stream is refused with `ServerBusy`. `predictions(persistent=True)` keeps serving with no stream.
A stream that leaves is released in a thread of its own (its sources and speech recogniser
joined, `Pipeline.on_release` run: its publisher channel closed), so the others never wait for
it; with `keep_done` off only its counters stay (`history`, the last 256).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence

from tribe_stream.clock import StreamClock
from tribe_stream.errors import InputError
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


def rss_mb(pid: int | str = "self") -> float:
    """A process's resident memory (MB; Linux, else 0): this one's by default."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def open_fds() -> tuple[int, int]:
    """(open file descriptors, of which sockets) of this process (Linux, else (0, 0)): what a
    stream that left must have given back."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return 0, 0
    links = []
    for n in names:
        try:
            links.append(os.readlink(f"/proc/self/fd/{n}"))
        except OSError:  # closed meanwhile (the listing's own fd)
            pass
    return len(links), sum(x.startswith("socket:") for x in links)


_LIBC: list = []


def trim_heap() -> float:
    """Hand the C heap's free pages back to the system (glibc `malloc_trim`); returns the MB of
    resident memory that went. A server that runs for hours frees blocks of ever-varying sizes
    (decoded frames, recogniser passes, tensors of varying shapes) that glibc keeps otherwise:
    resident memory crept up ~10-20 MB a minute (issue 31 #9). A no-op off glibc."""
    if not _LIBC:
        try:
            import ctypes

            _LIBC.append(ctypes.CDLL("libc.so.6").malloc_trim)
        except (OSError, AttributeError):
            _LIBC.append(None)
    if _LIBC[0] is None:
        return 0.0
    before = rss_mb()
    _LIBC[0](0)
    return max(0.0, before - rss_mb())


def batch_limits(streams: int, video_max_batch: int) -> dict[str, int]:
    """The largest batch of each kind a server of `streams` streams runs, and so the sizes
    `producer.warm_up` prepares: clips per V-JEPA2 forward (two bins per stream at most),
    audio passes and brain-model windows per call (one per stream)."""
    n = max(1, streams)
    return {"video": max(1, min(video_max_batch, 2 * n)), "audio": n, "engine": n}


def _chunks(items: list, size: int) -> Iterator[list]:
    for lo in range(0, len(items), max(1, size)):
        yield items[lo : lo + max(1, size)]


def _groups(items: Iterable, key) -> dict[int, tuple[object, list]]:
    """Items grouped by the identity of `key(item)` (the shared model object), in order."""
    out: dict[int, tuple[object, list]] = {}
    for item in items:
        k = key(item)
        out.setdefault(id(k), (k, []))[1].append(item)
    return out


class ServerBusy(InputError):
    """A stream beyond the server's `max_streams`: the caller is to try again later."""


class Server:
    """Runs `pipelines` (one per stream, sharing extractors and engine) turn by turn."""

    def __init__(
        self,
        pipelines: Iterable[Pipeline] = (),
        *,
        clock: StreamClock | None = None,
        config: PipelineConfig | None = None,
        max_streams: int | None = None,
    ):
        self.streams: list[Pipeline] = list(pipelines)
        self.done: list[Pipeline] = []
        self.waiting: list[tuple[float, Pipeline]] = []  # (start time, stream) not started yet
        self.clock = clock or (self.streams[0].clock if self.streams else StreamClock())
        self.config = config or (self.streams[0].config if self.streams else PipelineConfig())
        self.counters = {
            "turns": 0,
            "video_forwards": 0,
            "video_clips": 0,
            # forwards collected in a later turn than the one that queued them (`video_overlap`)
            "video_collected_later": 0,
            "audio_calls": 0,
            "audio_passes": 0,
            "engine_calls": 0,
            "engine_windows": 0,
            "head_calls": 0,
            "text_calls": 0,
            "text_words": 0,
            "stream_failures": 0,
            "work_s": 0.0,
            # the loop's time by stage (seconds): intake (media, the text model's words,
            # planning), the V-JEPA2 forwards, the audio passes, brain-model and head calls
            "intake_s": 0.0,
            "text_s": 0.0,
            "video_s": 0.0,
            "audio_s": 0.0,
            "engine_s": 0.0,
            "head_s": 0.0,
            "compiles_after_warmup": 0,
            "captures_after_warmup": 0,
            "heap_trimmed_mb": 0.0,
        }
        self.text_batch = False
        """Every stream's next word in one text-model forward per turn (`add_many`) instead of
        one forward per word as it arrives (each stream's text features then exactly its own;
        batched, they equal them to the text model's rounding, bf16 on a GPU). Off by default:
        on a lent H100 the batched eager steps took as long as each word's CUDA graph (8
        streams: 45 against 40 ms per stream-second, docs/BENCHMARKS.md)."""
        self.video_overlap = False
        """A turn queues its V-JEPA2 forward and goes on (other streams' media, audio, seconds
        whose features are in) instead of waiting for it; a later turn collects it
        (`extractors.video.launch_clips`; on a GPU the forward runs on a stream of its own).
        One forward in flight per video model. Off a GPU a forward is done when it returns, so
        there it changes nothing. Off by default until a GPU has measured it."""
        self._in_flight: dict[int, tuple[object, list[tuple[Pipeline, int]], int]] = {}
        self.trim_every_s: float | None = 60.0
        """How often the loop hands the C heap's free pages back (`trim_heap`); None: never."""
        self._rr = 0  # round-robin offset for ties
        self._events: dict[str, int] | None = None  # compile counts when the clock started
        self.max_streams = max_streams
        self.keep_done = True
        """Keep every stream that left in `done` (a finite run's report); off: released."""
        self.history: deque[tuple[str, dict]] = deque(maxlen=256)  # (stream id, last counters)
        self.running = False
        self._lock = threading.Lock()  # guards the stream lists against `add`/`end` callers
        self._inbox: list[tuple[float, Pipeline]] = []  # added while running, not yet admitted
        self._ending: set[str] = set()
        self._releasing: list[threading.Thread] = []
        self._persistent = False
        self._seconds: float | None = None
        self._trimmed = time.monotonic()

    @property
    def count(self) -> int:
        """Streams running, waiting to start or just added."""
        return len(self.streams) + len(self.waiting) + len(self._inbox)

    def add(self, pipeline: Pipeline, start_s: float = 0.0) -> Pipeline:
        """Another stream. While the loop runs (any thread): it starts at the next turn (after
        `start_s` more seconds) on its own clock, zero at its start. `ServerBusy` beyond
        `max_streams`."""
        with self._lock:
            self.check_room()
            if not self.running:
                self.streams.append(pipeline)
            elif pipeline.clock is self.clock:
                raise ValueError("a stream added while the server runs needs a clock of its own")
            else:
                self._inbox.append((start_s, pipeline))
        return pipeline

    def check_room(self) -> None:
        """`ServerBusy` if `max_streams` streams are here already."""
        if self.max_streams is not None and self.count >= self.max_streams:
            raise ServerBusy(
                f"busy: {self.count} streams running, the most this server takes "
                f"(max streams {self.max_streams}); try again when one has ended"
            )

    def end(self, stream_id: str) -> bool:
        """End the stream `stream_id` at the next turn (any thread): it leaves as it is, its
        sources stopped, and gives back what it held. False if no such stream is here."""
        with self._lock:
            ids = [p.stream_id for p in self.streams]
            ids += [p.stream_id for _, p in self.waiting + self._inbox]
            found = str(stream_id) in map(str, ids)
            if found:
                self._ending.add(str(stream_id))
        return found

    def ids(self) -> list[str]:
        """The streams running, waiting or just added (their ids)."""
        with self._lock:
            return [str(p.stream_id) for p in self.streams] + [
                str(p.stream_id) for _, p in self.waiting + self._inbox
            ]

    @property
    def width(self) -> int:
        """Streams this server serves (the batch sizes follow it, `batch_limits`)."""
        return max(1, self.max_streams or 0, len(self.streams) + len(self.done) + len(self.waiting))

    # ----- one turn -----

    def step(
        self, final: set[int] | None = None, drain: bool = True
    ) -> list[tuple[str | None, Prediction]]:
        """One turn for every stream; streams whose `id` is in `final` close their last bins.
        `drain`: run every planned clip before returning (else the most urgent batch only)."""
        self.counters["turns"] += 1
        t_in = time.perf_counter()
        for p in list(self.streams):
            try:
                p.intake(final=final is not None and id(p) in final)
            except Exception as exc:  # noqa: BLE001 - a failing source ends its stream only
                self._fail(p, exc)
        t_text = time.perf_counter()
        self.counters["intake_s"] += t_text - t_in
        self._text(self.streams)
        self.counters["text_s"] += time.perf_counter() - t_text
        out: list[tuple[str | None, Prediction]] = []
        active = list(self.streams)
        if final is None and not any(p.has_work for p in active):  # nothing new to run
            self._heartbeats(active)
            return out
        t0 = time.perf_counter()
        wait = drain or final is not None or not self.video_overlap
        while True:
            t1 = time.perf_counter()
            ran = self._video(active, wait)
            t2 = time.perf_counter()
            self._audio(active)
            for p in active:
                p.commit_bins()
            t3 = time.perf_counter()
            out += self._predict(active)
            self.counters["video_s"] += t2 - t1
            self.counters["audio_s"] += t3 - t2
            if not ran or not drain:
                break
        self.counters["work_s"] += time.perf_counter() - t0
        self._check_compiles()
        self._heartbeats(active)
        return out

    def _text(self, active: list[Pipeline]) -> None:
        """The words that came this turn: one forward per round, each round every waiting
        stream's next word (`add_many`; streams sharing one text model), oldest words first."""
        todo = [p for p in active if p.pending_words and p.live_text is not None]
        if not todo:  # most turns: no word came
            return
        from tribe_stream.extractors.text import add_many

        for _, members in _groups(todo, lambda p: p.live_text.ex).values():
            while members:
                words = [p.pending_words.pop(0) for p in members]
                try:
                    vecs = add_many([p.live_text for p in members], words, on_device=True)
                except Exception as exc:  # noqa: BLE001 - those words are lost, counted
                    vecs = [None] * len(members)
                    for p in members:
                        p._failed("text", exc)
                self.counters["text_calls"] += 1
                self.counters["text_words"] += len(members)
                for p, w, v in zip(members, words, vecs, strict=True):
                    if v is not None:
                        p.apply_word(w, v)
                members = [p for p in members if p.pending_words]

    def _batching_words(self, p: Pipeline) -> bool:
        return p.live_text is not None and self.text_batch

    def _heartbeats(self, active: list[Pipeline]) -> None:
        for p in active:
            p.heartbeat()

    def _order(self, items: list[tuple[float, Pipeline, object]]) -> list:
        """Earliest deadline first; ties in a rotating stream order."""
        index = {id(p): i for i, p in enumerate(self.streams)}
        n = len(self.streams) or 1
        return sorted(items, key=lambda it: (it[0], (index.get(id(it[1]), 0) - self._rr) % n))

    def _video(self, active: list[Pipeline], wait: bool = True) -> bool:
        """Collect the forward in flight (when done, or `wait`), then queue one V-JEPA2 forward
        of the most urgent clips (collected at once when `wait`); False if nothing was
        collected or queued."""
        from tribe_stream.extractors.video import launch_clips

        ran = self._collect_video(wait)
        todo = [p for p in active if p.video_jobs]
        for extractor, members in _groups(todo, lambda p: p.ex.video).values():
            if id(extractor) in self._in_flight:
                continue  # its clips are queued already: one forward in flight a model
            limit = batch_limits(self.width, extractor.max_batch)["video"]
            jobs = [(p.deadline(bins), p, clips) for p in members for bins, clips in p.video_jobs]
            taken: dict[int, tuple[Pipeline, list]] = {}
            n = 0
            for _, p, clips in self._order(jobs):
                if n and n + len(clips) > limit:
                    break  # oldest first: a stream's jobs are taken in order, never skipped
                taken.setdefault(id(p), (p, []))[1].append(clips)
                n += len(clips)
            sets = [c for _, cs in taken.values() for c in cs]
            pending = launch_clips(extractor, sets, own_stream=not wait)
            self.counters["video_clips"] += n
            self.counters["video_forwards"] += -(-n // max(1, extractor.max_batch))
            shares = [(p, len(cs)) for p, cs in taken.values()]
            self._in_flight[id(extractor)] = (pending, shares, self.counters["turns"])
            ran = True
        self._rr += 1
        return self._collect_video(wait) or ran

    def _collect_video(self, wait: bool) -> bool:
        """Each stream's features from the forwards in flight that are done (all when `wait`),
        in its jobs' order; True if any was collected."""
        done = [k for k, (pending, *_) in self._in_flight.items() if wait or pending.ready()]
        for key in done:
            pending, shares, turn = self._in_flight.pop(key)
            self.counters["video_collected_later"] += turn < self.counters["turns"]
            results, i = pending.result(), 0
            for p, k in shares:
                p.apply_video(results[i : i + k])
                i += k
        return bool(done)

    @property
    def video_in_flight(self) -> bool:
        """A V-JEPA2 forward queued and not collected yet (`video_overlap`)."""
        return bool(self._in_flight)

    def _audio(self, active: list[Pipeline]) -> None:
        """The audio passes whose clips are in, every stream's together."""
        todo = [(p, p.audio_ready()) for p in active if p.audio_jobs]
        todo = [(p, k) for p, k in todo if k]
        for extractor, members in _groups(todo, lambda pk: pk[0].live_audio.extractor).values():
            jobs = [
                (p.deadline(bins), p, job) for p, k in members for bins, job in p.audio_jobs[:k]
            ]
            for part in _chunks(self._order(jobs), batch_limits(self.width, 1)["audio"]):
                results = extractor.extract_passes([job for _, _, job in part])
                self.counters["audio_calls"] += 1
                self.counters["audio_passes"] += len(part)
                by: dict[int, tuple[Pipeline, list]] = {}
                for (_, p, _), r in zip(part, results, strict=True):
                    by.setdefault(id(p), (p, []))[1].append(r)
                for p, rs in by.values():
                    p.apply_audio(rs)

    def _predict(self, active: list[Pipeline]) -> list[tuple[str | None, Prediction]]:
        jobs: list[tuple[Pipeline, WindowJob]] = [(p, j) for p in active for j in p.plan_seconds()]
        out = []
        for engine, members in _groups(jobs, lambda pj: pj[0].engine).values():
            for part in _chunks(members, batch_limits(self.width, 1)["engine"]):
                t_start = self.clock.now()
                results = run_windows(
                    engine, [j.features for _, j in part], [j.window.row for _, j in part]
                )
                t_done = self.clock.now()
                self.counters["engine_s"] += t_done - t_start
                self.counters["engine_calls"] += 1
                self.counters["engine_windows"] += len(part)
                for (p, j), values in zip(part, results, strict=True):
                    shift = p.clock.t0_monotonic - self.clock.t0_monotonic  # its own clock
                    pred = p.apply_prediction(j, values, t_start - shift, t_done - shift)
                    if pred is not None:
                        out.append((p.stream_id, pred))
                self._heads(part)
        return out

    def _heads(self, part: list) -> None:
        """Each further head (the subcortical model) on the windows the cortex just ran: one
        more brain-model call, on the same features."""
        for engine, members in _groups(
            [(h, p, j) for p, j in part for h in p.heads], lambda hpj: hpj[0].engine
        ).values():
            t_start = self.clock.now()
            results = run_windows(
                engine, [j.features for _, _, j in members], [j.window.row for _, _, j in members]
            )
            t_done = self.clock.now()
            self.counters["head_s"] += t_done - t_start
            self.counters["head_calls"] += 1
            for (h, p, j), values in zip(members, results, strict=True):
                shift = p.clock.t0_monotonic - self.clock.t0_monotonic
                p.apply_head(h, j, values, t_start - shift, t_done - shift)

    def _check_compiles(self) -> None:
        if self._events is None:
            return
        from tribe_stream.extractors.accel import compile_events

        now = compile_events()
        if now != self._events:
            new = {k: now[k] - self._events[k] for k in now}
            self.counters["compiles_after_warmup"] += new["compiles"]
            self.counters["captures_after_warmup"] += new["graph_captures"]
            log.warning(
                "after the warm-up: %d graph(s) compiled, %d CUDA graph(s) captured (a shape the "
                "warm-up missed; that second was slow)",
                new["compiles"],
                new["graph_captures"],
            )
            self._events = now

    def _fail(self, p: Pipeline, exc: Exception) -> None:
        if len(self.streams) + len(self.done) + len(self.waiting) == 1 and not self._persistent:
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
        """`p` leaves: released in a thread of its own (see the module docs)."""
        if p.retired:
            return
        p.retired = True
        # not a daemon: a process that ends (Ctrl-C) waits for it, so a speech recogniser it
        # is stopping is never left running at exit, which aborted the process (CTranslate2)
        t = threading.Thread(target=self._release, args=(p,), name=f"tribe-release-{p.stream_id}")
        with self._lock:  # gone from `ids()` and releasing at once, for `released()`
            if p in self.streams:
                self.streams.remove(p)
            if self.keep_done and p not in self.done:
                self.done.append(p)
            t.start()
            self._releasing = [r for r in self._releasing if r.is_alive()] + [t]

    def _release(self, p: Pipeline) -> None:
        p.stop()
        for fn in p.on_release:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - releasing one thing must not keep the rest
                log.warning("releasing stream %s: %s: %s", p.stream_id, type(exc).__name__, exc)
        self.history.append((str(p.stream_id), p.all_counters()))

    def released(self, timeout: float = 60.0) -> bool:
        """Wait until every stream that left has given back what it held; True if all have."""
        end = time.monotonic() + timeout
        with self._lock:
            threads = list(self._releasing)
        for t in threads:
            t.join(max(0.0, end - time.monotonic()))
        return not any(t.is_alive() for t in threads)

    def _admit(self) -> None:
        """Streams added or ended by other threads since the last turn."""
        with self._lock:  # they stay in the inbox (counted, listed) while they warm up
            inbox = list(self._inbox)
            ending, self._ending = self._ending, set()
        for item in inbox:
            start, p = item
            p.until = self._seconds
            if str(p.stream_id) not in ending:
                try:
                    p.warm_up()
                except Exception as exc:  # noqa: BLE001 - that stream fails, not the server
                    log.warning("stream %s could not warm up: %s", p.stream_id, exc)
                    ending.add(str(p.stream_id))
            now = time.monotonic() - self.clock.t0_monotonic
            with self._lock:
                self._inbox.remove(item)
                self.waiting.append((now + start, p))
                self.waiting.sort(key=lambda sp: sp[0])
        if not ending:
            return
        with self._lock:
            gone = [p for _, p in self.waiting if str(p.stream_id) in ending]
            self.waiting = [(t, p) for t, p in self.waiting if p not in gone]
            self.streams += gone  # never started: retired like the rest
        for p in [p for p in self.streams if str(p.stream_id) in ending]:
            self._retire(p)

    # ----- the loop -----

    def predictions(
        self,
        seconds: float | None = None,
        *,
        idle_sleep: float = 0.01,
        stop=None,
        starts: Sequence[float] | None = None,
        persistent: bool = False,
    ) -> Iterator[tuple[str | None, Prediction]]:
        """`(stream_id, prediction)` as they are made: starts every stream's sources, turns until
        each stream's sources end (then flushes its last seconds), it has `seconds` of stream
        time, or `stop` (a threading.Event) is set. Leaving early stops every source.

        `starts`: each stream's start, seconds after the first (independent sources start at
        unrelated times); a stream starting later needs its own clock, zero at its start.
        `persistent`: serve on with no stream left, until `stop` (streams come with `add`)."""
        starts = list(starts) if starts is not None else [0.0] * len(self.streams)
        if len(starts) != len(self.streams) or min(starts, default=0.0) < 0:
            raise ValueError("starts: one offset of 0 s or more per stream")
        for p, s in zip(self.streams, starts, strict=True):
            if s > 0 and p.clock is self.clock:
                raise ValueError("a stream starting later needs a clock of its own")
        with self._lock:  # from here on `add` hands streams to the loop
            initial, self.streams, self.running = list(self.streams), [], True
        self._persistent, self._seconds = persistent, seconds
        interval = sys.getswitchinterval()
        try:
            if self.config.switch_interval_s is not None:
                sys.setswitchinterval(self.config.switch_interval_s)
            for p in initial:
                p.warm_up()
                p.until = seconds  # a turn that catches up never makes a second past the limit
            from tribe_stream.extractors.accel import compile_events

            self._events = compile_events()
            self.clock.restart()
            with self._lock:
                self.waiting = sorted(zip(starts, initial, strict=True), key=lambda sp: sp[0])
            while (self.streams or self.waiting or self._inbox or persistent) and (
                stop is None or not stop.is_set()
            ):
                self._admit()
                self._start_due()
                preds = self.step(drain=False)
                yield from preds
                if seconds is not None:
                    for p in [p for p in self.streams if p.next_second >= seconds]:
                        self._retire(p)
                ended = {id(p) for p in self.streams if p.ended}
                if ended:
                    yield from self.step(final=ended)
                    for p in [p for p in self.streams if id(p) in ended]:
                        self._retire(p)
                if not preds and not any(p.has_work for p in self.streams):
                    self._trim()
                    time.sleep(self._idle(idle_sleep))
                elif not preds and self._in_flight:  # only a forward to wait for: no spinning
                    time.sleep(min(idle_sleep, 0.002))
        finally:
            sys.setswitchinterval(interval)
            with self._lock:
                self.running = False
                self.streams += [p for _, p in self.waiting + self._inbox]
                self.streams += [p for p in initial if not p.retired and p not in self.streams]
                self.waiting, self._inbox = [], []
            for p in list(self.streams):
                self._retire(p)
            self._in_flight.clear()  # a forward never collected: its clips and frames let go
            self.released()
            self._events = None

    def run(
        self,
        seconds: float | None = None,
        on_prediction: Callable[[Prediction], None] | None = None,
        **kwargs,
    ) -> list[Prediction]:
        """Every prediction of `predictions(seconds, **kwargs)`, each also to `on_prediction`."""
        out = []
        for _, p in self.predictions(seconds, **kwargs):
            if on_prediction is not None:
                on_prediction(p)
            out.append(p)
        return out

    def finish(self) -> list[Prediction]:
        """The sources ended: close every stream's last bins and predict its whole seconds."""
        return [p for _, p in self.step(final={id(p) for p in self.streams})]

    def _trim(self) -> None:
        """`trim_heap` every `trim_every_s`, between turns (it takes milliseconds)."""
        now = time.monotonic()
        if self.trim_every_s is None or now - self._trimmed < self.trim_every_s:
            return
        self._trimmed = now
        freed = trim_heap()
        self.counters["heap_trimmed_mb"] += freed
        log.debug("heap trimmed: %.1f MB back to the system, %.0f MB resident", freed, rss_mb())

    def _idle(self, idle_sleep: float) -> float:
        """Sleep until the next stream is due to start, at most `idle_sleep`."""
        if not self.waiting:
            return idle_sleep
        due = self.clock.t0_monotonic + self.waiting[0][0] - time.monotonic()
        return max(0.0, min(idle_sleep, due))

    def _start_due(self) -> None:
        """Start the streams whose time has come (each clock zero at its own start)."""
        base, base_wall = self.clock.t0_monotonic, self.clock.t0_wall
        while self.waiting and base + self.waiting[0][0] <= time.monotonic():
            with self._lock:
                offset, p = self.waiting.pop(0)
                self.streams.append(p)
            if p.clock is not self.clock:
                p.clock.t0_monotonic, p.clock.t0_wall = base + offset, base_wall + offset
            p.batch_words = self._batching_words(p)
            for sink in p.sinks:  # consumers map stream time to wall time from the new zero
                if hasattr(sink, "set_metadata"):
                    sink.set_metadata({"t0_wall": p.clock.t0_wall})
            try:
                p.start()
            except Exception as exc:  # noqa: BLE001 - the only stream re-raises
                self._fail(p, exc)

    def all_counters(self) -> dict[str, dict[str, float]]:
        """Each stream's counters, by stream id (those released: their last counters)."""
        out = dict(self.history)
        out.update({str(p.stream_id): p.all_counters() for p in self.done + self.streams})
        return out
