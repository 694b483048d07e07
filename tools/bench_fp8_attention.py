"""FP8 attention against torch's 16-bit attention, alone and inside the V-JEPA2 encoder (GPU).

1. Attention of `--batch` clips at V-JEPA2's shape (22 heads, 8,192 tokens, head size 64):
   each SDPA backend in bfloat16 against `fp8_attention` (quantisation included) and its kernel
   alone; milliseconds, TFLOP/s, and the error against float32 attention.
2. The full-size encoder (random weights, 40 layers), compiled, `--batch` clips per forward:
   FP8 products with 16-bit attention (what `--video-fp8` runs) against FP8 products with FP8
   attention; milliseconds per clip and each one's token-mean features against half precision.

    python tools/bench_fp8_attention.py [--batch 8] [--iters 10]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.bench_extractors import VJEPA2_VITG  # noqa: E402
from tribe_stream.extractors.fp8_attention import (  # noqa: E402
    attend_fp8,
    fp8_attention,
    fp8_attention_supported,
    quantize_heads,
    reference_attention,
)


def timed(fn, iters: int) -> float:
    """Median milliseconds of `fn` over `iters` calls after two warm-ups (CUDA events)."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def bench_attention(batch: int, iters: int) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    h, n, d = 22, 8192, 64
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(batch, h, n, d, device="cuda", generator=g, dtype=torch.bfloat16)
               for _ in range(3))  # fmt: skip
    flops = 4 * batch * h * n * n * d
    scale = d**-0.5
    small = slice(0, 1), slice(0, 2)  # the float32 reference on one clip, two heads
    ref = reference_attention(q[small], k[small], v[small], scale)
    print(f"attention: {batch} x {h} heads x {n} tokens x {d}, {flops / 1e12:.1f} TFLOP")
    print("| path | ms | TFLOP/s | error vs float32 (1 clip, 2 heads) |")
    print("|---|---:|---:|---:|")
    for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION),
                          ("flash", SDPBackend.FLASH_ATTENTION),
                          ("efficient", SDPBackend.EFFICIENT_ATTENTION)):  # fmt: skip
        try:
            with sdpa_kernel([backend]):
                fn = lambda: F.scaled_dot_product_attention(q, k, v, scale=scale)  # noqa: E731
                ms = timed(fn, iters)
                out = F.scaled_dot_product_attention(q[small], k[small], v[small], scale=scale)
            err = rel(out.transpose(1, 2).flatten(2), ref)
            print(f"| SDPA {name}, bfloat16 | {ms:.2f} | {flops / ms / 1e9:.0f} | {err:.2e} |")
        except RuntimeError as exc:
            print(f"| SDPA {name}, bfloat16 | - | - | {str(exc).splitlines()[0][:60]} |")
    t0 = time.perf_counter()
    out = fp8_attention(q[small], k[small], v[small], scale)
    torch.cuda.synchronize()
    print(f"(fp8 kernel autotune + first call: {time.perf_counter() - t0:.0f} s)")
    err = rel(out, ref)
    ms = timed(lambda: fp8_attention(q, k, v, scale), iters)
    print(f"| fp8_attention (quantisation included, eager) | {ms:.2f} | {flops / ms / 1e9:.0f} "
          f"| {err:.2e} |")  # fmt: skip
    q8, sq = quantize_heads(q)
    k8, sk = quantize_heads(k)
    v8, sv = quantize_heads(v)
    v8 = v8.transpose(-1, -2).contiguous().transpose(-1, -2)
    qk = sq * sk * (scale * math.log2(math.e))
    ms = timed(lambda: attend_fp8(q8, k8, v8, qk, sv, torch.bfloat16), iters)
    print(f"| FP8 kernel alone | {ms:.2f} | {flops / ms / 1e9:.0f} | |")
    from tribe_stream.extractors import fp8_attention as mod

    best = getattr(mod._kernel(), "best_config", None)
    print(f"kernel's best config: {best}")


def bench_encoder(batch: int, iters: int) -> None:
    from transformers import VJEPA2Config, VJEPA2Model

    from tribe_stream.extractors.accel import compile_blocks
    from tribe_stream.extractors.config import ExtractorConfig
    from tribe_stream.extractors.video_encoder import VideoTrunk

    cfg = VJEPA2Config(**VJEPA2_VITG)
    torch.manual_seed(0)
    model = VJEPA2Model(cfg).to("cuda", torch.float16).eval()
    groups = ExtractorConfig.reference().video.groups(cfg.num_hidden_layers + 1)
    g = torch.Generator(device="cuda").manual_seed(1)
    clips = torch.randn(batch, 64, 3, 256, 256, device="cuda", generator=g, dtype=torch.float16)
    print(f"\nencoder: V-JEPA2 {cfg.num_hidden_layers} x {cfg.hidden_size}, {batch} clips/forward")
    with torch.inference_mode():
        half = VideoTrunk(model, groups).cuda().eval()
        ref = half(clips[:2]).float()
        del half
        print("| encoder (compiled) | ms per clip | features vs half (2 clips) |")
        print("|---|---:|---:|")
        for label, attn8 in (("FP8 products, 16-bit attention", False),
                             ("FP8 products, FP8 attention", True)):  # fmt: skip
            trunk = VideoTrunk(model, groups, fp8=True, fp8_attention=attn8).cuda().eval()
            compile_blocks(trunk.layers)
            t0 = time.perf_counter()
            err = rel(trunk(clips[:2]).float(), ref)
            trunk(clips)
            torch.cuda.synchronize()
            print(f"(compile: {time.perf_counter() - t0:.0f} s)")
            ms = timed(lambda t=trunk: t(clips), iters) / batch
            print(f"| {label} | {ms:.1f} | {err:.2e} |")
            del trunk
            torch.cuda.empty_cache()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8, help="clips per forward")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--no-encoder", dest="encoder", action="store_false")
    args = ap.parse_args()
    if why := fp8_attention_supported("cuda" if torch.cuda.is_available() else "cpu"):
        raise SystemExit(why)
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    bench_attention(args.batch, args.iters)
    if args.encoder:
        bench_encoder(args.batch, args.iters)
    return 0


if __name__ == "__main__":
    sys.exit(main())
