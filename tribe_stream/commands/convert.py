"""`tribe-stream convert`: a checkpoint to one compact, mmap-able safetensors file."""

from __future__ import annotations

from tribe_stream.options import ModelOptions, add_options

NAME = "convert"
HELP = "convert a TRIBE v2 checkpoint (folder, best.ckpt or hub id) to model.safetensors"


def add_arguments(p) -> None:
    p.add_argument(
        "checkpoint", help="model folder (config.yaml + best.ckpt), .ckpt file, or hub id"
    )
    p.add_argument("out", help="output .safetensors file (its folder must exist)")
    add_options(p, ModelOptions, only=("dtype",))  # on the CPU: float32 unless given


def run(args) -> int:
    from tribe_stream.outputs import check_output

    out = check_output(args.out, (".safetensors",))  # before anything is loaded

    from tribe_stream.devices import torch_dtype
    from tribe_stream.model.convert import save_safetensors
    from tribe_stream.model.loading import load_brain_model

    name = args.dtype or "float32"
    dtype = torch_dtype(name)
    loaded = load_brain_model(args.checkpoint)
    written = save_safetensors(loaded.model, out, dtype=dtype, experiment=loaded.experiment)
    n = sum(p.numel() for p in loaded.model.parameters())
    print(
        f"wrote {written} ({written.stat().st_size / 1e6:.1f} MB, {n / 1e6:.1f} M parameters, "
        f"{name})"
    )
    return 0
