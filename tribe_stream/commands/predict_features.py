"""`tribe-stream predict-features`: features `.npz` in, predictions `.npy` out (time-major)."""

from __future__ import annotations

NAME = "predict-features"
HELP = "predict fMRI from a features .npz (text/audio/video arrays (L, D, T)); writes (T_out, n_outputs) .npy"


def add_arguments(p) -> None:
    p.add_argument(
        "--checkpoint", required=True, help="model folder, .ckpt/.safetensors, hub id, or `demo`"
    )
    p.add_argument(
        "--features", required=True, help="input .npz with text/audio/video arrays (L, D, T)"
    )
    p.add_argument(
        "--out",
        required=True,
        help="output .npy (its folder must exist), float32 (T_out, n_outputs)",
    )
    p.add_argument(
        "--tokens", action="store_true", help="one row per 2 Hz bin instead of one per second"
    )
    p.add_argument(
        "--pad-last",
        action="store_true",
        help="zero-pad the last window to 200 bins, as the official predict",
    )
    p.add_argument("--engine", default="torch", help="torch (default), compiled, onnx, tensorrt")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])


def run(args) -> int:
    from tribe_stream.outputs import check_output, save_npy

    out = check_output(args.out, (".npy",), what="--out")  # before anything is loaded

    from tribe_stream.offline import predict_windows, read_features

    features = read_features(args.features)

    from tribe_stream.devices import pick_device
    from tribe_stream.engines import make_engine
    from tribe_stream.model.loading import load_brain_model

    device = pick_device(args.device)
    loaded = load_brain_model(args.checkpoint)
    engine = make_engine(args.engine, loaded, device=device, dtype=args.dtype)
    pred = predict_windows(engine, features, tokens=args.tokens, pad_last=args.pad_last)
    written = save_npy(out, pred)
    print(f"wrote {written}: {pred.shape[0]} rows x {pred.shape[1]} outputs")
    return 0
