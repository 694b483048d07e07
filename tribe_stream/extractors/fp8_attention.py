"""FP8 attention (opt-in) through cuDNN's fused FP8 attention, from NVIDIA's `cudnn` frontend
(`pip install nvidia-cudnn-frontend`), on Hopper-class GPUs.

Queries, keys and values are quantised to e4m3 with one scale per clip (so a clip's features
never depend on the other clips of its batch); the softmax probabilities are quantised inside the
kernel with a fixed power-of-two scale (they lie in [0, 1] there); the output is e4m3 too (on
Hopper cuDNN writes FP8 attention only in FP8), on a per-clip scale that cannot overflow: each
output row is a weighted mean of value rows, so it is bounded by the values' largest entry.
torch's own attention has no FP8 path, hence the frontend, called through its public
`graph.execute` with tensors; `check_operands` checks every tensor before the kernel sees it. The
op is registered with `torch.library`, so compiled layers call it without a graph break.
"""

from __future__ import annotations

import functools

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
P_SCALE = 256.0  # softmax probabilities (at most 1 in the kernel) times this fit e4m3 exactly
OUT_HEADROOM = 2.0  # output scale: the values' largest entry maps to FP8_MAX / this

# uids of the graph's tensors (cuDNN names tensors by number)
Q, K, V, OUT, DQ, DK, DV, DS, SS, SO, AS, AO = range(1, 13)


def attention_missing(device: str | torch.device) -> str | None:
    """None when FP8 attention runs on `device`, else why not (one line, with the fix)."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"FP8 attention needs an NVIDIA GPU (cuDNN), not {device.type}"
    if not torch.cuda.is_available():
        return "FP8 attention needs an NVIDIA GPU (cuDNN), and no CUDA GPU is visible"
    major, minor = torch.cuda.get_device_capability(device)
    if major < 9:
        return f"FP8 attention needs a Hopper-class GPU (compute capability 9.0+), this one is {major}.{minor}"
    try:
        import cudnn  # noqa: F401
    except ImportError:
        return "FP8 attention needs NVIDIA's cuDNN frontend: pip install nvidia-cudnn-frontend"
    try:  # one small graph, built and run the way the encoder does
        q = torch.zeros((1, 128, 1, 64), device=device).to(FP8)
        one = torch.ones(1, device=device)
        torch.ops.tribe_stream.fp8_sdpa(q, q, q, one, one, one, one, 0.125)
        torch.cuda.synchronize(device)
    except Exception as exc:  # noqa: BLE001 - any failure means: not here
        return f"cuDNN cannot run FP8 attention here ({str(exc).splitlines()[0][:160]})"
    return None


def quantize_per_clip(
    x: torch.Tensor, amax: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(B, ...)` -> e4m3 `(B, ...)` contiguous and float32 descales `(B,)`, `x ≈ x8 * descale`.
    `amax` `(B,)`: a bound on each clip's largest |x| when known (the encoder's, for rotated
    queries and keys); values beyond it are clipped to e4m3's range."""
    if amax is None:
        amax = x.abs().amax(dim=tuple(range(1, x.ndim)))
    amax = amax.float().clamp(min=1e-12)
    scale = (FP8_MAX / amax).view(-1, *[1] * (x.ndim - 1))
    x8 = (x.float() * scale).clamp(-FP8_MAX, FP8_MAX).to(FP8).contiguous()
    return x8, amax / FP8_MAX


def attend_fp8(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    amax_qk: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of `(B, N, H, D)` queries, keys and values (any float type; rotary already
    applied), each clip on its own scales -> e4m3 `(B, N, H, D)` and float32 descales `(B,)`.
    `amax_qk` `(B, 2)`: the clips' largest |query| and |key| when already known."""
    q8, dq = quantize_per_clip(q, None if amax_qk is None else amax_qk[:, 0])
    k8, dk = quantize_per_clip(k, None if amax_qk is None else amax_qk[:, 1])
    v8, dv = quantize_per_clip(v)
    do = dv * OUT_HEADROOM
    return torch.ops.tribe_stream.fp8_sdpa(q8, k8, v8, dq, dk, dv, 1.0 / do, scale), do


def dequantize(x8: torch.Tensor, descale: torch.Tensor, dtype=torch.bfloat16) -> torch.Tensor:
    """e4m3 `(B, ...)` and descales `(B,)` -> `(B, ...)` in `dtype`."""
    return (x8.float() * descale.view(-1, *[1] * (x8.ndim - 1))).to(dtype)


def check_operands(
    q8: torch.Tensor,
    k8: torch.Tensor,
    v8: torch.Tensor,
    descale_q: torch.Tensor,
    descale_k: torch.Tensor,
    descale_v: torch.Tensor,
    scale_o: torch.Tensor,
) -> None:
    """Raise ValueError, one line, unless the op's operands are what the kernel reads: e4m3
    `(B, N, H, D)` queries, keys and values of one shape, and four float32 `(B,)` scales, all
    contiguous on one device (cuDNN reads B clips' bytes and B scales from each without checking)."""
    if q8.ndim != 4:
        raise ValueError(f"fp8_sdpa: q8 must be (B, N, H, D), got shape {tuple(q8.shape)}")
    b = q8.shape[0]
    named = {"q8": q8, "k8": k8, "v8": v8, "descale_q": descale_q, "descale_k": descale_k}
    named |= {"descale_v": descale_v, "scale_o": scale_o}
    for name, t in named.items():
        clip = name.endswith("8")
        shape, dtype = (tuple(q8.shape), FP8) if clip else ((b,), torch.float32)
        if tuple(t.shape) != shape:
            want = "as q8" if clip else "one scale per clip"
            raise ValueError(f"fp8_sdpa: {name} has shape {tuple(t.shape)}, want {shape} ({want})")
        if t.dtype != dtype:
            raise ValueError(f"fp8_sdpa: {name} is {t.dtype}, want {dtype}")
        if t.device != q8.device:
            raise ValueError(f"fp8_sdpa: {name} is on {t.device}, q8 on {q8.device}")
        if not t.is_contiguous():
            raise ValueError(f"fp8_sdpa: {name} is not contiguous; call .contiguous() first")


@torch.library.custom_op("tribe_stream::fp8_sdpa", mutates_args=())
def fp8_sdpa(
    q8: torch.Tensor,
    k8: torch.Tensor,
    v8: torch.Tensor,
    descale_q: torch.Tensor,
    descale_k: torch.Tensor,
    descale_v: torch.Tensor,
    scale_o: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """e4m3 `(B, N, H, D)` and per-clip float32 descales `(B,)` -> e4m3 `(B, N, H, D)`, times
    `scale_o` (`check_operands` says exactly what it takes).

    This body is the reference, for devices without cuDNN (tests on the CPU): the arithmetic the
    cuDNN kernel does, in float32, with the probabilities rounded to e4m3 on `P_SCALE` before
    they weight the values. On CUDA, cuDNN's kernel runs instead (`_fp8_sdpa_cudnn`).
    """
    check_operands(q8, k8, v8, descale_q, descale_k, descale_v, scale_o)
    b = q8.shape[0]

    def real(x8: torch.Tensor, descale: torch.Tensor) -> torch.Tensor:  # (B, H, N, D) float32
        return x8.float().mul(descale.view(b, 1, 1, 1)).transpose(1, 2)

    q, k, v = real(q8, descale_q), real(k8, descale_k), real(v8, descale_v)
    s = q @ k.transpose(-1, -2) * scale
    p = (s - s.amax(dim=-1, keepdim=True)).exp()  # in (0, 1], the row's largest is 1
    p8 = (p * P_SCALE).to(FP8).float() / P_SCALE
    o = (p8 @ v) / p.sum(dim=-1, keepdim=True)
    o = o.transpose(1, 2) * scale_o.view(b, 1, 1, 1)
    return o.clamp(-FP8_MAX, FP8_MAX).to(FP8).contiguous()


@fp8_sdpa.register_kernel("cuda")
def _fp8_sdpa_cudnn(q8, k8, v8, descale_q, descale_k, descale_v, scale_o, scale):
    """cuDNN's fused FP8 attention through the frontend's public `execute`, one call per clip
    (cuDNN takes one descale per tensor), on views of the checked tensors."""
    check_operands(q8, k8, v8, descale_q, descale_k, descale_v, scale_o)
    import cudnn

    b, n, h, d = q8.shape
    index = q8.device.index or 0
    graph, workspace_size = _graph(n, h, d, float(scale), index)
    out = torch.empty_like(q8)
    workspace = torch.empty(workspace_size, dtype=torch.uint8, device=q8.device)
    handle = _handle(index)
    cudnn.set_stream(handle=handle, stream=torch.cuda.current_stream(q8.device).cuda_stream)
    fixed = _constants(index)
    clips = (q8, k8, v8, out, descale_q, descale_k, descale_v, scale_o)
    for i in range(b):
        pack = dict(zip((Q, K, V, OUT, DQ, DK, DV, SO), (t[i] for t in clips), strict=True))
        graph.execute({**fixed, **pack}, workspace, handle=handle)
    return out


@fp8_sdpa.register_fake
def _(q8, k8, v8, descale_q, descale_k, descale_v, scale_o, scale):
    check_operands(q8, k8, v8, descale_q, descale_k, descale_v, scale_o)
    return torch.empty_like(q8)


@functools.cache
def _handle(device: int):
    import cudnn

    with torch.cuda.device(device):
        return cudnn.create_handle()


@functools.cache
def _constants(device: int) -> dict[int, torch.Tensor]:
    """The probability scales (fixed) and the kernel's amax outputs (written, not read)."""
    dev = torch.device("cuda", device)

    def one(value: float) -> torch.Tensor:
        return torch.full((1, 1, 1, 1), value, dtype=torch.float32, device=dev)

    return {DS: one(1.0 / P_SCALE), SS: one(P_SCALE), AS: one(0.0), AO: one(0.0)}


@functools.cache
def _graph(n: int, h: int, d: int, scale: float, device: int):
    """The built cuDNN graph for one clip of `n` tokens, `h` heads of size `d`, and its workspace
    size; tensors laid out `(N, H, D)` (dims given as (1, H, N, D), as cuDNN wants them). The
    heuristics' first plan is kept: the fastest of the five offered on an H200 (docs/BENCHMARKS.md)."""
    import cudnn

    dims = (1, h, n, d)
    strides = (n * h * d, d, h * d, 1)
    fp8, f32 = cudnn.data_type.FP8_E4M3, cudnn.data_type.FLOAT
    with torch.cuda.device(device):
        g = cudnn.pygraph(
            io_data_type=fp8,
            intermediate_data_type=f32,
            compute_data_type=f32,
            handle=_handle(device),
        )
        q, k, v = (g.tensor(uid=u, dim=dims, stride=strides, data_type=fp8) for u in (Q, K, V))
        unit = {"dim": (1, 1, 1, 1), "stride": (1, 1, 1, 1), "data_type": f32}
        dq, dk, dv, ds, ss, so = (g.tensor(uid=u, **unit) for u in (DQ, DK, DV, DS, SS, SO))
        o, _, amax_s, amax_o = g.sdpa_fp8(
            q=q,
            k=k,
            v=v,
            descale_q=dq,
            descale_k=dk,
            descale_v=dv,
            descale_s=ds,
            scale_s=ss,
            scale_o=so,
            generate_stats=False,
            attn_scale=scale,
            use_causal_mask=False,
        )
        o.set_uid(OUT).set_output(True).set_dim(dims).set_stride(strides)
        o.set_data_type(fp8)
        for t, u in ((amax_s, AS), (amax_o, AO)):
            t.set_uid(u).set_output(True).set_dim((1, 1, 1, 1)).set_stride((1, 1, 1, 1))
            t.set_data_type(f32)
        g.validate()
        g.build_operation_graph()
        g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
        g.check_support()
        g.build_plans()
    return g, g.get_workspace_size()
