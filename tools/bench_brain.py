"""Brain-model latency: the official-style eager model vs tribe-stream's engines, side by side.

Full-size TRIBE v2 (177 M parameters) with random weights, batch 1, one 200-bin window.
Baseline: the official architecture built from x_transformers 1.27.20 (as neuraltrain does),
fp32 eager and fp16 autocast eager, all 100 pooled rows. Ours: the `torch` engine (fp16 weights)
and the `compiled` engine (torch.compile + CUDA graphs on the static window), for all rows and
for the one newest row a live stream needs.

    python tools/bench_brain.py [--device cuda] [--iters 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from tribe_stream.engines import make_engine
from tribe_stream.model.config import BrainConfig
from tribe_stream.model.fmri_encoder import FmriEncoder
from tribe_stream.model.loading import LoadedModel


def timed(fn, iters: int, device: str) -> float:
    """Median milliseconds of `fn()` (synchronised), after warm-up."""
    for _ in range(10):
        fn()
    times = []
    for _ in range(iters):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def official_style(config: BrainConfig, model: FmriEncoder, device: str):
    """The official forward: projectors, concat, positions, x_transformers Encoder, head, pool."""
    from x_transformers import Encoder

    enc = (
        Encoder(
            dim=config.hidden,
            depth=config.depth,
            heads=config.heads,
            attn_dim_head=config.dim_head,
            ff_mult=4,
            use_scalenorm=True,
            rotary_pos_emb=True,
            scale_residual=True,
        )
        .to(device)
        .eval()
    )
    pool = torch.nn.AdaptiveAvgPool1d(100)

    def forward(feats):
        parts = [
            model.projectors[m](feats[m].flatten(1, 2).transpose(1, 2))
            for m in ("text", "audio", "video")
        ]
        x = torch.cat(parts, -1)
        x = enc(x + model.time_pos_embed[:, : x.shape[1]])
        x = model.low_rank_head(x)
        x = x @ model.predictor_weights[0] + model.predictor_bias[0]
        return pool(x.transpose(1, 2))

    return forward


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    dev = args.device
    torch.manual_seed(0)
    config = BrainConfig()
    model = FmriEncoder(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    loaded = LoadedModel(model=model, config=config, source="random", experiment={})
    rng = np.random.default_rng(0)
    feats = {
        m: rng.standard_normal((*config.feature_dims[m], 200), dtype=np.float32)
        for m in ("text", "audio", "video")
    }
    rows = []

    if not args.skip_baseline:
        model.to(dev)
        base = official_style(config, model, dev)
        tf = {m: torch.from_numpy(x)[None].to(dev) for m, x in feats.items()}
        with torch.inference_mode():
            rows.append(
                (
                    "baseline: official-style eager fp32, 100 rows",
                    timed(lambda: base(tf), args.iters, dev),
                )
            )
            with torch.autocast(dev, dtype=torch.float16, enabled=dev == "cuda"):
                rows.append(
                    (
                        "baseline: official-style eager fp16 autocast, 100 rows",
                        timed(lambda: base(tf), args.iters, dev),
                    )
                )

    dtype = "float16" if dev == "cuda" else "float32"
    eager = make_engine("torch", loaded, device=dev, dtype=dtype)
    rows.append(
        (f"ours: torch engine {dtype}, 100 rows", timed(lambda: eager.run(feats), args.iters, dev))
    )
    rows.append(
        (
            f"ours: torch engine {dtype}, newest row",
            timed(lambda: eager.run(feats, rows=[99]), args.iters, dev),
        )
    )
    compiled = make_engine("compiled", loaded, device=dev, dtype=dtype)
    rows.append(
        (
            f"ours: compiled engine {dtype}, 100 rows",
            timed(lambda: compiled.run(feats), args.iters, dev),
        )
    )
    rows.append(
        (
            f"ours: compiled engine {dtype}, newest row",
            timed(lambda: compiled.run(feats, rows=[99]), args.iters, dev),
        )
    )
    short = {m: x[..., :37] for m, x in feats.items()}
    rows.append(
        (
            f"ours: compiled engine {dtype}, 37-bin window, newest row",
            timed(lambda: compiled.run(short, rows=[18]), args.iters, dev),
        )
    )
    # the live stream's path: the feature ring lives on the engine's device, so no host copy
    resident = {m: torch.from_numpy(x).to(dev) for m, x in feats.items()}
    rows.append(
        (
            f"ours: compiled engine {dtype}, newest row, features on device",
            timed(lambda: compiled.run(resident, rows=[99]), args.iters, dev),
        )
    )
    ref = rows[0][1]
    name = torch.cuda.get_device_name() if dev == "cuda" else "CPU"
    print(
        f"\nbrain model, T=200, batch 1, median of {args.iters} (device: {name}, torch {torch.__version__})"
    )
    print(f"{'variant':<62} {'ms':>8} {'speed-up vs baseline fp32':>26}")
    for label, ms in rows:
        print(f"{label:<62} {ms:8.3f} {ref / ms:25.1f}x")


if __name__ == "__main__":
    main()
