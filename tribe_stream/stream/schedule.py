"""Which window predicts which second: the stream's causal segmented state, in one place.

Second k (stimulus [k, k+1), bins 2k and 2k+1) is predicted from the window of at most 200 bins
ending `lag` seconds after it: bins [max(0, e - 200), e) with e = 2k + 2 + 2·lag, cut at the
last bin of the stream when it ends sooner. Nothing after bin e - 1 is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tribe_stream import MAX_TOKENS


@dataclass(frozen=True)
class Window:
    second: int
    start: int  # first bin (even)
    stop: int  # one past the last bin
    row: int  # the second's pooled row inside the window

    @property
    def n_bins(self) -> int:
        return self.stop - self.start


def lag_bins(lag: float) -> int:
    bins = round(lag * 2)
    if bins < 0 or abs(bins - lag * 2) > 1e-9:
        raise ValueError(f"--lag must be a non-negative multiple of 0.5 s, not {lag}")
    return bins


def window_for(second: int, lag: float, total_bins: int | None = None) -> Window:
    """The window that predicts `second`; `total_bins` cuts it at the end of a finished stream."""
    stop = 2 * second + 2 + lag_bins(lag)
    if total_bins is not None:
        stop = min(stop, total_bins)
    start = max(0, stop - MAX_TOKENS)
    start += start % 2  # keep seconds on pooled rows (stop is even except at a stream's odd end)
    return Window(second, start, stop, (2 * second - start) // 2)


def ready(second: int, lag: float, closed_bins: int) -> bool:
    """Second k can be predicted once its window's last bin has closed."""
    return closed_bins >= 2 * second + 2 + lag_bins(lag)


def reference_predictions(engine, features: dict[str, np.ndarray | None], lag: float) -> np.ndarray:
    """What the live stream must output for whole features `(L, D, T)`: `(n_seconds, n_outputs)`.

    The offline twin of the scheduler, used to check a replayed stream prediction for prediction.
    """
    present = {m: x for m, x in features.items() if x is not None}
    T = next(iter(present.values())).shape[-1]
    out = []
    for k in range(T // 2):
        w = window_for(k, lag, T)
        window = {m: x[..., w.start : w.stop] for m, x in present.items()}
        out.append(engine.run(window, rows=[w.row])[0])
    return np.stack(out)
