"""Feature-extractor cost per 0.5 s bin of one stream: the eager baseline (docs/MODEL.md §4) against
tribe-stream's path, side by side, with the ratio.

Full-size models with random weights, built from their configs (values written below, nothing
downloaded): V-JEPA2 ViT-g fpc64-256, w2v-BERT 2.0, Llama-3.2-3B.

- video, baseline: the official call, `VJEPA2Model(clip, output_hidden_states=True)` (predictor
  included), fp16, one 64-frame clip per bin. Ours: `LiveVideo.extract` (frames preprocessed once
  on arrival, encoder trunk only, rotary tables made once, only the needed hidden states kept,
  token means on the GPU), fp16, regional `torch.compile`, the faster attention kernel, the two
  bins of a second batched.
- audio, baseline: `Wav2Vec2BertModel` on 30 s of features, fp16 eager (feature extraction on the
  CPU timed apart). Ours: `LiveAudio.extract` over a 30 s trailing context (filterbank on the GPU,
  fp16, `AudioTrunk`: relative-key bias gathered from `left + right + 1` distances instead of a
  `(T, T, d)` table, layers compiled, the pass padded to the context and replayed as one CUDA
  graph): one pass per bin, and one pass per second (2 bins); eager rows without compile.
- text, baseline: the official per-word forward of the word's whole context (1024 tokens), bf16
  eager. Ours: `LiveText.add` with the context in a KV cache, a word's new tokens in one padded
  static step replayed as a CUDA graph (uncompiled, and with the layers' pieces compiled: the
  default), bf16; the GPU step and the host's tokenisation apart; also the cost once the
  1024-word context slides (exact, and `rebase`). `--profile` prints each path's top kernels.

Run on a CUDA machine: `python tools/bench_extractors.py` (about 3-5 minutes, mostly compiling).
Smoke test on a CPU: `python tools/bench_extractors.py --tiny`.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tribe_stream.extractors.config import ExtractorConfig  # noqa: E402
from tribe_stream.full_size import LLAMA_32_3B, VJEPA2_VITG, W2V_BERT_2, build  # noqa: E402, F401

TINY = {
    "video": dict(VJEPA2_VITG, crop_size=32, hidden_size=64, num_attention_heads=2, num_hidden_layers=3, mlp_ratio=2.0,
                  pred_hidden_size=32, pred_num_attention_heads=2, pred_num_hidden_layers=1, num_pooler_layers=1),
    "audio": dict(W2V_BERT_2, hidden_size=64, num_hidden_layers=3, num_attention_heads=2, intermediate_size=128),
    "text": dict(LLAMA_32_3B, vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=16, bos_token_id=0, eos_token_id=1),
}  # fmt: skip

ROWS: list[tuple[str, str, float | None, float | None, str]] = []


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, iters: int, warmup: int = 2) -> float:
    """Median wall time of `fn()` in ms (synchronised)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def record(
    modality: str, what: str, base: float | None, ours: float | None, note: str = ""
) -> None:
    ROWS.append((modality, what, base, ours, note))
    b = f"{base:8.2f}" if base is not None else "       -"
    o = f"{ours:8.2f}" if ours is not None else "       -"
    print(f"  {what:<48} baseline {b} ms   ours {o} ms   {note}", flush=True)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))


def profile(fn, device: str, label: str, n: int = 3, rows: int = 25) -> None:
    """Print the kernels (or CPU ops) that took the most time over `n` calls of `fn`."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    fn()
    sync(device)
    with torch_profile(activities=acts) as prof:
        for _ in range(n):
            fn()
        sync(device)
    key = "self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    print(f"  -- profile: {label} ({n} calls) --")
    try:
        print(prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60))
    except Exception:  # noqa: BLE001 - the sort key was renamed in some torch versions
        key = key.replace("cuda", "device")
        print(prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60))


def fastest_attention(ex, prefs, measure, modality: str, label: str, base: float):
    """Time `measure()` with `ex.attention` set to each SDPA kernel preference in turn (one that
    fails is reported and passed over), record each against `base` (`label` formatted with the
    preference), and leave `ex.attention` at the fastest; returns it and its time."""
    best, best_t = None, float("inf")
    for pref in prefs:
        ex.attention = pref
        try:
            t = measure()
        except Exception as exc:  # noqa: BLE001 - a kernel may not exist on this GPU/torch
            print(f"  attention {pref}: unavailable ({type(exc).__name__}: {exc})")
            continue
        record(modality, label.format(pref or "default"), base, t, f"x{base / t:.2f}")
        if t < best_t:
            best, best_t = pref, t
    ex.attention = best
    return best, best_t


def free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- video ------------------------------------------------------------------------------------------


def bench_video(args, device: str) -> None:
    from transformers import VJEPA2Config, VJEPA2Model

    from tribe_stream.extractors.fp8 import fp8_supported
    from tribe_stream.extractors.video import LiveVideo, VideoExtractor, VideoPreprocess

    cfg = VJEPA2Config(**(TINY["video"] if args.tiny else VJEPA2_VITG))
    half = torch.float16 if device.startswith("cuda") else torch.float32
    model = build(VJEPA2Model, cfg, device, half)
    settings = ExtractorConfig.reference().video
    crop = cfg.crop_size
    print(f"video: V-JEPA2 {cfg.num_hidden_layers} layers x {cfg.hidden_size}, {crop} px, "
          f"attention {cfg._attn_implementation}, {half}")  # fmt: skip
    gen = torch.Generator(device=device).manual_seed(0)
    clip1 = torch.randn(1, 64, 3, crop, crop, device=device, generator=gen).to(half)
    clip2 = torch.randn(2, 64, 3, crop, crop, device=device, generator=gen).to(half)
    ex = VideoExtractor(
        model, settings, VideoPreprocess(int(crop * 256 / 224), crop), device=device
    )

    def official(clips):
        with torch.inference_mode():
            states = model(pixel_values_videos=clips, output_hidden_states=True).hidden_states
            return torch.stack(
                [torch.stack([states[i] for i in g]).mean(0).float().mean(1) for g in ex.groups], 1
            )

    base1 = timed(lambda: official(clip1), device, args.iters)
    base2 = timed(lambda: official(clip2), device, max(2, args.iters // 2))
    ref = official(clip2).cpu().numpy()
    record("video", "one 64-frame clip, official call (B=1)", base1, None, "MODEL.md §4: 160 ms")
    record("video", "clip of each bin of a second, official (B=2)", base2 / 2, None, "per bin")

    best, _ = fastest_attention(
        ex,
        (None, ("flash",), ("cudnn",), ("efficient",)),
        lambda: timed(lambda: ex.encode(clip2), device, max(2, args.iters // 2)) / 2,
        "video",
        "ours eager, attention {} (B=2)",
        base2 / 2,
    )
    err = rel_err(ex.encode(clip2), ref)
    print(f"  ours vs official: max relative error {err:.2e} (fp16)")
    if args.compile:
        t0 = time.perf_counter()
        VideoExtractor.__init__(
            ex, model, settings, ex.prep, device=device, compile=True, attention=best
        )
        ex.encode(clip2)
        ex.encode(clip1)
        print(f"  regional compile of the layers: {time.perf_counter() - t0:.0f} s")
    frames = np.random.default_rng(0).integers(0, 256, (16 * 6, 360, 480, 3), dtype=np.uint8)
    live = LiveVideo(ex)
    t0 = time.perf_counter()
    live.feed(frames, np.arange(len(frames)) / 16)
    sync(device)
    pre = (time.perf_counter() - t0) * 1e3 / len(frames)
    ours2 = timed(lambda: live.extract([5.5, 6.0]), device, max(2, args.iters // 2)) / 2
    ours1 = timed(lambda: live.extract([6.0]), device, args.iters)
    tag = "compiled" if args.compile else "eager"
    record(
        "video",
        f"ours {tag}, per bin, one forward per bin (B=1)",
        base1,
        ours1,
        f"x{base1 / ours1:.2f}",
    )
    record(
        "video",
        f"ours {tag}, per bin, 2 bins per forward (B=2)",
        base1,
        ours2,
        f"x{base1 / ours2:.2f}",
    )
    record(
        "video", "ours: preprocessing of one 480x360 frame on arrival", None, pre, "x16 frames/s"
    )
    err = rel_err(ex.encode(clip2), ref)
    print(f"  ours ({tag}) vs official: max relative error {err:.2e}")
    if args.profile:
        profile(lambda: live.extract([5.5, 6.0]), device, f"video {tag}, 2 bins", n=2)
    if not args.fp8 or fp8_supported(device):
        return
    free()
    t0 = time.perf_counter()
    ex8 = VideoExtractor(
        model, settings, ex.prep, device=device, compile=args.compile, attention=best, fp8=True
    )
    ex8.encode(clip2)
    ex8.encode(clip1)
    print(f"  fp8 trunk build + compile: {time.perf_counter() - t0:.0f} s")
    live8 = LiveVideo(ex8)
    live8.feed(frames, np.arange(len(frames)) / 16)
    f8_2 = timed(lambda: live8.extract([5.5, 6.0]), device, max(2, args.iters // 2)) / 2
    f8_1 = timed(lambda: live8.extract([6.0]), device, args.iters)
    record(
        "video", f"ours {tag} FP8, one forward per bin (B=1)", base1, f8_1, f"x{base1 / f8_1:.2f}"
    )
    record(
        "video", f"ours {tag} FP8, 2 bins per forward (B=2)", base1, f8_2, f"x{base1 / f8_2:.2f}"
    )
    err8 = rel_err(ex8.encode(clip2), ref)
    print(f"  ours FP8 vs official fp16: max relative error {err8:.2e}")
    if args.profile:
        profile(lambda: live8.extract([5.5, 6.0]), device, f"video {tag} FP8, 2 bins", n=2)


# -- audio ------------------------------------------------------------------------------------------


def bench_audio(args, device: str) -> None:
    from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertConfig, Wav2Vec2BertModel

    from tribe_stream.extractors.audio import AudioExtractor, zscore

    cfg = Wav2Vec2BertConfig(**(TINY["audio"] if args.tiny else W2V_BERT_2))
    half = torch.float16 if device.startswith("cuda") else torch.float32
    model = build(Wav2Vec2BertModel, cfg, device, half)
    processor = SeamlessM4TFeatureExtractor(padding_value=1.0)
    settings = ExtractorConfig.reference().audio
    context = args.audio_context
    print(f"audio: w2v-BERT {cfg.num_hidden_layers} layers x {cfg.hidden_size}, {context:.0f} s context, "
          f"attention {cfg._attn_implementation}, {half}")  # fmt: skip
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(int(context * 16000))).astype(np.float32)
    t0 = time.perf_counter()
    feats = processor(zscore(wave).numpy(), sampling_rate=16000, return_tensors="pt")[
        "input_features"
    ]
    cpu_fe = (time.perf_counter() - t0) * 1e3
    feats = feats.to(device, half)
    groups = settings.groups(cfg.num_hidden_layers + 1)

    def official():
        with torch.inference_mode():
            return model(input_features=feats, output_hidden_states=True).hidden_states

    base = timed(official, device, args.iters)
    record(
        "audio",
        f"forward over {context:.0f} s, official call",
        base,
        None,
        "MODEL.md §4: 53 ms (30 s)",
    )
    record("audio", "  + feature extraction on the CPU (numpy)", cpu_fe, None, "once per pass")
    with torch.inference_mode():
        states = official()
        ref = (
            torch.stack([torch.stack([states[i][0] for i in g]).mean(0) for g in groups])
            .float()
            .cpu()
            .numpy()
        )
        del states
    ex = AudioExtractor(model, processor, settings, device=device)  # eager AudioTrunk
    n_bins = int(context * 2)
    bins = [n_bins - 1]
    best, eager = fastest_attention(
        ex,
        (None, ("cudnn",), ("efficient",)) if device.startswith("cuda") else (None,),
        lambda: timed(lambda: ex.extract(wave, 0.0, bins), device, args.iters),
        "audio",
        "ours eager, one pass per bin, attention {}",
        base,
    )
    print(
        f"  ours vs official frames: max relative error {rel_err(ex.frames(wave).cpu().numpy(), ref):.2e}"
    )
    if not args.compile:
        record("audio", "ours eager, one pass per second (2 bins)", base, eager / 2,
               f"x{2 * base / eager:.2f}")  # fmt: skip
        return
    t0 = time.perf_counter()
    ex = AudioExtractor(model, processor, settings, device=device, compile=True, attention=best)
    live = ex.live(context)  # the pipeline's path: each pass padded to the context, one CUDA graph
    live.feed(wave, 0.0)
    pair = [n_bins - 2, n_bins - 1]
    live.extract(pair)
    print(
        f"  regional compile of the layers (+ CUDA graph capture): {time.perf_counter() - t0:.0f} s"
    )
    graphed = (
        "CUDA graph"
        if ex.graphs
        else f"no CUDA graph ({'capture failed' if ex.pad_live else device})"
    )
    print(f"  live (padded, {graphed}) vs official frames: max relative error "
          f"{rel_err(ex.frames(wave, live.pad_to).cpu().numpy(), ref):.2e}")  # fmt: skip
    one = timed(lambda: live.extract(bins), device, args.iters)
    record("audio", f"ours compiled + {graphed}, one pass per bin", base, one, f"x{base / one:.2f}")
    early, seconds = ex.live(context), max(1.0, round(context / 3))  # a stream's first seconds
    early.feed(wave[: int(seconds * 16000)], 0.0)
    t_short = timed(lambda: early.extract([int(seconds * 2) - 1]), device, args.iters)
    record("audio", f"  the same, {seconds:.0f} s of audio so far (padded)", base, t_short,
           "stream start")  # fmt: skip
    if args.profile:
        profile(lambda: live.extract(pair), device, "audio live pass", n=2)
    t_pair = timed(lambda: live.extract(pair), device, args.iters)
    record("audio", f"ours compiled + {graphed}, one pass per second (2 bins)", base, t_pair / 2,
           f"x{2 * base / t_pair:.2f}")  # fmt: skip


# -- text -------------------------------------------------------------------------------------------


def bench_text(args, device: str, tokenizer_folder: Path) -> None:
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    from tribe_stream.extractors.demo import CORPUS
    from tribe_stream.extractors.text import TextExtractor

    cfg = LlamaConfig(**(TINY["text"] if args.tiny else LLAMA_32_3B))
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = build(LlamaModel, cfg, device, dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder))
    settings = ExtractorConfig.reference().text
    n_ctx = args.context_tokens
    print(
        f"text: Llama {cfg.num_hidden_layers} layers x {cfg.hidden_size}, context {n_ctx} tokens, {dtype}"
    )
    ids = torch.randint(0, 512, (1, n_ctx), device=device)

    def official():
        with torch.inference_mode():
            return model(input_ids=ids, output_hidden_states=True).hidden_states

    base = timed(official, device, args.iters)
    record(
        "text",
        f"one new word, official: full forward of {n_ctx} tokens",
        base,
        None,
        "MODEL.md §4: 39 ms",
    )

    words = CORPUS.split()
    story = (words * (1 + 4000 // len(words)))[:4000]
    ex = TextExtractor(
        model, tokenizer, settings, device=device, compile=args.compile, max_tokens=4096
    )
    per_word = len(ex.tokens(" ".join(story[:500]))) / 500
    n_words = max(8, int(n_ctx / per_word))
    # the steady state before the context fills
    live = ex.live(fuse=False)
    live.prime(story[:n_words])
    nxt = iter(story[n_words:])
    for _ in range(3):  # warm up (and capture the CUDA graph)
        live.add(next(nxt))
    sync(device)
    times = []
    for _ in range(args.words):
        t0 = time.perf_counter()
        live.add(next(nxt))
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    ours = statistics.median(times)
    tag = "CUDA graph" if ex.compile and device.startswith("cuda") else "eager"
    record("text", f"ours, one new word, KV cache ({tag})", base, ours,
           f"x{base / ours:.2f}; {per_word:.2f} tokens/word, p90 {np.percentile(times, 90):.1f} ms")  # fmt: skip
    # where a word's time goes: the GPU step alone, and the host's tokenisation of its context
    span = min(4096, 1 << (len(live.cached) + 2 - 1).bit_length())
    shapes = [(1, span), (2, span), (8, span), (2, 4096)] if args.profile else [(2, span)]
    for n_new, n_span in shapes:
        dev_ids = torch.randint(0, 512, (1, n_new), device=device)
        dev_pos = torch.arange(len(live.cached), len(live.cached) + n_new, device=device)
        dev_w = torch.full((n_new,), 1.0 / n_new, device=device)
        with torch.inference_mode():
            step = live._step(n_new, n_span)
            gpu = timed(lambda: step(dev_ids, dev_pos, dev_w), device, args.iters)  # noqa: B023
        record("text", f"  of which the step of {n_new} tokens over {n_span} positions", None, gpu,
               tag)  # fmt: skip
    context = live.context
    host = timed(lambda: ex.tokens(context), "cpu", args.iters)
    record("text", "  of which tokenising the context (host)", None, host, "once per word")
    if args.profile:
        profile(lambda: live.add(next(nxt)), device, "text: one new word", n=5)
    if ex.compile and device.startswith("cuda"):  # the layers' pieces compiled, in the graphs
        try:
            fused = ex.live(fuse=True)
            fused.prime(story[:n_words])
            nxt = iter(story[n_words:])
            t0 = time.perf_counter()
            for _ in range(8):  # compile (one graph per padded token count) and capture
                fused.add(next(nxt))
            sync(device)
            print(f"  compile of the fused layer pieces: {time.perf_counter() - t0:.0f} s")
            times = []
            for _ in range(args.words):
                t0 = time.perf_counter()
                fused.add(next(nxt))
                sync(device)
                times.append((time.perf_counter() - t0) * 1e3)
            ours_f = statistics.median(times)
            record("text", "ours, one new word, KV cache (CUDA graph, fused; default)", base, ours_f,
                   f"x{base / ours_f:.2f}; p90 {np.percentile(times, 90):.1f} ms")  # fmt: skip
            n_new, n_span = 2, span
            dev_ids = torch.randint(0, 512, (1, n_new), device=device)
            dev_pos = torch.arange(len(fused.cached), len(fused.cached) + n_new, device=device)
            dev_w = torch.full((n_new,), 1.0 / n_new, device=device)
            with torch.inference_mode():
                step = fused._step(n_new, n_span)
                gpu = timed(lambda: step(dev_ids, dev_pos, dev_w), device, args.iters)
            record("text", f"  of which the step of 2 tokens over {span} positions", None, gpu,
                   "fused")  # fmt: skip
            sample = story[:40]
            check = ex.live(fuse=True)
            vecs = np.stack([check.add(w) for w in sample])
            err = rel_err(vecs, ex.reference_vectors(sample))
            print(
                f"  ours (fused) vs official word vectors (40 words): max relative error {err:.2e}"
            )
        except Exception:  # noqa: BLE001 - report and go on
            traceback.print_exc()
            print("  fused text step: FAILED")
    # past 1024 words: every word's context slides

    full = TextExtractor(
        model,
        tokenizer,
        replace(settings, max_context_words=n_words),
        device=device,
        compile=args.compile,
    )
    for overflow in ("exact", "rebase"):
        live = full.live(overflow, fuse=False)
        live.prime(story[:n_words])
        nxt = iter(story[n_words:])
        live.add(next(nxt))
        sync(device)
        t0 = time.perf_counter()
        count = args.words
        for _ in range(count):
            live.add(next(nxt))
        sync(device)
        ours = (time.perf_counter() - t0) * 1e3 / count
        record(
            "text",
            f"ours, one new word past the context ({overflow})",
            base,
            ours,
            f"mean of {count}",
        )
    # KV path against the official forward, on real text
    sample = story[:40]
    err = rel_err(ex.word_vectors(sample), ex.reference_vectors(sample))
    print(f"  ours vs official word vectors (40 words): max relative error {err:.2e} ({dtype})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny models on the CPU (smoke test)")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--only", default="video,audio,text", help="comma-separated subset")
    p.add_argument(
        "--iters", type=int, default=None, help="timed repetitions (default 10; 3 with --tiny)"
    )
    p.add_argument("--words", type=int, default=30, help="timed new words")
    p.add_argument("--profile", action="store_true", help="print the top kernels of each path")
    p.add_argument(
        "--no-fp8", dest="fp8", action="store_false", help="skip the FP8 video rows (GPU 8.9+)"
    )
    p.add_argument("--context-tokens", type=int, default=1024)
    p.add_argument(
        "--audio-context", type=float, default=30.0, help="seconds of trailing audio context"
    )
    p.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        help="skip torch.compile / CUDA graphs",
    )
    args = p.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.iters is None:
        args.iters = 3 if args.tiny else 10
    if args.tiny:
        args.words = min(args.words, 6)
        args.context_tokens = min(args.context_tokens, 256)
        args.audio_context = min(args.audio_context, 4.0)
    if not device.startswith("cuda"):
        args.compile = args.compile and not args.tiny
    import transformers

    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    print(f"device {gpu}; torch {torch.__version__}; transformers {transformers.__version__}; "
          f"{'tiny' if args.tiny else 'full-size'} random-weight models; compile={args.compile}")  # fmt: skip
    torch.manual_seed(0)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        from tribe_stream.extractors.demo import _build_tokenizer

        _build_tokenizer(Path(tmp))
        benches = {"video": bench_video, "audio": bench_audio, "text": bench_text}
        for name in args.only.split(","):
            t0 = time.perf_counter()
            try:
                if name == "text":
                    benches[name](args, device, Path(tmp))
                else:
                    benches[name](args, device)
            except Exception:  # noqa: BLE001 - report and go on with the other modalities
                traceback.print_exc()
                print(f"{name}: FAILED (see the traceback above)")
            print(f"  ({name}: {time.perf_counter() - t0:.0f} s)\n", flush=True)
            free()
    print(
        "| modality | what (per 0.5 s bin of one stream) | baseline ms | ours ms | ratio | note |"
    )
    print("|---|---|---|---|---|---|")
    for modality, what, base, ours, note in ROWS:
        ratio = f"{base / ours:.2f}x" if base and ours else ""
        b = f"{base:.2f}" if base is not None else ""
        o = f"{ours:.2f}" if ours is not None else ""
        print(f"| {modality} | {what.strip()} | {b} | {o} | {ratio} | {note} |")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s on {gpu}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
