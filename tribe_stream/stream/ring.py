"""Per-modality feature history: one `(L, D)` slot per 0.5 s bin, indexed by absolute bin number.

The ring lives on the engine's device, so a window reaches the brain model without a host copy:
each new bin crosses once (a few KB), and `window()` is one gather on the device.
"""

from __future__ import annotations

import numpy as np
import torch


class FeatureRing:
    """The newest `capacity` bins of one modality; a bin never written reads as zeros (empty)."""

    def __init__(
        self, shape: tuple[int, int], capacity: int = 2400, device: str | torch.device = "cpu"
    ):
        self.shape = tuple(shape)
        self.capacity = capacity
        self.device = torch.device(device)
        self._data = torch.zeros((capacity, *shape), dtype=torch.float32, device=self.device)
        self._owner = np.full(capacity, -1, np.int64)  # which absolute bin each slot holds

    def _slot(self, b: int) -> int:
        slot = b % self.capacity
        if self._owner[slot] != b:
            self._data[slot] = 0.0
            self._owner[slot] = b
        return slot

    def set(self, b: int, values) -> None:
        self._data[self._slot(b)] = torch.as_tensor(values, dtype=torch.float32).to(self.device)

    def add(self, b: int, values) -> None:
        """Sum into bin b (words overlapping a bin add up)."""
        self._data[self._slot(b)] += torch.as_tensor(values, dtype=torch.float32).to(self.device)

    def window(self, start: int, stop: int) -> torch.Tensor:
        """Bins [start, stop) as `(L, D, T)` on the ring's device; bins overwritten since read as zeros."""
        if stop - start > self.capacity:
            raise ValueError("window longer than the ring")
        bins = np.arange(start, stop)
        slots = bins % self.capacity
        valid = self._owner[slots] == bins
        if valid.all():
            idx = torch.from_numpy(slots).to(self.device)
            return self._data.index_select(0, idx).permute(1, 2, 0)
        out = torch.zeros((stop - start, *self.shape), dtype=torch.float32, device=self.device)
        keep = np.flatnonzero(valid)
        if keep.size:
            out[torch.from_numpy(keep).to(self.device)] = self._data[
                torch.from_numpy(slots[keep]).to(self.device)
            ]
        return out.permute(1, 2, 0)
