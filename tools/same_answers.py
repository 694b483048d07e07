"""Do thread counts change the words, features or predictions? (issue 28; docs/CLUSTER.md)

    python tools/same_answers.py clip1.mp4 clip2.wav ... [--threads 1,2,4] [--zscore64]

Each thread count runs in its own process (`torch.set_num_threads`, `OMP_NUM_THREADS`) with the
demo weights and no feature cache; the first count is the reference. Printed per clip and count:
whether the words are the same, the largest prediction difference and the largest difference of
each modality's features relative to its largest value. `--zscore64` measures the proposed
change to `extractors/audio.py`'s `zscore` (its mean and standard deviation summed in float64)
by replacing the function in the measuring process only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def _measure(out: Path, threads: int, zscore64: bool, media: list[str]) -> None:
    """The child: features, words and predictions of every clip, saved under `out`."""
    import torch

    torch.set_num_threads(threads)
    if zscore64:
        import tribe_stream.extractors.audio as audio

        def zscore(samples):
            x = torch.as_tensor(samples).to(torch.float32).reshape(-1)
            if x.numel() < 2:
                return torch.zeros_like(x)
            d = x.double()
            return (x - d.mean().float()) / (1e-8 + d.std().float())

        audio.zscore = zscore
    from tribe_stream.offline import predict_windows
    from tribe_stream.prediction import Predictor

    predictor = Predictor(checkpoint="demo", use_cache=False)
    words = {}
    for i, m in enumerate(media):
        feats, info = predictor.features(m)
        values = predict_windows(predictor.engine, feats, pad_last=True)
        np.savez(out / f"{i}.npz", values=values, **feats)
        words[m] = [w[0] for w in info["words"]]
    (out / "words.json").write_text(json.dumps(words))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("media", nargs="+")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--zscore64", action="store_true", help="the z-score's sums in float64")
    ap.add_argument("--child", nargs=2, metavar=("OUT", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _measure(Path(args.child[0]), int(args.child[1]), args.zscore64, args.media)
        return 0
    counts = [int(t) for t in args.threads.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for t in counts:
            out = Path(tmp) / str(t)
            out.mkdir()
            cmd = [sys.executable, __file__, *args.media, "--child", str(out), str(t)]
            subprocess.run(cmd + (["--zscore64"] if args.zscore64 else []), check=True,
                           env={**os.environ, "OMP_NUM_THREADS": str(t)})  # fmt: skip
            runs[t] = out
        ref = runs[counts[0]]
        ref_words = json.loads((ref / "words.json").read_text())
        for t in counts[1:]:
            words = json.loads((runs[t] / "words.json").read_text())
            for i, m in enumerate(args.media):
                a, b = np.load(ref / f"{i}.npz"), np.load(runs[t] / f"{i}.npz")
                parts = [f"predictions {np.abs(a['values'] - b['values']).max():.2e}"]
                for k in ("text", "audio", "video"):
                    if k in a.files:
                        rel = np.abs(a[k] - b[k]).max() / max(np.abs(a[k]).max(), 1e-30)
                        parts.append(f"{k} {rel:.2e}")
                same = "same words" if words[m] == ref_words[m] else "WORDS DIFFER"
                print(f"{m}: {counts[0]} vs {t} threads: {same} {ref_words[m]}; "
                      + ", ".join(parts))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
