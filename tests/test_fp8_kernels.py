"""The FP8 encoder's Triton kernels (`fp8_kernels.py`) against the torch lines they fuse.

On a GPU the kernels run as the encoder runs them (e4m3 outputs, compared code for code with the
torch steps, at most one e4m3 step apart). Without a GPU they run in Triton's CPU interpreter
with float32 outputs, which checks their arithmetic (norm, residual, scales) to float32 rounding. Without Triton they are skipped: the encoder then runs the
torch steps, which tests/test_fp8.py checks.
"""

from __future__ import annotations

import os
import sys

import torch

CUDA = torch.cuda.is_available()
# Triton's interpreter must be chosen before Triton is first imported (its own helpers are made then)
_LATE = not CUDA and "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1"
if not CUDA:
    os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from tribe_stream.extractors import fp8_kernels  # noqa: E402
from tribe_stream.extractors.fp8 import FP8, quantize_rows  # noqa: E402

pytest.importorskip("triton", reason="the kernels are Triton's; without it the torch steps run")
if _LATE:
    pytest.skip(
        "Triton was imported before this module could choose its CPU interpreter (run "
        "this file alone)",
        allow_module_level=True,
    )

DEV = "cuda" if CUDA else "cpu"


@pytest.fixture(autouse=True)
def built():
    """The kernels built afresh for this module (the CPU interpreter's, without a GPU)."""
    fp8_kernels._BUILT.clear()
    yield
    fp8_kernels._BUILT.clear()


OUT = FP8 if CUDA else torch.float32  # the interpreter has no faithful e4m3 rounding
# ...nor bfloat16 rounding (it truncates): on the CPU, bf16 results are checked to one bf16 step
BF16_STEP = 0.0 if CUDA else 2.0**-7


def same_codes(got: torch.Tensor, want: torch.Tensor) -> None:
    """e4m3 outputs at most one e4m3 step apart (mostly equal); float32 ones to float32 rounding
    of the largest (448)."""
    if got.dtype == FP8:
        g, w = got.float(), want.float().clamp(-448, 448).to(FP8).float()
        assert ((g - w).abs() <= 2**-3 * w.abs().clamp(min=2**-6)).all()
        assert (g == w).float().mean() > 0.99
    else:
        torch.testing.assert_close(got, want.float(), rtol=2e-6, atol=1e-4)  # 448 is the top


@pytest.mark.parametrize("rows", [1, 8])  # 8 rows a program do not divide the 300 rows
def test_norm_quantize_equals_layer_norm_then_row_scales(rows):
    torch.manual_seed(0)
    norm = torch.nn.LayerNorm(176, eps=1e-6).to(DEV, torch.bfloat16)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.2, 0.2)
    x = (torch.randn(300, 176, device=DEV) * 3 + 1).to(torch.bfloat16)
    r = torch.randn(300, 176, device=DEV).to(torch.bfloat16)
    for residual in (None, r):
        with torch.no_grad():
            h, y, s = fp8_kernels.norm_quantize_rows(
                x, norm.weight, norm.bias, norm.eps, residual, out_dtype=OUT, rows=rows
            )
            want_h = x if residual is None else x + residual
            assert h.dtype == torch.bfloat16
            torch.testing.assert_close(h, want_h, rtol=BF16_STEP, atol=0)
            ref = norm(want_h).float()  # the norm's bf16 output, as quantize_rows reads it
            want_s = ref.abs().amax(dim=1, keepdim=True) / 448
            torch.testing.assert_close(s, want_s, rtol=1e-6 + 2 * BF16_STEP, atol=0)
            if CUDA:
                same_codes(y, ref / s)
            else:  # y * s is the norm's output, to a bf16 step of the row's largest entry
                err = (y * s - ref).abs() / (want_s * 448)
                assert err.max() < 3 * BF16_STEP
    assert torch.equal(x, x.clone())  # the input is never written


@pytest.mark.parametrize("series", [False, True])  # libdevice's erf, or the short series
@pytest.mark.parametrize("chunk", [2048, 128])  # 128: a row in pieces, the last one partial
def test_gelu_quantize_equals_gelu_then_row_scales(chunk, series):
    torch.manual_seed(1)
    x = (torch.randn(200, 600, device=DEV) * 3).to(torch.bfloat16)
    y, s = fp8_kernels.gelu_quantize_rows(x, out_dtype=OUT, chunk=chunk, series=series)
    g = F.gelu(x.float())
    torch.testing.assert_close(s, g.abs().amax(dim=1, keepdim=True) / 448, rtol=1e-6, atol=0)
    same_codes(y, g / s)
    if CUDA:
        r8, rs = quantize_rows(F.gelu(x.float()))
        torch.testing.assert_close(s, rs, rtol=1e-6, atol=0)
        same_codes(y, r8.float())


def test_gelu_quantize_scales_rows_of_small_values_by_the_bound():
    """Rows whose GELU stays below 0.17 (all values below about 0.27) are scaled by 0.17, the
    bound of GELU's negative side: still no value past e4m3's range, each within an e4m3 step."""
    torch.manual_seed(2)
    x = torch.stack(
        [
            -torch.rand(600, device=DEV) * 3,  # all negative: |GELU| peaks at 0.16997, x = -0.75
            torch.full((600,), -0.7518, device=DEV),  # every value at GELU's minimum
            torch.rand(600, device=DEV) * 0.2,  # small positive
        ]
    ).to(torch.bfloat16)
    y, s = fp8_kernels.gelu_quantize_rows(x, out_dtype=OUT, chunk=128)
    torch.testing.assert_close(s, torch.full_like(s, 0.17 / 448), rtol=1e-6, atol=0)
    g = F.gelu(x.float())
    assert (g.abs().amax(dim=1) <= 0.17).all()
    assert (y.float().abs() <= 448).all()
    err = (y.float() * s - g).abs()
    assert (err <= 2**-4 * g.abs() + 2**-9 * s * 448).all()  # half an e4m3 step (or subnormal)
