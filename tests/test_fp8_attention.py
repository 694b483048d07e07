"""FP8 attention (`--video-fp8-attention`): per-clip quantisation, the op's reference arithmetic,
the encoder's FP8-attention path on the demo V-JEPA2, and the one-line refusal where it cannot run.

On the CPU the op runs its reference body (the arithmetic cuDNN's kernel does); on a Hopper GPU
with NVIDIA's cuDNN frontend the last test checks cuDNN's kernel against that reference.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tribe_stream.errors import InputError
from tribe_stream.extractors.fp8 import VideoFp8, fp8_supported, refusal
from tribe_stream.extractors.fp8_attention import (
    FP8,
    FP8_MAX,
    OUT_HEADROOM,
    attend_fp8,
    attention_missing,
    check_operands,
    dequantize,
    quantize_per_clip,
)

CPU_FP8 = fp8_supported("cpu")
NEEDS_CPU_FP8 = pytest.mark.skipif(
    CPU_FP8 is not None, reason=f"the encoder's FP8 products on the CPU: {CPU_FP8}"
)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def sdpa_bnhd(q, k, v, scale):
    """float32 attention of `(B, N, H, D)` tensors, the same layout back."""
    q, k, v = (t.float().transpose(1, 2) for t in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v, scale=scale).transpose(1, 2)


def test_each_clip_is_quantised_on_its_own_scale():
    """A clip's e4m3 bytes and scale do not depend on the other clips of its batch (so batching
    never changes a clip's features), and the scale maps its largest entry to 448."""
    torch.manual_seed(0)
    x = torch.randn(3, 16, 2, 8)
    x[1] *= 50.0  # a loud clip must not coarsen the quiet ones
    x8, descale = quantize_per_clip(x)
    assert x8.dtype == FP8 and descale.shape == (3,)
    torch.testing.assert_close(descale, x.abs().amax(dim=(1, 2, 3)) / FP8_MAX)
    for i in range(3):
        alone8, alone = quantize_per_clip(x[i : i + 1])
        assert torch.equal(alone8.view(torch.uint8), x8[i : i + 1].view(torch.uint8))
        assert alone.item() == descale[i].item()
    back = dequantize(x8, descale, torch.float32)
    # e4m3: 3 mantissa bits, round to nearest -> at most 1/16 relative for normal values
    normal = x.abs() >= 2.0**-6 * descale.view(-1, 1, 1, 1)
    assert ((back - x).abs() <= x.abs() / 16 + 1e-12)[normal].all()


def test_reference_op_is_attention_within_fp8_error():
    """The op's reference body against float32 attention: close, and a layout slip (heads and
    tokens swapped) would be far off."""
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 64, 3, 16) for _ in range(3))
    scale = 16**-0.5
    o8, do = attend_fp8(q, k, v, scale)
    assert o8.shape == q.shape and o8.dtype == FP8 and do.shape == (2,)
    got = dequantize(o8, do, torch.float32)
    ref = sdpa_bnhd(q, k, v, scale)
    assert rel(got, ref) < 0.08
    wrong = sdpa_bnhd(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), scale)
    assert rel(got, wrong.transpose(1, 2)) > 0.5


def test_output_scale_cannot_overflow():
    """Attention that copies the value row holding the largest entry: the output's e4m3 value
    stays at 448 / OUT_HEADROOM, never saturated (each output row is a weighted mean of values)."""
    n, d = 32, 16
    q = torch.zeros(1, n, 1, d)
    k = torch.zeros(1, n, 1, d)
    q[..., 0] = 30.0
    k[0, 5, 0, 0] = 30.0  # every query attends to token 5 only
    v = torch.randn(1, n, 1, d)
    v[0, 5, 0, 3] = 100.0  # the largest value entry
    o8, do = attend_fp8(q, k, v, 1.0)
    peak = o8.float().abs().max().item()
    assert peak == pytest.approx(FP8_MAX / OUT_HEADROOM, rel=1 / 16)
    got = dequantize(o8, do, torch.float32)
    torch.testing.assert_close(got[0, :, 0, 3], torch.full((n,), 100.0), rtol=1 / 16, atol=0)


@NEEDS_CPU_FP8
def test_encoder_with_fp8_attention_matches_and_keeps_clips_apart():
    """The demo V-JEPA2 with FP8 products and FP8 attention: features close to FP8 products with
    16-bit attention, and a clip's features the same alone as in a batch."""
    from tribe_stream.extractors.demo import demo_config, demo_extractors_path
    from tribe_stream.extractors.video import VideoExtractor
    from tribe_stream.extractors.video_encoder import VideoTrunk

    video = VideoExtractor.from_pretrained(
        demo_extractors_path().video, demo_config().video, device="cpu"
    )
    torch.manual_seed(2)
    pix = torch.randn(2, 64, 3, 32, 32)
    with torch.inference_mode():
        half = VideoTrunk(video.model, video.groups).eval()(pix)
        prods = VideoTrunk(video.model, video.groups, fp8=VideoFp8.PRODUCTS).eval()(pix)
        trunk = VideoTrunk(video.model, video.groups, fp8=VideoFp8.ATTENTION).eval()
        both = trunk(pix)
        first = trunk(pix[:1])
    assert trunk.layers[0].fp8.attention
    err_both, err_prods = rel(both, half), rel(prods, half)
    assert 0 < err_both < 0.1, err_both  # really changed, still close
    assert err_both != err_prods
    torch.testing.assert_close(first, both[:1], rtol=1e-5, atol=1e-6)


def test_the_setting_takes_its_names_and_the_legacy_values():
    assert [VideoFp8.coerce(v) for v in (False, None, "off", VideoFp8.OFF)] == [VideoFp8.OFF] * 4
    assert VideoFp8.coerce(True) is VideoFp8.coerce("products") is VideoFp8.PRODUCTS
    assert VideoFp8.coerce("all") is VideoFp8.coerce("attention") is VideoFp8.ATTENTION
    assert not VideoFp8.OFF and VideoFp8.PRODUCTS and VideoFp8.ATTENTION
    assert VideoFp8.ATTENTION.attention and not VideoFp8.PRODUCTS.attention
    for bad in ("fast", 1, 0, "ALL"):
        with pytest.raises(InputError, match="'off', 'products', 'attention'"):
            VideoFp8.coerce(bad)
    assert refusal(VideoFp8.OFF, "cpu") is None


def test_refused_in_one_line_where_it_cannot_run(tmp_path):
    """On this machine (no Hopper GPU with cuDNN) the option is refused before any file, in one
    line that names the flag and the fix."""
    from conftest import run_cli

    from tribe_stream.prediction import PredictOptions, Predictor

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if attention_missing(device) is None:
        pytest.skip("FP8 attention runs here")
    # the FP8 products are checked first: a torch that cannot make them on the CPU (2.11 with
    # CUDA) refuses --video-fp8 itself, the attention's refusal comes only after them
    why = refusal(VideoFp8.ATTENTION, "cpu")
    if CPU_FP8:
        assert why.startswith("--video-fp8:") and "half precision" in why
    else:
        assert why.startswith("--video-fp8-attention:") and "--video-fp8 alone" in why
    with pytest.raises(InputError, match=why.split(":")[0] + ":"):
        Predictor(checkpoint="demo", device="cpu", modalities=("video",), video_fp8="all")
    with pytest.raises(InputError, match="video FP8 'fast': give one of"):
        PredictOptions(video_fp8="fast").validate()
    from tribe_stream.sources.clip import make_clip

    # a real clip: one file alone has its header read first, then the option is refused
    clip = make_clip(tmp_path / "c.mp4", 1.0, width=64, height=48)
    r = run_cli("predict", str(clip), "--out", str(tmp_path / "o.npy"), "--video-fp8-attention")
    assert r.returncode == 2, r.stderr
    flag = refusal(VideoFp8.ATTENTION, device).split(":")[0] + ":"  # the default device's refusal
    assert flag in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o.npy").exists()


def operands(b: int = 3, device: str = "cpu") -> dict[str, torch.Tensor]:
    clip = {n: torch.zeros(b, 40, 2, 64, device=device).to(FP8) for n in ("q8", "k8", "v8")}
    scales = ("descale_q", "descale_k", "descale_v", "scale_o")
    return clip | {n: torch.ones(b, device=device) for n in scales}


@pytest.mark.parametrize(
    ("name", "bad", "said"),
    [
        ("descale_v", torch.ones(2), r"descale_v has shape \(2,\), want \(3,\)"),
        ("scale_o", torch.ones(4), r"scale_o has shape \(4,\), want \(3,\)"),
        ("descale_q", torch.ones(3, 1), "descale_q has shape"),
        ("descale_k", torch.ones(3, dtype=torch.float16), "descale_k is torch.float16"),
        ("scale_o", torch.ones(6)[::2], "scale_o is not contiguous"),
        ("k8", torch.zeros(3, 41, 2, 64).to(FP8), "k8 has shape"),
        ("v8", torch.zeros(3, 40, 2, 64, dtype=torch.bfloat16), "v8 is torch.bfloat16"),
        ("q8", torch.zeros(3, 2, 40, 64).to(FP8).transpose(1, 2), "q8 is not contiguous"),
        ("q8", torch.zeros(3, 40, 128).to(FP8), r"q8 must be \(B, N, H, D\)"),
    ],
)
def test_every_operand_is_checked_before_the_kernel(name, bad, said):
    """A wrong-sized, -typed or strided tensor is refused in one line (on the CPU, the same
    check that runs before cuDNN's kernel): never read past its end."""
    args = operands() | {name: bad}
    if name != "q8":
        args["q8"] = operands()["q8"]
    with pytest.raises(ValueError, match=said):
        torch.ops.tribe_stream.fp8_sdpa(*args.values(), 0.125)


def test_operands_on_two_devices_are_refused():
    args = operands() | {"descale_q": torch.ones(3, device="meta")}
    with pytest.raises(ValueError, match="descale_q is on meta"):
        check_operands(*args.values())


@pytest.mark.skipif(
    attention_missing("cuda") is not None,
    reason=f"cuDNN's FP8 attention: {attention_missing('cuda')}",
)
def test_cudnn_kernel_agrees_with_the_reference():
    """cuDNN's kernel (GPU) against the op's reference body (run on the CPU), at a small
    V-JEPA2-like shape, and against float32 attention."""
    torch.manual_seed(3)
    q, k, v = (torch.randn(2, 512, 4, 64, device="cuda") for _ in range(3))
    (q8, dq), (k8, dk), (v8, dv) = (quantize_per_clip(t) for t in (q, k, v))
    so = 1.0 / (dv * OUT_HEADROOM)
    gpu = torch.ops.tribe_stream.fp8_sdpa(q8, k8, v8, dq, dk, dv, so, 0.125)
    cpu = torch.ops.tribe_stream.fp8_sdpa(*(t.cpu() for t in (q8, k8, v8, dq, dk, dv, so)), 0.125)
    assert rel(gpu.float().cpu(), cpu.float()) < 0.05
    got = dequantize(gpu, dv * OUT_HEADROOM, torch.float32)
    assert rel(got, sdpa_bnhd(q, k, v, 0.125)) < 0.08
