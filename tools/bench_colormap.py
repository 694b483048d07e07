"""What the default colormap (cold_hot) costs a viewer or renderer start, two ways side by side:

- nilearn: `import nilearn.plotting.cm`, which registers nilearn's cold_hot with matplotlib, then
  `matplotlib.colormaps["cold_hot"]` (importing nilearn.plotting imports all of its plotting);
- ours: `tribe_stream.surface.colors.get_colormap("cold_hot")`, which makes the same table from
  matplotlib's `hot` the way nilearn makes it (a mirror with red and blue swapped).

Each run is a fresh Python process that has already imported nilearn.datasets (as the viewer has,
to load the fsaverage5 mesh) and numpy; the time is from there to the 256-entry table, matplotlib's
import included in both. Also checks that the two tables are equal.

    python tools/bench_colormap.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

PRELUDE = "import time, numpy as np, nilearn.datasets\nt = time.perf_counter()\n"
VARIANTS = {
    "nilearn": (
        "import matplotlib, nilearn.plotting.cm\n"
        "lut = matplotlib.colormaps['cold_hot'](np.linspace(0, 1, 256)).astype(np.float32)\n"
    ),
    "ours": (
        "from tribe_stream.surface.colors import get_colormap\nlut = get_colormap('cold_hot').lut\n"
    ),
}
REPORT = "dt = time.perf_counter() - t\nnp.save(sys.argv[1], lut)\nprint(dt)\n"


def run(variant: str, out: str) -> float:
    code = "import sys\n" + PRELUDE + VARIANTS[variant] + REPORT
    r = subprocess.run(
        [sys.executable, "-c", code, out], capture_output=True, text=True, check=True
    )
    return float(r.stdout.strip().splitlines()[-1])


def main() -> None:
    import tempfile
    from pathlib import Path

    import numpy as np

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        luts = {v: str(Path(tmp) / f"{v}.npy") for v in VARIANTS}
        for _ in range(args.runs):  # interleaved, so both see the same machine load
            for v in VARIANTS:
                times[v].append(run(v, luts[v]))
        diff = np.abs(np.load(luts["nilearn"]) - np.load(luts["ours"])).max()
    med = {v: statistics.median(t) for v, t in times.items()}
    for v in VARIANTS:
        print(
            f"{v:8s} median {med[v] * 1000:7.1f} ms  (runs: {', '.join(f'{t:.3f}' for t in times[v])} s)"
        )
    print(f"nilearn / ours: {med['nilearn'] / med['ours']:.1f}x slower start")
    print(f"largest difference between the two tables: {diff:.3g}")


if __name__ == "__main__":
    main()
