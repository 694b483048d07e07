"""FP8 attention (opt-in, CUDA + Triton): softmax(q·kᵀ·scale)·v with q, k, v in e4m3.

torch's scaled_dot_product_attention has no FP8 path, and V-JEPA2's attention (8,192 tokens,
head size 64) is about half of the video encoder's time in 16-bit. This is a flash-attention
forward (online softmax over key blocks, nothing of size tokens² in memory) whose two products
take e4m3 operands and accumulate in float32 on the tensor cores:

- q, k, v are scaled per (batch, head) to e4m3's range; the scales fold into the logits' scale
  and the output's, so nothing is rescaled inside the loop.
- The probabilities are cast to e4m3 for the second product after a factor of 2⁸ (free: it is
  `+ 8` in the exponent), so values down to about 1e-5 keep their mantissa instead of flushing.
- v is stored with tokens innermost, the layout Hopper's FP8 tensor cores take for that operand.

Precision is the price, as for `fp8.py`: measured against 16-bit attention in
`tools/bench_fp8_attention.py` and tests/test_fp8_attention.py.
"""

from __future__ import annotations

import math
import os

import torch

from tribe_stream.extractors.fp8 import FP8, FP8_MAX

_P_SHIFT = 8.0  # probabilities enter the second product as p · 2⁸ (see the module's docstring)
_KERNEL: list = []


def fp8_attention_supported(device: str | torch.device) -> str | None:
    """None when `fp8_attention` runs on `device`, else why not."""
    device = torch.device(device)
    if device.type != "cuda":
        return "FP8 attention runs on CUDA GPUs only"
    if torch.cuda.get_device_capability(device) < (8, 9):
        return "FP8 attention needs an Ada or Hopper GPU (compute capability 8.9+)"
    if _kernel() is None:
        return "FP8 attention needs Triton (pip install triton)"
    return None


def quantize_heads(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(B, H, N, D)` -> e4m3 of the same shape and float32 scales `(B, H)`, per (batch, head)."""
    scale = x.abs().amax(dim=(-2, -1)).float().clamp(min=1e-12) / FP8_MAX
    return (x.float() / scale[..., None, None]).to(FP8), scale


def fp8_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """`(B, H, N, D)` queries, keys, values (16-bit) -> `(B, N, H·D)` output in q's dtype.

    Non-causal, no mask, the same N for queries and keys; the output is laid out for the
    projection that follows (heads side by side per token). The quantisation is plain torch
    (inside a compiled layer it fuses with what comes before); the kernel is called by
    `attend_fp8`."""
    q8, sq = quantize_heads(q)
    k8, sk = quantize_heads(k)
    v8, sv = quantize_heads(v)
    v8 = v8.transpose(-1, -2).contiguous().transpose(-1, -2)  # tokens innermost in memory
    return attend_fp8(q8, k8, v8, sq * sk * (scale * math.log2(math.e)), sv, q.dtype)


@torch.compiler.disable
def attend_fp8(q8, k8, v8, qk_scale, v_scale, dtype: torch.dtype) -> torch.Tensor:
    """The kernel over quantised `(B, H, N, D)` operands; `qk_scale` `(B, H)` in log2 units."""
    b, h, n, d = q8.shape
    out = torch.empty((b, n, h, d), dtype=dtype, device=q8.device)
    grid = lambda meta: (triton_cdiv(n, meta["BLOCK_M"]), b * h)  # noqa: E731
    _kernel()[grid](
        q8, k8, v8, out, qk_scale.float().contiguous(), v_scale.float().contiguous(),
        *q8.stride(), *k8.stride(), *v8.stride(),
        out.stride(0), out.stride(2), out.stride(1), out.stride(3),
        h, n, D=d, P_SHIFT=_P_SHIFT,
    )  # fmt: skip
    return out.view(b, n, h * d)


def reference_attention(q, k, v, scale: float) -> torch.Tensor:
    """What `fp8_attention` computes, in float32 (for tests and benchmarks): `(B, N, H·D)`."""
    o = torch.softmax(q.float() @ k.float().transpose(-1, -2) * scale, dim=-1) @ v.float()
    return o.transpose(1, 2).flatten(2)


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _kernel():
    """The Triton kernel, built on first use (None when Triton is not installed)."""
    if _KERNEL:
        return _KERNEL[0]
    try:
        import triton
        import triton.language as tl
    except ImportError:
        _KERNEL.append(None)
        return None

    configs = [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
        for bm in (64, 128)
        for bn in (64, 128)
        for w in (4, 8)
        for s in (2, 3, 4)
    ]

    @triton.jit
    def fp8_attention_kernel(
        Q, K, V, Out, QK_SCALE, V_SCALE,
        sqb, sqh, sqn, sqd, skb, skh, skn, skd, svb, svh, svn, svd, sob, soh, son, sod,
        H, N, D: tl.constexpr, P_SHIFT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    ):  # fmt: skip
        pid_m, bh = tl.program_id(0), tl.program_id(1)
        b, h = bh // H, bh % H
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.arange(0, BLOCK_N)
        dims = tl.arange(0, D)
        q = tl.load(
            Q + b * sqb + h * sqh + rows[:, None] * sqn + dims[None, :] * sqd,
            mask=rows[:, None] < N, other=0.0,
        )  # fmt: skip
        qk_scale = tl.load(QK_SCALE + bh)
        k_base = K + b * skb + h * skh + dims[:, None] * skd  # (D, BLOCK_N) tiles: kᵀ
        v_base = V + b * svb + h * svh + dims[None, :] * svd  # (BLOCK_N, D) tiles
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, D], dtype=tl.float32)
        for start in range(0, N, BLOCK_N):
            keys = start + cols
            valid = keys < N
            kt = tl.load(k_base + keys[None, :] * skn, mask=valid[None, :], other=0.0)
            s = tl.dot(q, kt) * qk_scale  # log2 units: exp2 below
            s = tl.where(valid[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            alpha = tl.math.exp2(m_i - m_new)
            p = tl.math.exp2(s - m_new[:, None] + P_SHIFT)
            l_i = l_i * alpha + tl.sum(p, axis=1)
            vt = tl.load(v_base + keys[:, None] * svn, mask=valid[:, None], other=0.0)
            acc = tl.dot(p.to(tl.float8e4nv), vt, acc * alpha[:, None])
            m_i = m_new
        out = acc * (tl.load(V_SCALE + bh) / l_i)[:, None]
        tl.store(
            Out + b * sob + h * soh + rows[:, None] * son + dims[None, :] * sod,
            out.to(Out.dtype.element_ty), mask=rows[:, None] < N,
        )  # fmt: skip

    if os.environ.get("TRITON_INTERPRET") == "1":  # Triton's CPU interpreter cannot autotune
        _KERNEL.append(_fixed(fp8_attention_kernel, BLOCK_M=64, BLOCK_N=64))
    else:
        _KERNEL.append(triton.autotune(configs=configs, key=["N", "D"])(fp8_attention_kernel))
    return _KERNEL[0]


class _fixed:
    """A kernel launched with fixed block sizes, indexed by grid like an autotuned one."""

    def __init__(self, kernel, **meta):
        self.kernel, self.meta = kernel, meta

    def __getitem__(self, grid):
        return lambda *args, **kw: self.kernel[grid(self.meta)](*args, **kw, **self.meta)
