"""The engine interface: one window of features in, predictions out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from tribe_stream import MAX_TOKENS
from tribe_stream.errors import InputError
from tribe_stream.model.loading import LoadedModel


class Engine(ABC):
    """Runs the brain model on one window (T ≤ 200 tokens) of one stream.

    `run(features, pool=True, rows=None)`: `features` maps text/audio/video to float arrays
    `(L, D, T)` (NumPy, or torch tensors, best already on `engine.device`) or None (absent). Returns float32 `(R, n_outputs)`: all pooled rows (one per
    second), all tokens (`pool=False`), or only the pooled `rows` asked for (a live stream asks
    for its newest second only).
    """

    name: str = "engine"

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.config = loaded.config
        self.device = torch.device("cpu")

    def check(self, features: dict[str, np.ndarray | None]) -> int:
        """Validate shapes against the model; return T."""
        present = {m: x for m, x in features.items() if x is not None}
        if not present:
            raise InputError("no modality given: pass at least one of text, audio, video")
        Ts = set()
        for m, x in present.items():
            dims = self.config.feature_dims.get(m)
            if dims is None:
                raise InputError(
                    f"the model takes no {m!r} features (it takes {list(self.config.feature_dims)})"
                )
            if x.ndim != 3 or tuple(x.shape[:2]) != tuple(dims):
                raise InputError(
                    f"{m} features have shape {tuple(x.shape)}; expected (L={dims[0]}, D={dims[1]}, T)"
                )
            finite = (
                bool(torch.isfinite(x).all())
                if isinstance(x, torch.Tensor)
                else np.isfinite(x).all()
            )
            if not finite:
                raise InputError(f"{m} features contain NaN or inf; replace bad bins with zeros")
            Ts.add(x.shape[-1])
        if len(Ts) != 1:
            raise InputError(f"modalities have different numbers of time bins: {sorted(Ts)}")
        T = Ts.pop()
        if not 1 <= T <= MAX_TOKENS:
            raise InputError(f"a window holds 1 to {MAX_TOKENS} bins, got {T}")
        return T

    @staticmethod
    def finite(out: np.ndarray, features: dict) -> np.ndarray:
        """`out` if every value is finite; else an InputError naming the likely cause."""
        if np.isfinite(out).all():
            return out
        peak = max(
            float(x.abs().max() if isinstance(x, torch.Tensor) else np.abs(x).max())
            for x in features.values()
            if x is not None
        )
        raise InputError(
            f"the brain model's output is not finite (NaN or inf) for these features (largest "
            f"|value| {peak:.3g}): features this large overflow it; check how they were made"
        )

    @abstractmethod
    def run(
        self,
        features: dict[str, np.ndarray | None],
        *,
        pool: bool = True,
        rows: Sequence[int] | None = None,
    ) -> np.ndarray: ...

    def run_batch(
        self, windows: Sequence[dict[str, np.ndarray | None]], rows: Sequence[int]
    ) -> list[np.ndarray | Exception]:
        """One pooled row of each of several windows (several streams' seconds): `(n_outputs,)`
        float32 per window, or the exception that window raised (a bad window costs only its
        own row). Engines that can batch windows in one call override `_run_group`."""
        out: list = [None] * len(windows)
        groups: dict[tuple, list[int]] = {}
        for i, w in enumerate(windows):
            try:
                T = self.check(w)
            except Exception as exc:  # noqa: BLE001 - this window's stream counts it
                out[i] = exc
                continue
            present = tuple(m for m in self.config.feature_dims if w.get(m) is not None)
            groups.setdefault((present, self.batch_key(T)), []).append(i)
        for members in groups.values():
            try:
                if len(members) == 1:
                    i = members[0]
                    values = [self.run(windows[i], rows=[rows[i]])[0]]
                else:
                    values = self._run_group(
                        [windows[i] for i in members], [rows[i] for i in members]
                    )
            except Exception as exc:  # noqa: BLE001
                for i in members:
                    out[i] = exc
                continue
            for i, v in zip(members, values, strict=True):
                out[i] = v
        return out

    def batch_key(self, T: int) -> int:
        """Windows that may share one call: by default only those of one length."""
        return T

    def _run_group(self, windows: list[dict], rows: list[int]) -> list[np.ndarray]:
        """Windows of one length and one set of modalities; by default one call each."""
        return [self.run(w, rows=[r])[0] for w, r in zip(windows, rows, strict=True)]
