"""Where a live stream's latency goes: per-stage delays of each prediction, from its headers.

Subscribes to a running stream (`tribe-stream run` or `demo --publish URL`) and, for every
prediction, splits the time from the end of its data window to its arrival here into stages:

    window end → bin closed → features ready → model start → model end → publish → received

then prints percentiles per stage (rich table). Stream-clock stamps come from the header's
`timings`; arrival is mapped onto the stream clock with the header's `t0_wall`.

    python tools/latency_report.py tcp://127.0.0.1:5556 --count 30
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tribe_stream.stream.latency import STAGES, stage_delays  # noqa: E402, F401


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    from tribe_stream.client import Subscriber

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url", nargs="?", default="tcp://127.0.0.1:5556")
    ap.add_argument("--count", type=int, default=30, help="predictions to collect")
    ap.add_argument(
        "--timeout", type=float, default=60.0, help="give up after this many seconds of silence"
    )
    args = ap.parse_args()

    rows: list[dict[str, float]] = []
    with Subscriber(args.url) as sub:
        while len(rows) < args.count:
            msg = sub.recv(timeout=args.timeout)
            if msg is None:
                break
            t0 = msg.header.get("t0_wall") or (sub.metadata or {}).get("t0_wall")
            if t0 is None:
                continue  # a replay without a stream clock: no stage stamps to compare
            rows.append(stage_delays(msg.header, time.time() - t0))
        gaps = sub.gaps
    console = Console()
    if not rows:
        console.print("no predictions with stream-clock stamps arrived")
        return
    table = Table(title=f"latency per stage over {len(rows)} predictions ({args.url}); gaps {gaps}")
    for col in ("stage", "p50 ms", "p90 ms", "max ms"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for _, _, label in STAGES:
        vals = np.array([r[label] for r in rows if label in r])
        if vals.size:
            table.add_row(label, *(f"{v:.1f}" for v in np.percentile(vals, [50, 90, 100])))
    console.print(table)


if __name__ == "__main__":
    main()
