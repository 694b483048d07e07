"""FP8 matrix products (opt-in): e4m3 weights with one scale per output channel, activations
quantised per row (per token) on the fly, products accumulated by the tensor cores.

On an H100 the video encoder's matrix products run about twice as fast this way; the price is
precision (token-mean features within about 2% of the half-precision ones, measured in
`tools/bench_extractors.py`). Attention, norms and residuals stay in 16-bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tribe_stream.extractors import fp8_kernels
from tribe_stream.options import VideoFp8  # noqa: F401 - the setting, declared with the options

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite e4m3 value
ACT_DTYPE = torch.bfloat16  # the scaled products' output type, so the layers around them use it


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`(M, K)` -> e4m3 `(M, K)` and float32 scales `(M, 1)` with `x ≈ x8 * scale`, per row."""
    scale = x.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12) / FP8_MAX
    return (x.float() / scale).to(FP8), scale


def _fused(x: torch.Tensor) -> bool:
    """Whether the Triton kernels (`fp8_kernels.py`) run for `x`: CUDA tensors, Triton installed."""
    return x.is_cuda and fp8_kernels.kernels() is not None


def gelu_quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact GELU of `(M, K)`, then `quantize_rows`, in one pass over memory on CUDA (a Triton
    kernel: each row stays in registers, so the activation is read once, not twice)."""
    if _fused(x):
        return fp8_kernels.gelu_quantize_rows(x)
    return quantize_rows(F.gelu(x))


def norm_quantize_rows(
    x: torch.Tensor, norm: nn.LayerNorm, residual: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(M, K)` rows -> `(h, x8, scales)`: h = x + residual (x without one), then
    `quantize_rows(norm(h))`; one pass over memory on CUDA (a Triton kernel)."""
    if _fused(x):
        return fp8_kernels.norm_quantize_rows(x, norm.weight, norm.bias, norm.eps, residual)
    h = x if residual is None else x + residual
    return (h, *quantize_rows(norm(h)))


class Fp8Linear(nn.Module):
    """`nn.Linear` with e4m3 weights scaled per output channel; input and output in bfloat16."""

    def __init__(self, linear: nn.Linear, fast_accum: bool = True):
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / FP8_MAX  # (N, 1)
        # (K, N) column-major, as the scaled product wants its second operand
        self.register_buffer("weight", (w / scale).to(FP8).t(), persistent=False)
        self.register_buffer("scale", scale.view(1, -1).contiguous(), persistent=False)
        bias = linear.bias.detach().to(ACT_DTYPE) if linear.bias is not None else None
        self.register_buffer("bias", bias, persistent=False)
        self.fast_accum = fast_accum
        self.out_features = linear.out_features

    def matmul(self, x8: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Rows already quantised (`quantize_rows`) -> `(M, N)` bfloat16."""
        return torch._scaled_mm(
            x8,
            self.weight,
            scale_a=scale,
            scale_b=self.scale,
            bias=self.bias,
            out_dtype=ACT_DTYPE,
            use_fast_accum=self.fast_accum,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        return self.matmul(*quantize_rows(rows)).view(*x.shape[:-1], self.out_features)


def fp8_supported(device: str | torch.device) -> str | None:
    """None when FP8 products run on `device`, else why not."""
    device = torch.device(device)
    if not hasattr(torch, "float8_e4m3fn") or not hasattr(torch, "_scaled_mm"):
        return f"torch {torch.__version__} has no FP8 matrix products"
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        if (major, minor) < (8, 9):
            return f"FP8 needs an Ada or Hopper GPU (compute capability 8.9+), this one is {major}.{minor}"
    try:  # one tiny product the way the layers make them
        a = torch.ones((16, 16), device=device).to(FP8)
        Fp8Linear(nn.Linear(16, 16, device=device)).matmul(a, torch.ones((16, 1), device=device))
    except (RuntimeError, NotImplementedError) as exc:
        return f"torch {torch.__version__} cannot make FP8 products on {device.type} ({exc})"
    if device.type == "cuda":
        fp8_kernels.kernels()  # built now, not while torch.compile traces its first use
    return None


def refusal(setting: VideoFp8, device: str | torch.device) -> str | None:
    """Why the video encoder cannot run with `setting` on `device`, one line with the fix; None
    if it can (checked by `Models` before any model loads)."""
    if setting and (why := fp8_supported(device)):
        return f"--video-fp8: {why}; run the video model in half precision instead"
    if setting.attention:
        from tribe_stream.extractors.fp8_attention import attention_missing

        if why := attention_missing(device):
            return f"--video-fp8-attention: {why}; or --video-fp8 alone (FP8 products only)"
    return None
