"""Whole-recording prediction from features, in windows of at most 200 bins (100 s)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tribe_stream import MAX_TOKENS
from tribe_stream.errors import InputError
from tribe_stream.types import MODALITIES


def read_features(path: Path | str) -> dict[str, np.ndarray]:
    """Read an `.npz` with `text`, `audio`, `video` arrays `(L, D, T)`; an absent modality is an absent key."""
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"{path} does not exist; pass an .npz with text/audio/video arrays of shape (L, D, T)"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            feats = {k: np.asarray(z[k], dtype=np.float32) for k in z.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path} as .npz: {exc}") from None
    unknown = set(feats) - set(MODALITIES)
    if unknown:
        raise InputError(
            f"{path} has unknown arrays {sorted(unknown)}; use the keys text, audio, video"
        )
    if not feats:
        raise InputError(f"{path} holds no features; it needs at least one of text, audio, video")
    return feats


def predict_windows(
    engine, features: dict[str, np.ndarray], *, tokens: bool = False, pad_last: bool = False
) -> np.ndarray:
    """Predict features of any length `T`, time-major `(T_out, n_outputs)` float32.

    The features are cut into consecutive non-overlapping windows of 200 bins, each run on its
    own, as the official `predict` does. `pad_last=True` zero-pads the last window to 200 bins as
    the official code does (the padded rows are then cut off); by default a window shorter than
    200 bins runs as it is, which is exact for the bins given. Pooled: one row per second
    (ceil(T/2)); `tokens=True`: one row per bin.
    """
    present = {m: x for m, x in features.items() if x is not None}
    if not present:
        raise InputError("no modality given")
    T = next(iter(present.values())).shape[-1]
    rows = []
    for start in range(0, T, MAX_TOKENS):
        stop = min(start + MAX_TOKENS, T)
        window = {m: x[..., start:stop] for m, x in present.items()}
        n = stop - start
        if pad_last and n < MAX_TOKENS:
            window = {
                m: np.pad(x, [(0, 0), (0, 0), (0, MAX_TOKENS - n)]) for m, x in window.items()
            }
        out = engine.run(window, pool=not tokens)
        keep = n if tokens else (n + 1) // 2
        rows.append(out[:keep])
    return np.concatenate(rows, axis=0).astype(np.float32, copy=False)
