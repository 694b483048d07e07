"""Where the time of one w2v-BERT audio pass goes, variant by variant, in one run.

For each variant: median wall time of the encoder over a 30 s context (features already on the
GPU), the GPU's own kernel time in that pass and the number of kernels launched (from the
profiler), and the largest relative error against the official call. Variants: the official
call; `AudioTrunk` eager, its layers compiled, and compiled + one CUDA graph of the whole pass;
the model's own forward with its layers compiled.

`python tools/profile_audio.py [--context 30] [--iters 20] [--only trunk-graph,...]`
(CUDA; `--tiny` runs the plumbing on a CPU).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_extractors import TINY, W2V_BERT_2, build, rel_err, sync, timed  # noqa: E402

from tribe_stream.extractors.accel import CudaGraphStep  # noqa: E402
from tribe_stream.extractors.audio_encoder import AudioTrunk  # noqa: E402
from tribe_stream.extractors.config import ExtractorConfig  # noqa: E402


def kernel_time(fn, device: str, n: int = 3) -> tuple[float, float]:
    """(GPU kernel ms per call, kernels per call) over `n` calls, from the profiler."""
    if not device.startswith("cuda"):
        return float("nan"), float("nan")
    from torch.profiler import ProfilerActivity, profile

    fn()
    sync(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            fn()
        sync(device)
    total, count = 0.0, 0
    for evt in prof.events():
        if evt.device_type == torch.autograd.DeviceType.CUDA:
            total += evt.device_time
            count += 1
    return total / 1e3 / n, count / n


def top_kernels(fn, device: str, rows: int = 12) -> str:
    if not device.startswith("cuda"):
        return ""
    from torch.profiler import ProfilerActivity, profile

    fn()
    sync(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        sync(device)
    return prof.key_averages().table(
        sort_by="self_device_time_total", row_limit=rows, max_name_column_width=70
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--context", type=float, default=30.0)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--only", default="")
    p.add_argument("--top", action="store_true", help="print each variant's top kernels")
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    from transformers import Wav2Vec2BertConfig, Wav2Vec2BertModel

    cfg = Wav2Vec2BertConfig(**(TINY["audio"] if args.tiny else W2V_BERT_2))
    model = build(Wav2Vec2BertModel, cfg, device, dtype)
    groups = ExtractorConfig.reference().audio.groups(cfg.num_hidden_layers + 1)
    t = int(args.context * 50)
    torch.manual_seed(0)
    feats = torch.randn(1, t, 160, device=device, dtype=dtype)
    print(f"w2v-BERT {cfg.num_hidden_layers}x{cfg.hidden_size}, {t} frames, {dtype}, {device}: "
          f"{torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}, torch {torch.__version__}")  # fmt: skip

    with torch.inference_mode():
        states = model(input_features=feats, output_hidden_states=True).hidden_states
        ref = torch.stack([torch.stack([states[i][0] for i in g]).float().mean(0) for g in groups])
        ref = ref.cpu().numpy()
        del states

    rows: list[tuple[str, float, float, float, float]] = []

    def run(name: str, fn) -> None:
        if args.only and name not in args.only.split(","):
            return
        try:
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = fn()
                sync(device)
                setup = time.perf_counter() - t0
                wall = timed(fn, device, args.iters)
                gpu, n = kernel_time(fn, device)
                err = (
                    rel_err(out[0].float().cpu().numpy(), ref) if out is not None else float("nan")
                )
                if args.top:
                    print(f"-- {name} --\n{top_kernels(fn, device)}")
            rows.append((name, wall, gpu, n, err))
            print(f"  {name:<28} {wall:8.2f} ms wall  {gpu:8.2f} ms GPU  {n:6.0f} kernels  "
                  f"err {err:.2e}  (first call {setup:.0f} s)", flush=True)  # fmt: skip
        except Exception:  # noqa: BLE001 - report and go on to the next variant
            print(f"  {name}: FAILED")
            traceback.print_exc()

    def official():
        return model(input_features=feats, output_hidden_states=True).hidden_states[-1]

    run("official", lambda: (official(), None)[1])

    trunk = AudioTrunk(model, groups)
    run("trunk-eager", lambda: trunk(feats))
    for layer in trunk.layers:
        layer.compile(dynamic=False)
    run("trunk-compiled", lambda: trunk(feats))
    if device == "cuda":
        with torch.inference_mode():
            step = CudaGraphStep(trunk, [feats])
        run("trunk-graph", lambda: step(feats))
    torch._dynamo.reset()

    # the model's own forward, as transformers runs it, its layers compiled
    from tribe_stream.extractors.accel import compile_blocks
    from tribe_stream.extractors.audio import GroupedAudioEncoder

    enc = GroupedAudioEncoder(model, groups).to(device)
    compile_blocks(model.encoder.layers, dynamic=None)
    run("model-compiled", lambda: enc(feats))

    print(
        "\n| variant | wall ms | GPU kernel ms | kernels | max rel err |\n|---|---:|---:|---:|---:|"
    )
    for name, wall, gpu, n, err in rows:
        print(f"| {name} | {wall:.2f} | {gpu:.2f} | {n:.0f} | {err:.1e} |")


if __name__ == "__main__":
    main()
