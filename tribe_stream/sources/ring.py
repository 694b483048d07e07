"""A single-writer, single-reader sample ring for the PortAudio callback.

The callback only copies its block in (`write`) and notes when the block's first sample was
captured; it never allocates, blocks or waits for the reader. When the reader falls more than
the capacity behind, the oldest samples are overwritten and `read` reports how many were lost.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class SampleRing:
    """`capacity` frames of `channels` float32 samples, with (sample index, time) marks per block."""

    def __init__(self, capacity: int, channels: int, rate: float) -> None:
        self.capacity = int(capacity)
        self.channels = int(channels)
        self.rate = float(rate)
        self._buf = np.zeros((self.capacity, self.channels), np.float32)
        self.written = 0  # total frames ever written; only the writer changes it
        self._read = 0
        self.marks: deque[tuple[int, float]] = deque(maxlen=256)
        self.overflows = 0  # PortAudio input-overflow flags seen by the callback

    def write(self, block: np.ndarray, start_time: float) -> None:
        """Copy `block` (frames, channels) in; `start_time` is its first sample's stream time."""
        n = len(block)
        if n == 0:
            return
        if n > self.capacity:
            block = block[-self.capacity :]
            start_time += (n - self.capacity) / self.rate
            self.written += n - self.capacity
            n = self.capacity
        pos = self.written % self.capacity
        first = min(n, self.capacity - pos)
        self._buf[pos : pos + first] = block[:first]
        if first < n:
            self._buf[: n - first] = block[first:]
        self.marks.append((self.written, start_time))
        self.written += n

    def read(self) -> tuple[int, np.ndarray, int]:
        """(index of the first returned frame, frames written since the last read, frames lost).

        Frames the writer overwrote before (or while) they were copied are left out and counted
        as lost; the returned frames are contiguous from the returned index.
        """
        end = self.written
        start = max(self._read, end - self.capacity)
        lost = start - self._read
        out = self._buf[np.arange(start, end) % self.capacity]  # a copy, wrapping around
        # The writer may have lapped us during the copy: drop what it overwrote.
        overwritten = min(len(out), self.written - self.capacity - start)
        if overwritten > 0:
            out = out[overwritten:]
            lost += overwritten
            start += overwritten
        self._read = end
        return start, out, lost
