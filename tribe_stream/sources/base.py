"""The Source interface: a capture thread, a bounded chunk queue, counters and an end state.

A live source never waits for its consumer: a full queue drops its OLDEST chunk, counted
(`overflow="drop_oldest"`); offline replay (`realtime=False`) blocks instead (`"block"`), so that
"as fast as possible" means as fast as the consumer takes it, losing nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Literal

import av
import numpy as np

from tribe_stream.clock import StreamClock
from tribe_stream.errors import SourceError
from tribe_stream.media import BadFrame, frame_to_rgb
from tribe_stream.types import Chunk

log = logging.getLogger("tribe_stream.sources")

Overflow = Literal["drop_oldest", "block"]

COUNTER_KEYS: tuple[str, ...] = (
    "chunks",  # chunks put into the queue
    "frames",  # video frames put into the queue
    "samples",  # 16 kHz audio samples put into the queue
    "dropped_chunks",  # chunks dropped because the consumer fell behind (oldest first)
    "dropped_frames",  # video frames inside those dropped chunks
    "dropped_samples",  # audio samples inside those dropped chunks
    "corrupt_frames",  # video packets/frames that failed to decode or came out flagged corrupt
    "nan_frames",  # float video frames with NaN/inf values (skipped)
    "out_of_order_frames",  # frames whose stamp did not advance (skipped)
    "skipped_frames",  # frames left out on purpose: `max_fps`, or before the stream began
    "skipped_samples",  # 16 kHz-equivalent samples captured before the stream began (not a loss)
    "audio_errors",  # audio packets that failed to decode
    "audio_gaps",  # audio discontinuities (lost packets, device stalls): stamps re-anchored
    "nonfinite_samples",  # audio samples NaN, inf or beyond ±32768 (made silent)
    "overflows",  # PortAudio input overflows reported by the device
    "ring_overflow_samples",  # device-rate samples lost because the audio ring buffer was full
    "clock_resyncs",  # hard re-anchors of media/device time onto the stream clock
    "reconnects",  # successful re-openings after the input ended or dropped out
    "reconnect_failures",  # re-open attempts that failed (device still gone)
    "errors",  # read/device errors and dropouts (each one logged)
    "loops",  # file replays restarted from the beginning (`loop=True`)
)


class ChunkQueue:
    """A bounded FIFO of chunks; when full it drops the oldest chunk (or blocks), counting drops."""

    def __init__(self, maxsize: int, overflow: Overflow, counters: Counters) -> None:
        if maxsize < 1:
            raise ValueError("queue size must be at least 1")
        self.maxsize = maxsize
        self.overflow = overflow
        self._items: deque[Chunk] = deque()
        self._cond = threading.Condition()
        self._counters = counters
        self._closed = False

    def put(self, chunk: Chunk, stop: threading.Event | None = None) -> bool:
        """Queue `chunk`; returns False only if blocking was interrupted by `stop`."""
        with self._cond:
            if self.overflow == "block":
                while len(self._items) >= self.maxsize and not self._closed:
                    if stop is not None and stop.is_set():
                        return False
                    self._cond.wait(0.05)
            elif len(self._items) >= self.maxsize:
                old = self._items.popleft()
                self._counters.add(
                    dropped_chunks=1,
                    dropped_frames=_n_frames(old),
                    dropped_samples=_n_samples(old),
                )
            self._items.append(chunk)
            self._counters.add(chunks=1, frames=_n_frames(chunk), samples=_n_samples(chunk))
            self._cond.notify_all()
            return True

    def drain(self) -> list[Chunk]:
        with self._cond:
            items = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return items

    def get(self, timeout: float | None) -> Chunk | None:
        """The oldest chunk, waiting up to `timeout` s (None: until one comes or the source ends)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            if not self._items:
                return None
            chunk = self._items.popleft()
            self._cond.notify_all()
            return chunk

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        return len(self._items)


def _n_frames(chunk: Chunk) -> int:
    return len(chunk.data) if chunk.kind == "video" else 0  # type: ignore[arg-type]


def _n_samples(chunk: Chunk) -> int:
    return len(chunk.data) if chunk.kind == "audio" else 0  # type: ignore[arg-type]


class Counters:
    """Thread-safe integer counters with a fixed key set (`COUNTER_KEYS`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(COUNTER_KEYS, 0)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for key, delta in deltas.items():
                self._values[key] += delta

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


class Source:
    """Base class: owns the capture thread, the chunk queue, the counters and the end state.

    Subclasses implement `_open()` (called once in `start()`, in the caller's thread, so that a
    missing device raises `SourceError` right away) and `_run()` (the capture loop, in the thread;
    it returns at end of input or when `self._stop.is_set()`, and pushes chunks with `_emit`).
    """

    kind: str = "media"
    backoff: tuple[float, float] = (0.25, 5.0)  # reopening: (first, maximum) seconds apart
    max_reconnects: int | None = None  # failed reopens in a row before giving up (None: never)

    def __init__(
        self,
        *,
        clock: StreamClock | None = None,
        queue_size: int = 64,
        overflow: Overflow = "drop_oldest",
        name: str | None = None,
    ) -> None:
        self.clock = clock if clock is not None else StreamClock()
        self.name = name or type(self).__name__
        self._counters = Counters()
        self._queue = ChunkQueue(queue_size, overflow, self._counters)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ended = threading.Event()
        self._error: SourceError | None = None
        self._started = False
        self._corrupt_logged = 0
        self._container: av.container.InputContainer | None = None  # a PyAV input, if any

    # ----- public API -----
    def start(self) -> Source:
        """Open the input (raises `SourceError` if it cannot) and start the capture thread."""
        if self._started:
            return self
        self._open()
        self._started = True
        self._thread = threading.Thread(target=self._thread_main, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop capture and wait for the thread; chunks already queued can still be polled."""
        self._stop.set()
        self._queue.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if not self._started:
            self._ended.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the source has ended; True if it has."""
        return self._ended.wait(timeout)

    def poll(self) -> list[Chunk]:
        """All chunks available now, oldest first; never blocks."""
        return self._queue.drain()

    def get(self, timeout: float | None = None) -> Chunk | None:
        """The next chunk, waiting up to `timeout` seconds; None if there is none."""
        return self._queue.get(timeout)

    def __iter__(self) -> Iterator[Chunk]:
        """Chunks as they come, until the source has ended and its queue is empty."""
        while True:
            chunk = self._queue.get(0.05)
            if chunk is not None:
                yield chunk
            elif self._ended.is_set() and len(self._queue) == 0:
                return

    @property
    def counters(self) -> dict[str, int]:
        """A snapshot of the counters (`COUNTER_KEYS`) plus `queue_depth`."""
        snap = self._counters.snapshot()
        snap["queue_depth"] = len(self._queue)
        return snap

    @property
    def ended(self) -> bool:
        """True once the capture thread has finished (end of input, fatal error or `stop()`)."""
        return self._ended.is_set()

    @property
    def error(self) -> SourceError | None:
        """The error that ended the source, if one did."""
        return self._error

    def __enter__(self) -> Source:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- for subclasses -----
    def _open(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        """Release the input (the PyAV container, if any); called in the capture thread when
        `_run` returns."""
        if self._container is not None:
            container, self._container = self._container, None
            container.close()

    def _emit(self, chunk: Chunk) -> bool:
        return self._queue.put(chunk, self._stop)

    def _count(self, **deltas: int) -> None:
        self._counters.add(**deltas)

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopped; True if the source was stopped meanwhile."""
        if seconds > 0:
            return self._stop.wait(seconds)
        return self._stop.is_set()

    def _sleep_until(self, t: float) -> bool:
        """Sleep until stream time `t` (or stop); True if stopped."""
        while True:
            delay = t - self.clock.now()
            if delay <= 0:
                return self._stop.is_set()
            if self._stop.wait(min(delay, 0.05)):
                return True

    def _corrupt(self, message: str) -> None:
        """Count and log a corrupt frame that was skipped (the first 5, then every 100th)."""
        self._count(corrupt_frames=1)
        self._corrupt_logged += 1
        if self._corrupt_logged <= 5 or self._corrupt_logged % 100 == 0:
            log.warning(
                "%s: skipped a corrupt frame (%d so far): %s",
                self.name,
                self._corrupt_logged,
                message,
            )

    def _frame_rgb(
        self, frame: av.VideoFrame, max_size: int | None, at: str = ""
    ) -> np.ndarray | None:
        """`frame_to_rgb(frame, max_size)`, or None for a frame to skip: counted and logged, NaN
        frames as `nan_frames` (`at` tells where, in the log), others through `_corrupt`."""
        try:
            return frame_to_rgb(frame, max_size)
        except BadFrame as exc:
            if exc.reason == "nan":
                self._count(nan_frames=1)
                log.warning("%s: skipped a frame%s: %s", self.name, at, exc)
            else:
                self._corrupt(str(exc))
        except (ValueError, av.FFmpegError) as exc:
            self._corrupt(f"conversion failed: {exc}")
        return None

    def _retry_open(self, open_input: Callable[[], object]) -> bool:
        """Call `open_input` until it stops raising `SourceError`, waiting `backoff[0]` s after
        the first failure, doubling up to `backoff[1]`. True once it succeeded; False when stopped
        or after `max_reconnects` failures (then `error` says so). Failures and successes counted."""
        (first, maximum), max_tries = self.backoff, self.max_reconnects
        failures = 0
        delay = 0.0
        while not self._sleep(delay):
            try:
                open_input()
            except SourceError as exc:
                failures += 1
                self._count(reconnect_failures=1)
                log.warning("%s: reopen failed (%d): %s", self.name, failures, exc)
                if max_tries is not None and failures >= max_tries:
                    self._error = SourceError(f"{self.name}: gave up after {failures} tries: {exc}")
                    return False
                delay = first if failures == 1 else min(maximum, delay * 2)
            else:
                self._count(reconnects=1)
                return True
        return False

    def _fail(self, message: str) -> None:
        self._error = SourceError(f"{self.name}: {message}")
        log.error("%s", self._error)

    def _thread_main(self) -> None:
        try:
            self._run()
        except SourceError as exc:
            self._count(errors=1)
            self._error = exc
            log.error("%s: %s", self.name, exc)
        except Exception as exc:  # a source must never take the process down
            self._count(errors=1)
            self._fail(f"capture stopped on an unexpected error: {type(exc).__name__}: {exc}")
            log.debug("%s: traceback", self.name, exc_info=True)
        finally:
            try:
                self._close()
            except Exception:  # closing a dead device may fail too; nothing left to save
                log.debug("%s: error while closing", self.name, exc_info=True)
            self._ended.set()
            self._queue.close()
