"""FP8 matrix products: row quantisation, the scaled linear layer, the GELU step (its Triton
kernel: tests/test_fp8_kernels.py).

On a CPU each function is checked against a reference written here with plain torch ops: scales
from the definition (row or output-channel amax / 448), e4m3 rounding checked against the grid of
all 256 e4m3 bit patterns, products against float64 products of the dequantised operands and
against the float32 layer within the proven FP8 error bound.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tribe_stream.extractors.fp8 import (
    FP8,
    FP8_MAX,
    Fp8Linear,
    fp8_supported,
    gelu_quantize_rows,
    quantize_rows,
)

U8 = 2.0**-4  # e4m3 round-to-nearest: 3 mantissa bits, relative error <= half a step of 2^-3
SUB8 = 2.0**-10  # half the subnormal step (2^-9), in units of the scale
U16 = 2.0**-8  # bfloat16 round-to-nearest relative error

# Every finite e4m3 value, decoded from its bit pattern (no rounding involved).
_CODES = torch.arange(256, dtype=torch.uint8).view(FP8).double()
GRID = _CODES[torch.isfinite(_CODES)].unique()


def nearest_e4m3(y: torch.Tensor) -> torch.Tensor:
    """Distance from each value to the nearest representable e4m3 value."""
    y = y.double().clamp(-FP8_MAX, FP8_MAX)
    i = torch.searchsorted(GRID, y.contiguous()).clamp(1, GRID.numel() - 1)
    return torch.minimum((GRID[i] - y).abs(), (GRID[i - 1] - y).abs())


def quant_error(v: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Largest |dequantised - v| for e4m3 with `scale`: relative for normals, absolute below."""
    return torch.maximum(U8 * v.abs(), SUB8 * scale)


CPU_FP8 = fp8_supported("cpu")
NEEDS_CPU_FP8 = pytest.mark.skipif(
    CPU_FP8 is not None, reason=f"row-scaled FP8 products on the CPU: {CPU_FP8}"
)


def test_grid_is_e4m3():
    assert GRID.numel() == 253  # 256 codes less two NaNs, +0 and -0 as one
    assert GRID.max() == FP8_MAX and GRID[GRID > 0].min() == 2.0**-9
    assert torch.equal(GRID[GRID >= 1][:9], 1 + torch.arange(9, dtype=torch.float64) / 8)


def test_rows_are_scaled_to_the_e4m3_range_and_round_to_nearest():
    torch.manual_seed(0)
    # Rows of very different sizes and more columns than rows: a per-column or per-tensor scale,
    # or one row's scale on another row, gives other scales than the reference.
    x = torch.randn(64, 300) * torch.logspace(-3, 3, 64)[:, None]
    x8, s = quantize_rows(x)
    assert x8.dtype == FP8 and x8.shape == (64, 300)
    assert s.shape == (64, 1) and s.dtype == torch.float32
    ref_scale = x.abs().amax(dim=1, keepdim=True) / FP8_MAX
    torch.testing.assert_close(s, ref_scale, rtol=2e-7, atol=0)
    assert torch.all(x8.float().abs().amax(dim=1) == FP8_MAX)  # each row uses the whole range
    # Round to nearest: each code is the e4m3 value closest to x / scale (truncation, or rounding
    # x / scale in a coarser type first, picks a farther one).
    y = x.double() / s.double()
    picked = (x8.double() - y).abs()
    assert torch.all(picked <= nearest_e4m3(y) + 1e-6 * y.abs())  # fp32 division
    # So the round trip is within e4m3's error, whatever the row's size.
    assert torch.all((x8.double() * s - x).abs() <= quant_error(x, s) * (1 + 1e-6))
    zero8, zs = quantize_rows(torch.zeros(2, 8))
    assert torch.isfinite(zs).all() and (zero8.float() == 0).all()


def layer_and_input(seed: int) -> tuple[torch.nn.Linear, torch.Tensor]:
    """A layer whose output channels and an input whose tokens span four decades."""
    torch.manual_seed(seed)
    lin = torch.nn.Linear(256, 96)
    with torch.no_grad():
        lin.weight.mul_(torch.logspace(-2, 2, 96)[:, None])
    x = torch.randn(4, 10, 256) * torch.logspace(-2, 2, 10)[None, :, None]
    return lin, x.to(torch.bfloat16)


@NEEDS_CPU_FP8
def test_fp8_linear_quantises_weights_per_output_channel():
    lin, _ = layer_and_input(1)
    q = Fp8Linear(lin)
    w = lin.weight.detach()
    ref_scale = w.abs().amax(dim=1, keepdim=True) / FP8_MAX  # (96, 1): one per output
    ref_w8 = (w / ref_scale).to(FP8)
    assert q.weight.shape == (256, 96) and q.weight.dtype == FP8
    assert q.weight.stride() == (1, 256)  # column-major, as torch._scaled_mm wants it
    assert torch.equal(q.weight.t().view(torch.uint8), ref_w8.view(torch.uint8))
    assert q.scale.shape == (1, 96)
    torch.testing.assert_close(q.scale, ref_scale.view(1, -1), rtol=2e-7, atol=0)


@NEEDS_CPU_FP8
def test_fp8_linear_is_the_product_of_the_dequantised_operands():
    lin, x = layer_and_input(1)
    q = Fp8Linear(lin)
    y = q(x)
    assert y.shape == (4, 10, 96) and y.dtype == torch.bfloat16
    # Reference: quantise here by the definition, multiply in float64, add the bf16 bias.
    rows = x.reshape(-1, 256).double()
    xs = rows.abs().amax(dim=1, keepdim=True) / FP8_MAX
    x8 = (rows / xs).float().to(FP8).double() * xs
    w = lin.weight.detach().double()
    ws = w.abs().amax(dim=1, keepdim=True) / FP8_MAX
    w8 = (w / ws).float().to(FP8).double() * ws
    ref = x8 @ w8.T + lin.bias.detach().to(torch.bfloat16).double()
    got = y.reshape(-1, 96).double()
    # bfloat16 output rounding only (at most one bf16 step where fp32 accumulation sits on a tie).
    assert torch.all((got - ref).abs() <= 2 * U16 * ref.abs())
    assert (got == ref.to(torch.bfloat16).double()).float().mean() > 0.98


@NEEDS_CPU_FP8
def test_fp8_linear_stays_within_the_fp8_error_of_the_float_layer():
    lin, x = layer_and_input(2)
    y = Fp8Linear(lin)(x).reshape(-1, 96).double()
    rows = x.reshape(-1, 256).double()
    w = lin.weight.detach().double()
    b = lin.bias.detach().double()
    exact = rows @ w.T + b
    # |x'w' - xw| <= e_x |w| + |x| e_w + e_x e_w, e = each operand's worst quantisation error.
    ex = quant_error(rows, rows.abs().amax(dim=1, keepdim=True) / FP8_MAX)
    ew = quant_error(w, w.abs().amax(dim=1, keepdim=True) / FP8_MAX)
    bound = ex @ w.abs().T + rows.abs() @ ew.T + ex @ ew.T + U16 * b.abs()
    bound = bound + 2 * U16 * (exact.abs() + bound)  # the bfloat16 output
    assert torch.all((y - exact).abs() <= bound)
    rel = torch.linalg.vector_norm(y - exact, dim=1) / torch.linalg.vector_norm(exact, dim=1)
    assert rel.max() < 0.1  # a few percent per token, whatever its size


@NEEDS_CPU_FP8
def test_fp8_linear_scales_each_token_on_its_own():
    lin, x = layer_and_input(3)
    q = Fp8Linear(lin)
    y = q(x)
    louder = x.clone()
    louder[1, 4] *= 1024  # a per-tensor scale would requantise every other token coarser
    y2 = q(louder)
    others = torch.ones(4, 10, dtype=torch.bool)
    others[1, 4] = False
    assert torch.equal(y2[others], y[others])
    assert not torch.equal(y2[1, 4], y[1, 4])


def exact_gelu(h: torch.Tensor) -> torch.Tensor:
    h = h.double()
    return 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))


def gelu_error_exceeded(x8: torch.Tensor, s: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Where x8 * s is farther from exact GELU(h) than a bf16 GELU then e4m3 rounding allows."""
    g = exact_gelu(h)
    bound = (U8 + U16 + U8 * U16) * g.abs() + SUB8 * s.double()
    return (x8.double() * s.double() - g).abs() > bound * (1 + 1e-6)


def test_gelu_then_quantise_matches_exact_gelu_quantised():
    torch.manual_seed(2)
    h = torch.randn(32, 200) * 3
    # Rows of only negative inputs: there the GELU is tiny, and the tanh approximation is
    # 10-40% off, far more than e4m3's 6%: an approximate GELU shows.
    h[:4] = -2.5 - 1.5 * torch.rand(4, 200)
    h = h.to(torch.bfloat16)
    x8, s = gelu_quantize_rows(h)
    assert x8.dtype == FP8 and x8.shape == h.shape and s.shape == (32, 1)
    g = exact_gelu(h)
    ref_scale = g.abs().amax(dim=1, keepdim=True) / FP8_MAX
    assert torch.all((s.double() - ref_scale).abs() <= U16 * ref_scale)  # bf16 GELU, then amax
    assert not gelu_error_exceeded(x8, s, h).any()
    # Mostly the very codes of the exact GELU quantised (a bf16 rounding can move one a step).
    ref8 = (g / ref_scale).float().to(FP8)
    assert (x8.view(torch.uint8) == ref8.view(torch.uint8)).float().mean() > 0.95
    # The check tells the exact GELU from the tanh approximation.
    t8, ts = quantize_rows(F.gelu(h, approximate="tanh"))
    assert gelu_error_exceeded(t8, ts, h)[:4].float().mean() > 0.1


def test_fp8_support_is_probed_without_raising():
    """torch 2.13 makes row-scaled FP8 products on the CPU; torch 2.11's CPU kernel takes only
    per-tensor scales: either way the probe answers (None, or the reason), never raises."""
    reason = fp8_supported("cpu")
    assert reason is None or "cannot make FP8 products on cpu" in reason
