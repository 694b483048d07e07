"""Per-modality feature history: one `(L, D)` slot per 0.5 s bin, indexed by absolute bin number."""

from __future__ import annotations

import numpy as np


class FeatureRing:
    """The newest `capacity` bins of one modality; a bin never written reads as zeros (empty)."""

    def __init__(self, shape: tuple[int, int], capacity: int = 2400):
        self.shape = tuple(shape)
        self.capacity = capacity
        self._data = np.zeros((capacity, *shape), np.float32)
        self._owner = np.full(capacity, -1, np.int64)  # which absolute bin each slot holds

    def _slot(self, b: int) -> int:
        slot = b % self.capacity
        if self._owner[slot] != b:
            self._data[slot] = 0.0
            self._owner[slot] = b
        return slot

    def set(self, b: int, values: np.ndarray) -> None:
        self._data[self._slot(b)] = values

    def add(self, b: int, values: np.ndarray) -> None:
        """Sum into bin b (words overlapping a bin add up)."""
        self._data[self._slot(b)] += values

    def window(self, start: int, stop: int) -> np.ndarray:
        """Bins [start, stop) as `(L, D, T)`; bins older than the capacity are an error."""
        if stop - start > self.capacity:
            raise ValueError("window longer than the ring")
        out = np.zeros((stop - start, *self.shape), np.float32)
        for i, b in enumerate(range(start, stop)):
            slot = b % self.capacity
            if self._owner[slot] == b:
                out[i] = self._data[slot]
        return np.ascontiguousarray(out.transpose(1, 2, 0))
