"""Write a TRIBE v2 model folder with RANDOM weights at full size, for end-to-end GPU runs offline.

The folder holds the brain model (`model.safetensors` + `config.yaml`) and the video and audio
extractors (`video/`, `audio/`: V-JEPA2 ViT-g fpc64-256 and w2v-BERT 2.0 shapes, saved with
`save_pretrained`), with `config.yaml` pointing at them, so `tribe-stream run --checkpoint DIR`
loads everything through the same code path as the released weights. Nothing is downloaded; the
outputs mean nothing (random weights). Text is left to the real Llama (not built here).

    python tools/make_random_model.py OUT [--tiny]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import torch


def _bench_configs():
    """The full-size (and tiny) extractor configs written down in tools/bench_extractors.py."""
    path = Path(__file__).with_name("bench_extractors.py")
    spec = importlib.util.spec_from_file_location("bench_extractors", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--tiny", action="store_true", help="small extractors (a CPU smoke test)")
    args = ap.parse_args()

    from transformers import (
        SeamlessM4TFeatureExtractor,
        VJEPA2Config,
        VJEPA2Model,
        Wav2Vec2BertConfig,
        Wav2Vec2BertModel,
    )

    from tribe_stream.model.config import BrainConfig
    from tribe_stream.model.convert import save_safetensors
    from tribe_stream.model.fmri_encoder import FmriEncoder

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    b = _bench_configs()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        video = VJEPA2Model(VJEPA2Config(**(b.TINY["video"] if args.tiny else b.VJEPA2_VITG)))
    video.to(torch.float16).save_pretrained(out / "video")
    del video
    with torch.device(device):
        audio = Wav2Vec2BertModel(
            Wav2Vec2BertConfig(**(b.TINY["audio"] if args.tiny else b.W2V_BERT_2))
        )
    audio.to(torch.float16).save_pretrained(out / "audio")
    SeamlessM4TFeatureExtractor(padding_value=1.0).save_pretrained(out / "audio")
    del audio

    from tribe_stream.extractors.config import from_experiment
    from tribe_stream.extractors.suite import load_extractors

    experiment = {
        "untrained": True,
        "note": "tools/make_random_model.py: random weights at full size",
        "data": {
            "features_to_use": ["audio", "video"],
            "audio_feature": {"model_name": str(out / "audio")},
            "video_feature": {"image": {"model_name": str(out / "video"), "cache_n_layers": 20}},
        },
    }
    shapes = {
        m: ex.shape
        for m, ex in load_extractors(
            from_experiment(experiment), device="cpu", modalities=("audio", "video")
        ).items()
    }
    dims = {"text": (2, 3072), "audio": tuple(shapes["audio"]), "video": tuple(shapes["video"])}
    config = BrainConfig(feature_dims=dims)
    model = FmriEncoder(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    save_safetensors(model, out / "model.safetensors", dtype=torch.float16, experiment=experiment)
    (out / "config.yaml").write_text(json.dumps(experiment, indent=2) + "\n")
    print(
        f"wrote {out}: brain {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, "
        f"features {dims}"
    )


if __name__ == "__main__":
    main()
