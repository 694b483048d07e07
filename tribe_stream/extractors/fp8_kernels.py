"""The Triton kernels of the FP8 video encoder: memory-bound steps fused into one pass each.

Each kernel does what a few lines of torch do (`fp8.py`, `fp8_attention.py` keep those lines as
the reference and the fallback), reading its input once. `tools/bench_fp8_kernels.py` times each
against the same lines compiled by Inductor at the encoder's shapes; they are kept because they
win there (docs/BENCHMARKS.md). (A third, each clip's largest rotary query and key, lost to
Inductor and was dropped: the attention scales now come from a bound, `video_encoder.py`.)

- `gelu_quantize_rows`: exact (erf) GELU, then one e4m3 scale per row.
- `norm_quantize_rows`: optional residual add, LayerNorm, then one e4m3 scale per row.

Values are stored through each output pointer's type (e4m3 on the GPU), so the tests can run
the same kernels in Triton's CPU interpreter with float32 outputs.
"""

from __future__ import annotations

import torch

_BUILT: list = []  # [kernels or None] once built (a list, not functools.cache: torch.compile traces it)


def kernels() -> dict | None:
    """The kernels (compiled by Triton on their first call), or None when Triton is not installed."""
    if not _BUILT:
        _BUILT.append(_build())
    return _BUILT[0]


def _build() -> dict | None:
    global triton, tl  # module globals: Triton's interpreter patches the kernels' `tl` there
    try:
        import triton
        import triton.language as tl
    except ImportError:
        return None

    @triton.jit
    def gelu_quantize(x_ptr, y_ptr, s_ptr, n_cols, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        mask = cols < n_cols
        x = tl.load(x_ptr + row * n_cols + cols, mask=mask, other=0.0).to(tl.float32)
        g = 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))
        amax = tl.maximum(tl.max(tl.abs(g), axis=0), 1e-12)
        # 448: e4m3's largest value (a literal: Inductor copies the kernels out of this module)
        tl.store(y_ptr + row * n_cols + cols, g * (448.0 / amax), mask=mask)
        tl.store(s_ptr + row, amax / 448.0)

    @triton.jit
    def norm_quantize(
        x_ptr,
        r_ptr,
        h_ptr,
        w_ptr,
        b_ptr,
        y_ptr,
        s_ptr,
        n_cols,
        eps,
        HAS_RESIDUAL: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        mask = cols < n_cols
        at = row * n_cols + cols
        x = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:  # h = x + r in the residual stream's type, then the norm of h
            h = (x + tl.load(r_ptr + at, mask=mask, other=0.0).to(tl.float32)).to(
                h_ptr.dtype.element_ty
            )
            tl.store(h_ptr + at, h, mask=mask)
            x = h.to(tl.float32)
        mean = tl.sum(x, axis=0) / n_cols
        xc = tl.where(mask, x - mean, 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=0) / n_cols + eps)
        w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        y = (xc * rstd * w + b).to(tl.bfloat16).to(tl.float32)  # the norm's bf16 output
        amax = tl.maximum(tl.max(tl.abs(y), axis=0), 1e-12)
        scale = amax / 448.0
        tl.store(y_ptr + at, y / scale, mask=mask)
        tl.store(s_ptr + row, scale)

    return {"gelu_quantize": gelu_quantize, "norm_quantize": norm_quantize}


def _block(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _warps(block: int) -> int:
    return max(4, min(16, block // 512))


def gelu_quantize_rows(x: torch.Tensor, out_dtype=torch.float8_e4m3fn):
    """`(M, K)` -> GELU(x) / scale in `out_dtype` and float32 scales `(M, 1)`, one row a program."""
    x = x.contiguous()
    m, k = x.shape
    y = torch.empty((m, k), dtype=out_dtype, device=x.device)
    s = torch.empty((m, 1), dtype=torch.float32, device=x.device)
    block = _block(k)
    kernels()["gelu_quantize"][(m,)](x, y, s, k, BLOCK=block, num_warps=_warps(block))
    return y, s


def norm_quantize_rows(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
    residual: torch.Tensor | None = None,
    out_dtype=torch.float8_e4m3fn,
):
    """`(M, K)` rows (plus `residual`, when given) -> `(h, y, scales)`: h = x + residual (x
    itself without one), y = LayerNorm(h) / scale in `out_dtype`, scales float32 `(M, 1)`."""
    x = x.contiguous()
    m, k = x.shape
    y = torch.empty((m, k), dtype=out_dtype, device=x.device)
    # without a residual the kernel neither reads `r` nor writes `h`: stand-ins that keep x unwritten
    h = torch.empty_like(x) if residual is not None else y
    r = residual.contiguous() if residual is not None else x
    s = torch.empty((m, 1), dtype=torch.float32, device=x.device)
    block = _block(k)
    kernels()["norm_quantize"][(m,)](
        x,
        r,
        h,
        weight,
        bias,
        y,
        s,
        k,
        eps,
        HAS_RESIDUAL=residual is not None,
        BLOCK=block,
        num_warps=_warps(block),
    )
    return (h if residual is not None else x), y, s
