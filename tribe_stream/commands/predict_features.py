"""`tribe-stream predict-features`: features `.npz` in, predictions `.npy` out (time-major)."""

from __future__ import annotations

from tribe_stream.options import ModelOptions, add_options, from_args

NAME = "predict-features"
HELP = "predict fMRI from a features .npz (text/audio/video arrays (L, D, T)); writes (T_out, n_outputs) .npy"


def add_arguments(p) -> None:
    # features in: no video model runs, no second head
    add_options(p, ModelOptions, skip=("video_fp8", "subcortical"))
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


def run(args) -> int:
    from tribe_stream.outputs import check_output, save_npy

    options = from_args(ModelOptions, args).validate()  # before anything is loaded
    out = check_output(args.out, (".npy",), what="--out")

    from tribe_stream.models import Models
    from tribe_stream.offline import predict_windows, read_features

    features = read_features(args.features)
    engine = Models(options, live=False).engine
    pred = predict_windows(engine, features, tokens=args.tokens, pad_last=args.pad_last)
    written = save_npy(out, pred)
    print(f"wrote {written}: {pred.shape[0]} rows x {pred.shape[1]} outputs")
    return 0
