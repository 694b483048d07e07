"""The FP8 encoder's Triton kernels against the torch lines they replace, compiled by Inductor.

At the full-size V-JEPA2 encoder's shapes (`--clips` clips of 8,192 tokens, width 1,408, MLP
6,144), per call, median of `--iters` after a warm-up, both in one run:

- LayerNorm, then per-row e4m3 quantisation (the norm before query/key/value);
- the residual add, LayerNorm, quantisation (the norm before the MLP);
- exact GELU, then quantisation (between the MLP's two products);

Prints milliseconds, the ratio, effective bandwidth and the largest difference of the outputs.
`--sweep` first times each kernel over its launch shapes (rows or chunk width, warps) and prints
the fastest, which `fp8_kernels.py` takes as its defaults.

    python tools/bench_fp8_kernels.py [--clips 8] [--iters 20] [--sweep]
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.bench_fp8_attention import timed  # noqa: E402
from tribe_stream.extractors import fp8_kernels  # noqa: E402
from tribe_stream.extractors.fp8 import quantize_rows  # noqa: E402


def codes_apart(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of e4m3 outputs that differ (by any amount)."""
    return (a.view(torch.uint8) != b.view(torch.uint8)).float().mean().item()


def sweep(x, r, mlp, norm, iters: int) -> None:
    """Milliseconds of each kernel over its launch shapes; prints the fastest of each."""
    w, b, eps = norm.weight, norm.bias, norm.eps
    norms = {}
    for rows in (1, 2, 4, 8):
        for warps in (1, 2, 4, 8, 16):
            if warps > 4 * rows:
                continue
            plain = partial(fp8_kernels.norm_quantize_rows, x, w, b, eps, rows=rows, warps=warps)
            res = partial(plain, residual=r)
            norms[rows, warps] = (timed(plain, iters), timed(res, iters))
            t0, t1 = norms[rows, warps]
            print(f"sweep norm rows={rows} warps={warps}: {t0:.3f} ms, with residual {t1:.3f} ms")
    gelus = {}
    for series in (False, True):
        for chunk in (512, 1024, 2048, 4096):
            for warps in (2, 4, 8, 16):
                if warps * 32 * 2 > chunk:  # fewer than two values a thread
                    continue
                gelu = partial(
                    fp8_kernels.gelu_quantize_rows, mlp, chunk=chunk, warps=warps, series=series
                )
                t = gelus[chunk, warps, series] = timed(gelu, iters)
                print(f"sweep gelu chunk={chunk} warps={warps} series={series}: {t:.3f} ms")
    (rows, nw), (t0, t1) = min(norms.items(), key=lambda kv: sum(kv[1]))
    (chunk, gw, series), t = min(gelus.items(), key=lambda kv: kv[1])
    print(f"fastest norm: NORM_ROWS, NORM_WARPS = {rows}, {nw} ({t0:.3f} + {t1:.3f} ms)")
    print(f"fastest gelu: GELU_CHUNK, GELU_WARPS = {chunk}, {gw} ({t:.3f} ms)")
    print(f"fastest gelu: GELU_SERIES = {series}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--sweep", action="store_true", help="time the launch shapes first")
    args = ap.parse_args()
    if not torch.cuda.is_available() or fp8_kernels.kernels() is None:
        print("needs a CUDA GPU and Triton", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    dev, bf = "cuda", torch.bfloat16
    m, d, hidden = args.clips * 8192, 1408, 6144
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}; {args.clips} clips")
    norm = torch.nn.LayerNorm(d, eps=1e-6).to(dev, bf)
    x = torch.randn(m, d, device=dev, dtype=bf)
    r = torch.randn(m, d, device=dev, dtype=bf)
    mlp = torch.randn(m, hidden, device=dev, dtype=bf)

    def norm_ref(x):
        return quantize_rows(norm(x))

    def res_norm_ref(x, r):
        h = x + r
        return (h, *quantize_rows(norm(h)))

    def gelu_ref(h):
        return quantize_rows(F.gelu(h))

    w, b, eps = norm.weight, norm.bias, norm.eps
    if args.sweep:
        with torch.inference_mode():
            sweep(x, r, mlp, norm, args.iters)
    cases = [  # (name, ours, Inductor's, bytes moved)
        (
            "LayerNorm + quantise",
            lambda: fp8_kernels.norm_quantize_rows(x, w, b, eps)[1:],
            (torch.compile(norm_ref), (x,)),
            m * d * 3,
        ),
        (
            "residual + LayerNorm + quantise",
            lambda: fp8_kernels.norm_quantize_rows(x, w, b, eps, residual=r),
            (torch.compile(res_norm_ref), (x, r)),
            m * d * 7,
        ),
        (
            "GELU + quantise",
            lambda: fp8_kernels.gelu_quantize_rows(mlp),
            (torch.compile(gelu_ref), (mlp,)),
            m * hidden * 3,
        ),
    ]
    print("| step | ours ms | Inductor ms | ratio | ours GB/s | outputs |")
    print("|---|---:|---:|---:|---:|---|")
    with torch.inference_mode():
        for name, ours, (ref, ref_args), nbytes in cases:
            got, want = ours(), ref(*ref_args)
            got, want = (
                (got if isinstance(got, tuple) else (got,)),
                (want if isinstance(want, tuple) else (want,)),
            )
            notes = []
            for g, t in zip(got, want, strict=True):
                if g.dtype == torch.float8_e4m3fn:
                    notes.append(f"{codes_apart(g, t):.2%} codes differ")
                else:
                    rel = ((g.float() - t.float()).abs().max() / t.float().abs().max()).item()
                    notes.append(f"max rel {rel:.1e}")
            t_ours = timed(ours, args.iters)
            t_ref = timed(lambda ref=ref, a=ref_args: ref(*a), args.iters)
            print(
                f"| {name} | {t_ours:.3f} | {t_ref:.3f} | {t_ref / t_ours:.2f}x | "
                f"{nbytes / t_ours / 1e6:.0f} | {'; '.join(notes)} |"
            )
    return 0


if __name__ == "__main__":
    from tools.cli_guard import run_tool

    sys.exit(run_tool(main, __file__))
