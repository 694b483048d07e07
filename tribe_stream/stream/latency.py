"""Where a prediction's latency goes: its delay from the end of its data window to its arrival,
split into stages from the header's stream-clock stamps (used by `tools/latency_report.py` and
`tribe-stream bench`).

    window end → bin closed → features ready → model start → model end → publish → received
"""

from __future__ import annotations

import numpy as np

STAGES = [
    ("window_end", "bin_closed", "waiting for the window's last bin to close"),
    ("bin_closed", "features_ready", "feature extraction"),
    ("features_ready", "model_start", "queue before the brain model"),
    ("model_start", "model_end", "brain model"),
    ("model_end", "publish", "to the publisher"),
    ("publish", "received", "transport and decoding"),
    ("window_end", "received", "end to end (data → here)"),
]
END_TO_END = STAGES[-1][2]


def stage_delays(header: dict, received_stream_time: float) -> dict[str, float]:
    """Milliseconds per stage for one prediction header (stages with a missing stamp are left out)."""
    t = {**(header.get("timings") or {}), "received": received_stream_time}
    return {
        label: (t[b] - t[a]) * 1e3
        for a, b, label in STAGES
        if t.get(a) is not None and t.get(b) is not None
    }


def quantiles(values, qs: tuple[float, ...] = (50, 95, 99, 100)) -> dict[str, float]:
    """`{"p50": v, ...}` of `values` (`p100` is the maximum)."""
    return {f"p{q:g}": float(v) for q, v in zip(qs, np.percentile(values, qs), strict=True)}


def percentiles(
    rows: list[dict[str, float]], qs: tuple[float, ...] = (50, 95, 99, 100)
) -> dict[str, dict[str, float]]:
    """Per stage: `quantiles` in ms over `rows` of `stage_delays`."""
    vals = {label: [r[label] for r in rows if label in r] for _, _, label in STAGES}
    return {label: quantiles(v, qs) for label, v in vals.items() if v}
