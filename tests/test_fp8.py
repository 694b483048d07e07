"""FP8 matrix products: row quantisation, the scaled linear layer, the fused GELU kernel."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tribe_stream.extractors.fp8 import (
    FP8,
    FP8_MAX,
    Fp8Linear,
    _gelu_quantize_rows_triton,
    _triton_kernel,
    fp8_supported,
    gelu_quantize_rows,
    quantize_rows,
)


def test_rows_are_scaled_to_the_e4m3_range_and_round_trip():
    torch.manual_seed(0)
    x = torch.randn(64, 300) * torch.logspace(-3, 3, 64)[:, None]  # rows of very different sizes
    x8, s = quantize_rows(x)
    assert x8.dtype == FP8 and s.shape == (64, 1) and s.dtype == torch.float32
    assert torch.allclose(x8.float().abs().amax(dim=1), torch.full((64,), FP8_MAX))
    back = x8.float() * s
    rel = (back - x).abs() / x.abs().amax(dim=1, keepdim=True)
    assert rel.max() < 2**-4  # 3 mantissa bits, whatever the row's scale
    zero8, zs = quantize_rows(torch.zeros(2, 8))
    assert torch.isfinite(zs).all() and (zero8.float() == 0).all()


def test_fp8_linear_matches_the_linear_layer():
    torch.manual_seed(1)
    lin = torch.nn.Linear(256, 96)
    x = torch.randn(4, 10, 256)
    q = Fp8Linear(lin)
    y = q(x.to(torch.bfloat16))
    assert y.shape == (4, 10, 96) and y.dtype == torch.bfloat16
    ref = lin(x)
    assert ((y.float() - ref).abs().max() / ref.abs().max()) < 0.05
    assert q.weight.shape == (256, 96) and q.weight.dtype == FP8


def test_gelu_then_quantise_is_one_step():
    torch.manual_seed(2)
    h = torch.randn(32, 200, dtype=torch.bfloat16)
    x8, s = gelu_quantize_rows(h)
    r8, rs = quantize_rows(F.gelu(h))
    assert torch.equal(s, rs) and torch.equal(x8.view(torch.uint8), r8.view(torch.uint8))


def test_fp8_is_supported_on_this_cpu_torch():
    assert fp8_supported("cpu") is None


@pytest.mark.skipif(
    not torch.cuda.is_available() or _triton_kernel() is None, reason="needs CUDA and Triton"
)
def test_triton_kernel_equals_the_torch_steps():
    torch.manual_seed(3)
    h = torch.randn(1000, 6144, device="cuda", dtype=torch.bfloat16) * 3
    x8, s = _gelu_quantize_rows_triton(h)
    r8, rs = quantize_rows(F.gelu(h.float()))
    torch.testing.assert_close(s, rs, rtol=1e-6, atol=0)
    diff = (x8.float() - r8.float()).abs()
    assert (diff <= 2**-3 * r8.float().abs().clamp(min=2**-6)).all()  # at most one e4m3 step
