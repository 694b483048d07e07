"""The hand-written GPU pieces against the well-kept library way of doing the same, side by side.

We keep a hand-written piece only where it wins (docs/BENCHMARKS.md says by how much):

- audio: the live 30 s w2v-BERT pass, padded to the context, layers compiled regionally and the
  pass replayed as one CUDA graph by our `CudaGraphStep`, against `torch.compile(trunk,
  mode="reduce-overhead")` (Inductor's own CUDA graphs) over the same padded pass, and eager.
- text: one new word (its tokens padded to 8) on a 1024-token context, our `KVDecoder` (the
  model's own modules, preallocated keys/values, replayed by `CudaGraphStep`), against the
  `transformers` way: the model's forward with a `StaticCache` under `torch.compile(mode=
  "reduce-overhead")`, and that forward eager.

Full-size models with random weights (w2v-BERT 2.0, Llama-3.2-3B), nothing downloaded. Each row
prints its median, the ratio to ours and the largest relative difference of its features from
ours. Run on a CUDA machine: `python tools/bench_handwritten.py [--only audio,text]`; smoke test
on a CPU: `python tools/bench_handwritten.py --tiny` (no CUDA graphs there).
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_extractors import LLAMA_32_3B, TINY, W2V_BERT_2, build, rel_err, timed  # noqa: E402

from tribe_stream.extractors.config import ExtractorConfig  # noqa: E402

ROWS: list[tuple[str, float, float, float | None]] = []


def row(what: str, ms: float, ours: float, err: float | None = None) -> None:
    ROWS.append((what, ms, ours, err))
    e = f"  max rel diff {err:.1e}" if err is not None else ""
    print(f"  {what:<62} {ms:8.3f} ms  x{ms / ours:5.2f} of ours{e}", flush=True)


def bench_audio(args, device: str) -> None:
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

    from tribe_stream.extractors.accel import CudaGraphStep, compile_blocks
    from tribe_stream.extractors.audio import AudioExtractor, zscore
    from tribe_stream.extractors.audio_encoder import AudioTrunk

    cfg = Wav2Vec2BertConfig(**(TINY["audio"] if args.tiny else W2V_BERT_2))
    half = torch.float16 if device == "cuda" else torch.float32
    model = build(Wav2Vec2BertModel, cfg, device, half)
    processor = SeamlessM4TFeatureExtractor(padding_value=1.0)
    settings = ExtractorConfig.reference().audio
    ex = AudioExtractor(model, processor, settings, device=device)
    wave = (0.1 * np.random.default_rng(0).standard_normal(30 * 16000)).astype(np.float32)
    with torch.inference_mode():
        feats = ex.fbank(zscore(torch.from_numpy(wave).to(device)))[None].to(half)
    t = ex.n_frames(len(wave)) + 7  # a padded live pass: a few padding frames masked as keys
    padded = feats.new_zeros((1, t, feats.shape[2]))
    padded[:, : feats.shape[1]] = feats
    key_bias = torch.full((t,), float("-inf"), dtype=half, device=device)
    key_bias[: feats.shape[1]] = 0.0
    print(f"audio: w2v-BERT {cfg.num_hidden_layers} layers, 30 s padded to {t} frames, {half}")

    eager_trunk = AudioTrunk(model, ex.groups).to(device).eval()
    with torch.inference_mode():
        ref = eager_trunk(padded, key_bias)[0].float().cpu().numpy()
        eager = timed(lambda: eager_trunk(padded, key_bias), device, args.iters)

        ours_trunk = AudioTrunk(model, ex.groups).to(device).eval()
        compile_blocks(ours_trunk.layers, dynamic=None)
        if device == "cuda":
            step = CudaGraphStep(ours_trunk, [padded, key_bias])
            ours_fn = lambda: step(padded, key_bias)  # noqa: E731
        else:
            ours_fn = lambda: ours_trunk(padded, key_bias)  # noqa: E731
        t0 = time.perf_counter()
        ours_out = ours_fn()
        print(f"  ours: regional compile + graph capture {time.perf_counter() - t0:.0f} s")
        ours = timed(ours_fn, device, args.iters)
        row("ours: regional compile + CudaGraphStep", ours, ours,
            rel_err(ours_out[0].float().cpu().numpy(), ref))  # fmt: skip
        lib_trunk = AudioTrunk(model, ex.groups).to(device).eval()
        lib_trunk(padded, key_bias)  # its position tables made once, outside the graphs
        mode = "reduce-overhead" if device == "cuda" else None
        lib = torch.compile(lib_trunk, mode=mode, dynamic=False)
        t0 = time.perf_counter()
        for _ in range(3):
            lib_out = lib(padded, key_bias)
        print(f"  library: torch.compile({mode}) {time.perf_counter() - t0:.0f} s")
        lib_ms = timed(lambda: lib(padded, key_bias), device, args.iters)
        row(f"torch.compile(trunk, mode={mode!r})", lib_ms, ours,
            rel_err(lib_out[0].float().cpu().numpy(), ref))  # fmt: skip
        row("eager trunk (no compile, no graph)", eager, ours, 0.0)
        again = timed(ours_fn, device, args.iters)
        row("ours again (run-to-run spread)", again, ours)


def _forward_kwargs(model) -> tuple[str, bool]:
    """The name `transformers` gives the cache argument, and whether it takes cache_position."""
    params = inspect.signature(model.forward).parameters
    cache_kw = "past_key_values" if "past_key_values" in params else "cache"
    return cache_kw, "cache_position" in params


def bench_text(args, device: str) -> None:
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel, StaticCache

    from tribe_stream.extractors.demo import demo_extractors_path
    from tribe_stream.extractors.text import TextExtractor

    cfg = LlamaConfig(**(TINY["text"] if args.tiny else LLAMA_32_3B))
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = build(LlamaModel, cfg, device, dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(demo_extractors_path().text))
    settings = ExtractorConfig.reference().text
    ex = TextExtractor(model, tokenizer, settings, device=device, compile=device == "cuda")
    n_ctx, n_new = args.context_tokens, 8
    print(f"text: Llama {cfg.num_hidden_layers} layers x {cfg.hidden_size}, {n_ctx}-token "
          f"context, one word's {n_new} (padded) new tokens, {dtype}")  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    ctx = torch.randint(0, min(cfg.vocab_size, 500), (1, n_ctx), generator=gen).to(device)
    new = torch.randint(0, min(cfg.vocab_size, 500), (1, n_new), generator=gen).to(device)
    pos = torch.arange(n_ctx, n_ctx + n_new, device=device)
    w = torch.full((n_new,), 1.0 / n_new, device=device)

    # ours: the live text path's decoder and its static step (a CUDA graph on the GPU)
    live = ex.live()
    dec = live.decoder
    with torch.inference_mode():
        dec(ctx, torch.arange(n_ctx, device=device), torch.zeros(n_ctx, device=device), n_ctx)
        span = min(1 << (n_ctx + n_new - 1).bit_length(), dec.max_tokens)
        step = live._step(n_new, span)
        t0 = time.perf_counter()
        ours_vec = step(new, pos, w).float().cpu().numpy()
        print(f"  ours: capture {time.perf_counter() - t0:.0f} s")
        ours = timed(lambda: step(new, pos, w), device, args.iters)
    row("ours: KVDecoder step + CudaGraphStep", ours, ours)

    # our decoder with Inductor's CUDA graphs instead of CudaGraphStep
    live_c = ex.live(fuse=False)
    dec_c = live_c.decoder
    with torch.inference_mode():
        dec_c(ctx, torch.arange(n_ctx, device=device), torch.zeros(n_ctx, device=device), n_ctx)
        mode = "reduce-overhead" if device == "cuda" else None
        fn = torch.compile(lambda i, p, w_: dec_c(i, p, w_, span), mode=mode, dynamic=False)
        t0 = time.perf_counter()
        for _ in range(3):
            vec_c = fn(new, pos, w).float().cpu().numpy()
        print(f"  ours under torch.compile({mode}): {time.perf_counter() - t0:.0f} s")
        ours_c = timed(lambda: fn(new, pos, w), device, args.iters)
    row(f"ours: KVDecoder step under torch.compile(mode={mode!r})", ours_c, ours,
        rel_err(vec_c, ours_vec))  # fmt: skip

    # the library way: the model's forward with a StaticCache
    cache_kw, takes_cache_pos = _forward_kwargs(model)
    weights = torch.as_tensor(ex._weights).float().to(device)
    needed = ex.needed

    def rewind(cache) -> None:
        """Newer `transformers` count cached tokens inside the cache: set it back to the context,
        so each timed call writes the word at the same positions (as ours does)."""
        for layer in getattr(cache, "layers", []):
            if isinstance(getattr(layer, "cumulative_length", None), torch.Tensor):
                layer.cumulative_length.fill_(n_ctx)

    def library_step(fn, cache):
        rewind(cache)
        kwargs = {cache_kw: cache, "position_ids": pos[None], "use_cache": True}
        if takes_cache_pos:
            kwargs["cache_position"] = pos
        out = fn(input_ids=new, output_hidden_states=True, **kwargs)
        states = out.hidden_states
        means = torch.stack([states[i][0].float().mean(0) for i in needed])
        return weights @ means

    # the static cache as long as the span ours attends over (a live context must fit in it, so
    # it is sized for the longest: attention then runs over the whole cache, masked), and one
    # just long enough for this context (the best case for the library)
    for length in (span, n_ctx + 2 * n_new):
        with torch.inference_mode():
            cache = StaticCache(config=cfg, max_cache_len=length)
            kwargs = {cache_kw: cache, "position_ids": torch.arange(n_ctx, device=device)[None]}
            if takes_cache_pos:
                kwargs["cache_position"] = torch.arange(n_ctx, device=device)
            model(input_ids=ctx, use_cache=True, **kwargs)  # prefill the context
            eager_vec = library_step(model.forward, cache).float().cpu().numpy()
            eager = timed(lambda c=cache: library_step(model.forward, c), device, args.iters)
            mode = "reduce-overhead" if device == "cuda" else None
            compiled = torch.compile(model.forward, mode=mode, dynamic=False)
            t0 = time.perf_counter()
            for _ in range(3):
                lib_vec = library_step(compiled, cache)
            lib_vec = lib_vec.float().cpu().numpy()
            print(f"  library: torch.compile({mode}) {time.perf_counter() - t0:.0f} s")
            lib = timed(lambda c=cache, f=compiled: library_step(f, c), device, args.iters)
        row(f"transformers StaticCache({length}) + torch.compile(mode={mode!r})", lib, ours,
            rel_err(lib_vec, ours_vec))  # fmt: skip
        row(f"transformers StaticCache({length}), eager", eager, ours, rel_err(eager_vec, ours_vec))
        torch._dynamo.reset()
    with torch.inference_mode():
        again = timed(lambda: step(new, pos, w), device, args.iters)
    row("ours again (run-to-run spread)", again, ours)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="audio,text")
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--context-tokens", type=int, default=1024)
    p.add_argument("--tiny", action="store_true", help="small models (CPU smoke test)")
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.tiny:
        args.context_tokens = min(args.context_tokens, 64)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"device: {name}, torch {torch.__version__}")
    for part in args.only.split(","):
        {"audio": bench_audio, "text": bench_text}[part.strip()](args, device)
    print("\nsummary (median ms; ratio to ours; features' largest relative difference from ours)")
    for what, ms, ours, err in ROWS:
        e = f"{err:.1e}" if err is not None else "-"
        print(f"| {what} | {ms:.3f} | {ms / ours:.2f}x | {e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
