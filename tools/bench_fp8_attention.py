"""cuDNN's FP8 attention against torch's 16-bit attention, alone and inside the V-JEPA2 encoder.

1. Attention of `--batch` clips at V-JEPA2's shape (22 heads, 8,192 tokens, head size 64): each
   SDPA backend in bfloat16 against `attend_fp8` (per-clip quantisation included) and the cuDNN
   op alone; milliseconds, TFLOP/s, and the error against float32 attention.
2. The full-size encoder (random weights, 40 layers), compiled, `--batch` clips per forward:
   FP8 products with 16-bit attention (what `--video-fp8` ran before) against FP8 products with
   FP8 attention; milliseconds per clip and each one's token-mean features against half precision.

Needs a Hopper-class GPU and `pip install nvidia-cudnn-frontend`.

    python tools/bench_fp8_attention.py [--batch 8] [--iters 10] [--no-encoder]
        [--encoder-batches 8,16] [--profile]

`--encoder-batches` times the compiled encoders at several batch sizes; `--profile` prints the
top GPU kernels of two FP8-attention encoder forwards (where the time beyond attention and the
products goes).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.bench_extractors import VJEPA2_VITG  # noqa: E402
from tribe_stream.extractors.fp8 import VideoFp8  # noqa: E402
from tribe_stream.extractors.fp8_attention import (  # noqa: E402
    attend_fp8,
    attention_missing,
    dequantize,
    quantize_per_clip,
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
    # (B, N, H, D), as the encoder's fused projection lays them out
    q, k, v = (torch.randn(batch, n, h, d, device="cuda", generator=g, dtype=torch.bfloat16)
               for _ in range(3))  # fmt: skip
    flops = 4 * batch * h * n * n * d
    scale = d**-0.5
    heads = slice(0, 2)  # float32 reference: clip 0, two heads
    qf, kf, vf = (t[:1, :, heads].transpose(1, 2).float() for t in (q, k, v))
    ref = F.scaled_dot_product_attention(qf, kf, vf, scale=scale).transpose(1, 2)
    print(f"attention: {batch} x {h} heads x {n} tokens x {d}, {flops / 1e12:.1f} TFLOP")
    print("| path | ms | TFLOP/s | error vs float32 (clip 0, 2 heads) |")
    print("|---|---:|---:|---:|")
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, N, D) views
    for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION),
                          ("flash", SDPBackend.FLASH_ATTENTION)):  # fmt: skip
        try:
            with sdpa_kernel([backend]):
                fn = lambda: F.scaled_dot_product_attention(qt, kt, vt, scale=scale)  # noqa: E731
                ms = timed(fn, iters)
                out = fn().transpose(1, 2)[:1, :, heads]
            print(
                f"| SDPA {name}, bfloat16 | {ms:.2f} | {flops / ms / 1e9:.0f} | {rel(out, ref):.2e} |"
            )
        except RuntimeError as exc:
            print(f"| SDPA {name}, bfloat16 | - | - | {str(exc).splitlines()[0][:60]} |")
    t0 = time.perf_counter()
    out = dequantize(*attend_fp8(q, k, v, scale))
    torch.cuda.synchronize()
    print(f"(cuDNN FP8 graph built and first call: {time.perf_counter() - t0:.1f} s)")
    err = rel(out[:1, :, heads], ref)
    ms = timed(lambda: attend_fp8(q, k, v, scale), iters)
    print(
        f"| attend_fp8 (per-clip quantisation, eager) | {ms:.2f} | {flops / ms / 1e9:.0f} | {err:.2e} |"
    )
    q8, dq = quantize_per_clip(q)
    k8, dk = quantize_per_clip(k)
    v8, dv = quantize_per_clip(v)
    op = torch.ops.tribe_stream.fp8_sdpa
    ms = timed(lambda: op(q8, k8, v8, dq, dk, dv, 0.5 / dv, scale), iters)
    print(f"| cuDNN FP8 op alone | {ms:.2f} | {flops / ms / 1e9:.0f} | |")
    cq = torch.compile(quantize_per_clip)
    cq(q)
    ms = timed(lambda: cq(q), iters)
    print(f"(one tensor's quantisation, compiled: {ms:.3f} ms)")


def profile_kernels(fn, rows: int = 30) -> None:
    """The top GPU kernels of `fn()` (two calls after a warm-up), by total GPU time."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        fn()
        torch.cuda.synchronize()
    print(
        prof.key_averages().table(
            sort_by="self_cuda_time_total", row_limit=rows, max_name_column_width=90
        )
    )


def bench_encoder(batch: int, iters: int, batches: list[int], prof: bool) -> None:
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
                             ("FP8 products, FP8 attention (cuDNN)", True)):  # fmt: skip
            fp8 = VideoFp8.ATTENTION if attn8 else VideoFp8.PRODUCTS
            trunk = VideoTrunk(model, groups, fp8=fp8).cuda().eval()
            compile_blocks(trunk.layers)
            t0 = time.perf_counter()
            err = rel(trunk(clips[:2]).float(), ref)
            trunk(clips)
            torch.cuda.synchronize()
            print(f"(compile: {time.perf_counter() - t0:.0f} s)")
            ms = timed(lambda t=trunk: t(clips), iters) / batch
            print(f"| {label} | {ms:.1f} | {err:.2e} |")
            for nb in batches:
                more = clips[:1].expand(nb, -1, -1, -1, -1).contiguous()
                trunk(more)  # this batch's compile
                ms = timed(lambda t=trunk, c=more: t(c), iters) / nb
                print(f"| {label}, {nb} clips per forward | {ms:.1f} | |")
                del more
            if prof and attn8:
                profile_kernels(lambda t=trunk: t(clips))
            del trunk
            torch.cuda.empty_cache()


def batch_list(text: str) -> list[int]:
    """`"4,16"` -> `[4, 16]` (an argparse type: a bad list is a usage error, not a traceback)."""
    try:
        sizes = [int(b) for b in text.split(",") if b]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: comma-separated clip counts, e.g. 4,16"
        ) from None
    if any(b < 1 for b in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: clip counts are at least 1")
    return sizes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8, help="clips per forward")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--no-encoder", dest="encoder", action="store_false")
    ap.add_argument("--no-attention", dest="attention", action="store_false", help="encoder only")
    ap.add_argument(
        "--encoder-batches",
        type=batch_list,
        default=[],
        help="more clips-per-forward to time, e.g. 4,16",
    )
    ap.add_argument("--profile", action="store_true", help="top kernels of the FP8 encoder")
    args = ap.parse_args()
    if why := attention_missing("cuda" if torch.cuda.is_available() else "cpu"):
        print(why, file=sys.stderr)
        return 2
    import cudnn

    print(
        f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, cuDNN "
        f"{cudnn.backend_version_string()} (torch's {torch.backends.cudnn.version()})"
    )
    if args.attention:
        bench_attention(args.batch, args.iters)
    if args.encoder:
        bench_encoder(args.batch, args.iters, args.encoder_batches, args.profile)
    return 0


if __name__ == "__main__":
    from tools.cli_guard import run_tool

    sys.exit(run_tool(main, __file__))
