"""A whole clip end to end: `tribe_stream.predict`'s path against the official-style sequential one,
in one run, with the ratio and seconds of media per second of wall time.

- official-style: each model called as the official code calls it, one after the other: video,
  one 64-frame clip per bin through `VJEPA2Model(pixel_values_videos, output_hidden_states=True)`
  (B = 1, predictor included); audio, `SeamlessM4TFeatureExtractor` on the CPU then
  `Wav2Vec2BertModel(output_hidden_states=True)` per 30-60 s chunk; text, per word, the whole
  context through the LM; then the brain model eager in float32 over the official windows.
- ours: `Predictor.predict` (no cache): our extractors (compiled trunks, batched clips, KV cache
  for text on a GPU), the engine named.

Both start from the same loaded models and the same decoded media, and the ratio compares their
wall times for the same clip. `--checkpoint DIR` takes a full-size random-weight folder from
`tools/make_random_model.py` (no text: its Llama is not built), `demo` the small untrained models.

    python tools/bench_predict.py --seconds 600 [--checkpoint DIR] [--engine compiled]
        [--variants half:4,fp8:8,fp8all:8,fp8-plain:8,fp8all-plain:8,ao:8]

Variants run one after the other on ONE loaded predictor (the video encoder rebuilt for each):
`half`, `fp8` (FP8 products), `fp8all` (products and attention); `-plain`: without the Triton
steps of `fp8_kernels.py` (plain torch, fused by Inductor); `ao`: torchao's FP8 linears
(`Float8DynamicActivationFloat8WeightConfig`, per-row scales) on the 16-bit encoder in bfloat16.
Each variant's wall time is also printed against the first's.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tribe_stream import AUDIO_RATE, BIN_SECONDS  # noqa: E402


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.inference_mode()
def official_video(ex, path: Path, n_bins: int) -> np.ndarray:
    """One clip per bin through the model's own forward, frames as the clip times choose them."""
    from tribe_stream.extractors.timing import chunk_bounds, clip_sample_times, select_frames
    from tribe_stream.extractors.video import preprocess_frames
    from tribe_stream.media import iter_video_frames

    frames, times = [], []
    for t, rgb in iter_video_frames(path):
        frames.append(rgb)
        times.append(t)
    times = np.asarray(times)
    ends = (np.arange(n_bins) + 1) * BIN_SECONDS
    starts = np.zeros(n_bins)  # clips are clamped at the start of their 30-60 s chunk
    s = ex.settings
    for c0, c1 in chunk_bounds(n_bins * BIN_SECONDS, s.chunk_max_seconds, s.chunk_min_seconds):
        starts[(ends - BIN_SECONDS >= c0 - 1e-9) & (ends - BIN_SECONDS < c1 - 1e-9)] = c0
    samples = clip_sample_times(ends, ex.n_frames, s.clip_seconds, starts)
    out = np.zeros((n_bins, *ex.shape), np.float32)
    for b in range(n_bins):
        idx = select_frames(samples[b], times)
        clip = preprocess_frames(np.stack([frames[i] for i in idx]), ex.prep, ex.device)
        clip = clip.to(ex.dtype)[None]
        states = ex.model(pixel_values_videos=clip, output_hidden_states=True).hidden_states
        out[b] = (
            torch.stack(
                [torch.stack([states[i] for i in g]).mean(0).float().mean(1)[0] for g in ex.groups]
            )
            .cpu()
            .numpy()
        )
    return out.transpose(1, 2, 0)


@torch.inference_mode()
def official_audio(ex, audio: np.ndarray, n_bins: int) -> np.ndarray:
    """The processor on the CPU, then the model over each 30-60 s chunk, all hidden states."""
    from tribe_stream.extractors.audio import zscore
    from tribe_stream.extractors.timing import chunk_bounds, frames_for_bins

    duration = len(audio) / AUDIO_RATE
    out = np.zeros((*ex.shape, n_bins), np.float32)
    s = ex.settings
    for c0, c1 in chunk_bounds(duration, s.chunk_max_seconds, s.chunk_min_seconds):
        piece = audio[int(round(c0 * AUDIO_RATE)) : int(round(c1 * AUDIO_RATE))]
        feats = ex.processor(zscore(piece).numpy(), sampling_rate=AUDIO_RATE, return_tensors="pt")
        x = feats["input_features"].to(ex.device, ex.dtype)
        states = ex.model(input_features=x, output_hidden_states=True).hidden_states
        groups = torch.stack([torch.stack([states[i][0] for i in g]).mean(0) for g in ex.groups])
        bins = [b for b in range(n_bins) if c0 <= b * BIN_SECONDS < c1]
        idx = frames_for_bins(np.asarray(bins), c0, c1, groups.shape[1])
        out[..., bins] = groups[:, idx].float().cpu().numpy().transpose(0, 2, 1)
    return out


PRECISIONS = ("half", "fp8", "fp8all", "fp8-plain", "fp8all-plain", "ao")


def use_video(video, prec: str, batch: int | None) -> None:
    """Rebuild `video`'s encoder for the variant `prec` (PRECISIONS) and compile it."""
    from tribe_stream.extractors import fp8
    from tribe_stream.extractors.accel import compile_blocks
    from tribe_stream.extractors.fp8 import VideoFp8, refusal
    from tribe_stream.extractors.video_encoder import VideoTrunk

    setting = {"fp8": VideoFp8.PRODUCTS, "fp8all": VideoFp8.ATTENTION}.get(prec.split("-")[0])
    setting = setting or VideoFp8.OFF
    if why := refusal(setting, video.device):
        raise SystemExit(f"variant {prec}: {why}")
    torch._dynamo.reset()  # every variant compiled afresh (the Triton switch below is global)
    fused = fp8.__dict__.setdefault("_fused_kernels", fp8._fused)
    fp8._fused = (lambda x: False) if prec.endswith("-plain") else fused
    with torch.no_grad():
        trunk = VideoTrunk(video.model, video.groups, fp8=setting)
        if prec == "ao":
            from torchao.quantization import (
                Float8DynamicActivationFloat8WeightConfig,
                PerRow,
                quantize_,
            )

            trunk = copy.deepcopy(trunk).to(torch.bfloat16)  # the model's own layers untouched
            trunk.dtype = torch.bfloat16
            quantize_(trunk.layers, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
    video.encoder = trunk.to(video.device).eval()
    compile_blocks(video.encoder.layers)
    video.fp8 = setting
    video.max_batch = batch or video.max_batch


class StageClock:
    """A `progress` callback noting when each stage was first and last heard of."""

    def __init__(self):
        self.seen: dict[str, list[float]] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        self.seen.setdefault(stage, [now, now])[1] = now

    def summary(self, t0: float) -> str:
        """Each stage from its first call to the next stage's first (the last: its last call)."""
        items = sorted(self.seen.items(), key=lambda kv: kv[1][0])
        parts = []
        for i, (name, (first, last)) in enumerate(items):
            end = items[i + 1][1][0] if i + 1 < len(items) else last
            parts.append(f"{name} {end - first:.1f} s (from {first - t0:.1f} s)")
        return ", ".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="demo")
    ap.add_argument("--seconds", type=float, default=600.0, help="length of the generated clip")
    ap.add_argument(
        "--engine", default=None, help="ours: torch, compiled (default: compiled on a GPU)"
    )
    ap.add_argument("--size", default="320x240", help="clip size WIDTHxHEIGHT")
    ap.add_argument(
        "--variants",
        default="half",
        help="our video settings to time, comma-separated PRECISION[:BATCH] (PRECISION: "
        f"{', '.join(PRECISIONS)}; BATCH: clips per forward, default 4 on a GPU), e.g. half:4,fp8:8",
    )
    ap.add_argument(
        "--no-official",
        dest="official",
        action="store_false",
        help="time only ours (no official-style run, no ratio)",
    )
    args = ap.parse_args()
    variants = []
    for v in args.variants.split(","):
        prec, _, batch = v.partition(":")
        if prec not in PRECISIONS:
            ap.error(f"variant {v!r}: precision is one of {', '.join(PRECISIONS)}")
        variants.append((v, prec, int(batch) if batch else None))

    from tribe_stream.engines import make_engine
    from tribe_stream.media import read_audio
    from tribe_stream.offline import predict_windows
    from tribe_stream.prediction import Predictor
    from tribe_stream.sources.clip import make_clip

    device = "cuda" if torch.cuda.is_available() else "cpu"
    engine = args.engine or ("compiled" if device == "cuda" else "torch")
    w, h = (int(v) for v in args.size.split("x"))
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"device: {name}, torch {torch.__version__}; checkpoint {args.checkpoint}")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        clip = make_clip(Path(tmp) / "clip.mp4", args.seconds, width=w, height=h, speech=True)
        print(f"clip: {args.seconds:.0f} s, {w}x{h}, made in {time.perf_counter() - t0:.0f} s")
        # two lengths: the second makes the audio trunk's compiled pass take any length, as
        # the long clip's 60 s chunks need (a one-time compile, left out of the timing)
        warm = [make_clip(Path(tmp) / f"warm{s}.mp4", s, width=w, height=h) for s in (4.0, 6.0)]
        timed = []  # (variant, seconds, predictions)
        ours = Predictor(checkpoint=args.checkpoint, engine=engine, use_cache=False, asr=False)
        for name_v, prec, batch in variants:
            if "video" in ours.extractors:
                use_video(ours.extractors["video"], prec, batch)
            for clip_w in warm:  # compile and capture outside the timing
                ours.predict(clip_w)
            sync(device)
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            stages = StageClock()
            t0 = time.perf_counter()
            got = ours.predict(clip, progress=stages)
            sync(device)
            seconds = time.perf_counter() - t0
            mem = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0
            print(f"  ours {name_v}: {seconds:.1f} s, peak GPU memory {mem:.1f} GiB")
            print(f"    stages: {stages.summary(t0)}")
            busy = getattr(ours.extractors.get("video"), "last_gpu_seconds", None)
            if busy is not None:  # the video stage less this: the GPU waited for the host
                print(f"    video batches held the GPU {busy:.1f} s")
            timed.append((name_v, seconds, got))
        first_v, first_t, first_p = timed[0]
        print(f"\n| variant | wall s | against {first_v} | predictions vs {first_v} |")
        print("|---|---:|---:|---:|")
        for name_v, t_ours, got in timed:
            diff = np.abs(got.values - first_p.values).max() / np.abs(first_p.values).max()
            print(f"| {name_v} | {t_ours:.1f} | {first_t / t_ours:.3f}x | {diff:.1e} |")
        if not args.official:
            print("\n| path | wall s | media s per wall s |\n|---|---:|---:|")
            for name_v, t_ours, _ in timed:
                print(f"| ours (video {name_v}) | {t_ours:.1f} | {args.seconds / t_ours:.1f} |")
            return 0
        name_v, t_ours, preds = timed[0]
        ex = ours.extractors  # loaded once, shared by both paths

        t0 = time.perf_counter()
        n_bins = 2 * len(preds) - (1 if round(args.seconds * 2) % 2 else 0)
        feats = {}
        if "video" in ex:
            feats["video"] = official_video(ex["video"], clip, n_bins)
        t_video = time.perf_counter() - t0
        if "audio" in ex:
            feats["audio"] = official_audio(ex["audio"], read_audio(clip), n_bins)
        t_audio = time.perf_counter() - t0 - t_video
        eager = make_engine("torch", ours.loaded, device=device, dtype="float32")
        base = predict_windows(eager, feats, pad_last=True)
        sync(device)
        t_base = time.perf_counter() - t0
    print(f"  official-style: video {t_video:.1f} s, audio {t_audio:.1f} s, total {t_base:.1f} s")
    print("\n| path | wall s | media s per wall s | ratio | max relative difference |")
    print("|---|---:|---:|---:|---:|")
    print(f"| official-style sequential | {t_base:.1f} | {args.seconds / t_base:.1f} | 1.0x | |")
    for name_v, t_ours, preds in timed:
        diff = np.abs(base - preds.values).max() / (np.abs(base).max() + 1e-12)
        print(
            f"| ours (`predict`, engine {engine}, video {name_v}) | {t_ours:.1f} | "
            f"{args.seconds / t_ours:.1f} | {t_base / t_ours:.1f}x | {diff:.1e} |"
        )
    print(f"modalities: {', '.join(sorted(feats))} (text off: no speech recogniser in either path)")
    return 0


if __name__ == "__main__":
    from tools.cli_guard import run_tool

    sys.exit(run_tool(main, __file__))
