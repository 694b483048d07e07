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
    def gelu_quantize(x_ptr, y_ptr, s_ptr, n_cols, CHUNK: tl.constexpr, SERIES: tl.constexpr):
        # Two passes over the row in CHUNK-wide pieces (no power-of-two padding of the row): the
        # first finds its largest x, the second (from cache) stores GELU(x) / scale. GELU rises
        # from its minimum (-0.16997 at x = -0.7518), so max |GELU| = GELU(max x) whenever that
        # is >= 0.17, and 0.17 bounds it otherwise: one GELU a value, not two.
        row = tl.program_id(0).to(tl.int64)
        base = row * n_cols
        cols = tl.arange(0, CHUNK)
        top = tl.full([CHUNK], float("-inf"), tl.float32)
        for start in range(0, n_cols, CHUNK):
            m = start + cols < n_cols
            x = tl.load(x_ptr + base + start + cols, mask=m, other=float("-inf"))
            top = tl.maximum(top, x.to(tl.float32))
        # 448: e4m3's largest value (a literal: Inductor copies the kernels out of this module)
        # (GELU written out at each use: Inductor copies a kernel without the helpers it calls)
        t = tl.max(top, axis=0)
        amax = tl.maximum(0.5 * t * (1.0 + tl.math.erf(t * 0.7071067811865476)), 0.17)
        inv = 448.0 / amax
        for start in range(0, n_cols, CHUNK):
            m = start + cols < n_cols
            x = tl.load(x_ptr + base + start + cols, mask=m, other=0.0).to(tl.float32)
            if SERIES:  # Phi(x) by Abramowitz & Stegun 7.1.26 (erf to 1.5e-7): no libdevice erf
                z = tl.abs(x) * 0.7071067811865476
                u = tl.fdiv(1.0, 1.0 + 0.3275911 * z)
                poly = u * (0.254829592 + u * (-0.284496736 + u * (1.421413741 + u * (
                    -1.453152027 + u * 1.061405429))))  # fmt: skip
                tail = 0.5 * poly * tl.exp(-z * z)  # Phi(-|x|)
                g = x * tl.where(x >= 0, 1.0 - tail, tail)
            else:
                g = 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476))
            tl.store(y_ptr + base + start + cols, g * inv, mask=m)
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
        n_rows,
        n_cols,
        eps,
        HAS_RESIDUAL: tl.constexpr,
        ROWS: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        # ROWS rows a program, each whole in registers (reductions along axis 1)
        rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
        cols = tl.arange(0, BLOCK)
        in_rows = rows < n_rows
        mask = in_rows[:, None] & (cols[None, :] < n_cols)
        at = rows[:, None] * n_cols + cols[None, :]
        x = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
        if HAS_RESIDUAL:  # h = x + r in the residual stream's type, then the norm of h
            h = (x + tl.load(r_ptr + at, mask=mask, other=0.0).to(tl.float32)).to(
                h_ptr.dtype.element_ty
            )
            tl.store(h_ptr + at, h, mask=mask)
            x = h.to(tl.float32)
        mean = tl.sum(x, axis=1) / n_cols
        xc = tl.where(mask, x - mean[:, None], 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(xc * xc, axis=1) / n_cols + eps)
        w = tl.load(w_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + cols, mask=cols < n_cols, other=0.0).to(tl.float32)
        y = xc * rstd[:, None] * w[None, :] + b[None, :]
        y = y.to(tl.bfloat16).to(tl.float32)  # the norm's bf16 output
        amax = tl.maximum(tl.max(tl.abs(y), axis=1), 1e-12)
        scale = amax / 448.0
        tl.store(y_ptr + at, y / scale[:, None], mask=mask)
        tl.store(s_ptr + rows, scale, mask=in_rows)

    return {"gelu_quantize": gelu_quantize, "norm_quantize": norm_quantize}


def _block(n: int) -> int:
    return 1 << (n - 1).bit_length()


# Launch shapes, chosen by `tools/bench_fp8_kernels.py --sweep` at the encoder's shapes on an H200
GELU_CHUNK, GELU_WARPS = 2048, 2
GELU_SERIES = True  # erf from a short series (A&S 7.1.26) instead of libdevice's, if faster
NORM_ROWS, NORM_WARPS = 2, 2


def gelu_quantize_rows(
    x: torch.Tensor,
    out_dtype=torch.float8_e4m3fn,
    chunk: int = GELU_CHUNK,
    warps: int = GELU_WARPS,
    series: bool = GELU_SERIES,
):
    """`(M, K)` -> GELU(x) / scale in `out_dtype` and float32 scales `(M, 1)`, one row a program.

    The scale is max |GELU(x)| of the row (to float32 rounding) or, if that is below 0.17, 0.17:
    rows whose values all lie below about 0.27 get a slightly coarser scale than they need."""
    x = x.contiguous()
    m, k = x.shape
    y = torch.empty((m, k), dtype=out_dtype, device=x.device)
    s = torch.empty((m, 1), dtype=torch.float32, device=x.device)
    chunk = min(chunk, _block(k))
    kernels()["gelu_quantize"][(m,)](x, y, s, k, CHUNK=chunk, SERIES=series, num_warps=warps)
    return y, s


def norm_quantize_rows(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
    residual: torch.Tensor | None = None,
    out_dtype=torch.float8_e4m3fn,
    rows: int = NORM_ROWS,
    warps: int = NORM_WARPS,
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
    kernels()["norm_quantize"][((m + rows - 1) // rows,)](
        x,
        r,
        h,
        weight,
        bias,
        y,
        s,
        m,
        k,
        eps,
        HAS_RESIDUAL=residual is not None,
        ROWS=rows,
        BLOCK=_block(k),
        num_warps=warps,
    )
    return (h if residual is not None else x), y, s
