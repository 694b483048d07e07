"""Our side of the parity harness, in a fresh process of our venv: `python -m tools.parity.ours
JOB.json`. One `tribe_stream.prediction.Predictor` (the `predict` command's code path, float32 on
the CPU, the job's word TSV as transcript): its features (written to a private feature cache, so
`predict` reads them back instead of extracting twice) and its predictions.

With `encoder_in` it writes the input of our brain model's
transformer for its first window and our transformer's output (`encoder_out`), for the official
trunk to be run on the same input.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np


def use_source(src: str) -> None:
    """Import our package from `src` (a clean export of one commit), not from the editable
    install's working tree."""
    sys.meta_path[:] = [
        f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")
    ]
    sys.path.insert(0, src)


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    if job.get("source"):
        use_source(job["source"])
    import torch

    from tribe_stream import MAX_TOKENS
    from tribe_stream.prediction import PredictOptions, Predictor

    torch.manual_seed(0)
    t0 = time.perf_counter()
    predictor = Predictor(
        PredictOptions(
            checkpoint=job["checkpoint"],
            transcript=job["tsv"],
            cache=job["cache"],
            device="cpu",
            dtype="float32",
            engine="torch",
            asr=False,
        )
    )
    feats, info = predictor.features(job["clip"])
    preds = predictor.predict(job["clip"])
    seconds = time.perf_counter() - t0
    arrays = {f"feat_{m}": x for m, x in feats.items()}
    arrays["preds"] = preds.values
    if job.get("encoder_in"):
        model = predictor.loaded.model.float().eval()
        window = {
            m: torch.from_numpy(
                np.pad(x[..., :MAX_TOKENS], [(0, 0), (0, 0), (0, max(0, MAX_TOKENS - x.shape[-1]))])
            )[None]
            for m, x in feats.items()
        }
        with torch.inference_mode():
            x = model.embed(window) + model.time_pos_embed[:, :MAX_TOKENS]
            arrays["encoder_out"] = model.encoder(x).numpy()
        np.savez(job["encoder_in"], x=x.numpy())
    np.savez(job["out"], **arrays)
    words = info.get("words", [])
    Path(job["out"]).with_suffix(".json").write_text(
        json.dumps({"seconds": seconds, "words": words, "n_bins": info.get("n_bins")})
    )


def predict_on(features: dict[str, np.ndarray], checkpoint: str) -> np.ndarray:
    """Our brain model (float32, CPU, the official windows) on given `(L, D, T)` features."""
    from tribe_stream.engines import make_engine
    from tribe_stream.model.loading import load_brain_model
    from tribe_stream.offline import predict_windows

    engine = make_engine("torch", load_brain_model(checkpoint), device="cpu", dtype="float32")
    return predict_windows(engine, features, pad_last=True)


if __name__ == "__main__":
    main()
