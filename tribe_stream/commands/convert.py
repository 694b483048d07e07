"""`tribe-stream convert`: a checkpoint to one compact, mmap-able safetensors file."""

from __future__ import annotations

NAME = "convert"
HELP = "convert a TRIBE v2 checkpoint (folder, best.ckpt or hub id) to model.safetensors"


def add_arguments(p) -> None:
    p.add_argument(
        "checkpoint", help="model folder (config.yaml + best.ckpt), .ckpt file, or hub id"
    )
    p.add_argument("out", help="output .safetensors file")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])


def run(args) -> int:
    from pathlib import Path

    from tribe_stream.devices import torch_dtype
    from tribe_stream.errors import TribeStreamError
    from tribe_stream.model.convert import save_safetensors
    from tribe_stream.model.loading import load_brain_model

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise TribeStreamError(f"{out} must end in .safetensors")
    loaded = load_brain_model(args.checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(loaded.model, out, dtype=torch_dtype(args.dtype), experiment=loaded.experiment)
    n = sum(p.numel() for p in loaded.model.parameters())
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, {n / 1e6:.1f} M parameters, {args.dtype})"
    )
    return 0
