"""Predictions at a scan's acquisition times: the one place 1 Hz predictions meet a TR.

Every time here is on the stimulus clock (0 = the stimulus's start). A 1 Hz row for stimulus
second k is the predicted BOLD at k + 5 s (the hemodynamic offset, docs/MODEL.md §2). A scan
whose first volume is acquired at `onset` s and then every `tr` s acquires volume i at
`onset + i * tr`; its predicted value is the predicted BOLD at that time, linearly interpolated
in time between the two rows whose BOLD times bracket it (exactly a row where they coincide;
across a gap in the rows, between the rows on either side). Volumes outside the predicted span
(before the first row's BOLD time or after the last's) are left out, never extrapolated: the
output holds volumes `volumes[0] .. volumes[-1]` of the scan (docs/OUTPUTS.md).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from tribe_stream import HEMODYNAMIC_OFFSET_S
from tribe_stream.errors import InputError

RESAMPLING = (
    "linear interpolation in time of the predicted BOLD (row k at stimulus second k + "
    "hemodynamic_offset_s) at each volume's acquisition time onset_s + i * tr_s (stimulus "
    "clock); volumes outside the predicted span left out"
)
"""What a resampled file's metadata says was done (`resampling`)."""


def scan_volumes(
    seconds: np.ndarray, tr: float, onset: float = 0.0, offset: float = HEMODYNAMIC_OFFSET_S
) -> tuple[np.ndarray, np.ndarray]:
    """`(volumes, times)`: the indices i >= 0 of the scan's volumes whose acquisition times
    `onset + i * tr` lie within the predicted BOLD span of rows `seconds` (`seconds + offset`),
    and those times."""
    if not (math.isfinite(tr) and tr > 0 and math.isfinite(onset)):
        raise InputError(f"a scan needs a TR above 0 s and a finite onset, not {tr}, {onset}")
    s = np.asarray(seconds, np.float64)
    if s.size == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    lo, hi = float(s.min()) + offset, float(s.max()) + offset
    first = max(0, math.ceil((lo - onset) / tr - 1e-9))
    last = math.floor((hi - onset) / tr + 1e-9)
    volumes = np.arange(first, max(first, last + 1), dtype=np.int64)
    return volumes, onset + volumes * tr


def resample(
    values: np.ndarray,
    seconds: np.ndarray,
    times: np.ndarray,
    offset: float = HEMODYNAMIC_OFFSET_S,
) -> np.ndarray:
    """`values (T, n)`, row i the predicted BOLD at `seconds[i] + offset`, linearly interpolated
    at `times` (same clock): `(len(times), n)` float32. A time outside the rows' span: one line."""
    v = np.asarray(values, np.float32)
    order = np.argsort(np.asarray(seconds, np.float64), kind="stable")
    bold = np.asarray(seconds, np.float64)[order] + offset
    t = np.asarray(times, np.float64)
    if len(bold) == 0 or v.ndim != 2 or len(v) != len(bold):
        raise InputError(f"cannot resample {v.shape} values with {len(bold)} row times")
    eps = 1e-6
    if t.size and (t.min() < bold[0] - eps or t.max() > bold[-1] + eps):
        raise InputError(
            f"times {t.min():g}..{t.max():g} s fall outside the predicted BOLD "
            f"{bold[0]:g}..{bold[-1]:g} s: interpolation does not extrapolate"
        )
    if len(bold) == 1:
        return np.repeat(v[order], len(t), axis=0)
    j = np.clip(np.searchsorted(bold, t, side="right") - 1, 0, len(bold) - 2)
    w = np.clip((t - bold[j]) / (bold[j + 1] - bold[j]), 0.0, 1.0)[:, None]
    a, b = v[order[j]], v[order[j + 1]]
    return ((1.0 - w) * a + w * b).astype(np.float32)


def resample_predictions(preds: Any, tr: float, onset: float = 0.0) -> Any:
    """`Predictions` at a scan's volumes (`scan_volumes`; contributions too): row j is volume
    `volumes[j]`, acquired at `times_s[j]`; `seconds` = those times - the offset. The metadata
    say `tr_s`, `onset_s`, `times_s`, `volumes` and `resampling`."""
    offset = float(preds.metadata.get("hemodynamic_offset_s", HEMODYNAMIC_OFFSET_S))
    volumes, times = scan_volumes(preds.seconds, tr, onset, offset)
    if volumes.size == 0:
        s = np.asarray(preds.seconds, np.float64)
        span = f"{s.min() + offset:g}..{s.max() + offset:g} s" if s.size else "nothing"
        raise InputError(
            f"no volume of a TR {tr:g} s scan starting at {onset:g} s falls within the "
            f"predicted BOLD ({span}, stimulus clock); check --tr and --onset"
        )
    meta = {
        **preds.metadata,
        "tr_s": float(tr),
        "onset_s": float(onset),
        "hemodynamic_offset_s": offset,
        "times_s": times.tolist(),
        "volumes": volumes.tolist(),
        "resampling": RESAMPLING,
        "predicted_seconds": len(preds),  # the 1 Hz rows resampled
        "rows": "row j = scan volume volumes[j], the predicted BOLD at times_s[j] s after the "
        "stimulus's start",
    }
    nested = {  # contributions (and other heads' predictions) alike
        name: {k: resample_predictions(p, tr, onset) for k, p in getattr(preds, name).items()}
        for name in ("contributions", "heads")
        if hasattr(preds, name)
    }
    return replace(
        preds,
        values=resample(preds.values, preds.seconds, times, offset),
        seconds=times - offset,
        metadata=meta,
        **nested,
    )
