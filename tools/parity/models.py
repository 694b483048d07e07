"""Random-weight models at the OFFICIAL DEPTHS (narrow widths) under the official hub ids, and a
brain-model checkpoint folder (`config.yaml` + `best.ckpt`) in the released layout.

Runs in our venv: the configs are the full-size ones written down in tools/bench_extractors.py
with widths cut; the tokenizer is the demo's real byte-level BPE tokenizer; the brain model is
our FmriEncoder saved under the official key names.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tools.parity.hfcache import install_snapshot, snapshot_of

TEXT_ID = "meta-llama/Llama-3.2-3B"
AUDIO_ID = "facebook/w2v-bert-2.0"
VIDEO_ID = "facebook/vjepa2-vitg-fpc64-256"
WIDTH = 64
BUILD_VERSION = 1
LAYERS = [0.5, 0.75, 1.0]


def _bench() -> Any:
    path = Path(__file__).resolve().parents[1] / "bench_extractors.py"
    spec = importlib.util.spec_from_file_location("bench_extractors", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def text_config(vocab: int, bos: int, eos: int) -> dict:
    """Llama-3.2-3B's 28 layers (29 hidden states), 64 wide."""
    b = _bench()
    return dict(
        b.LLAMA_32_3B,
        vocab_size=vocab,
        hidden_size=WIDTH,
        intermediate_size=2 * WIDTH,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=eos,
    )


def audio_config() -> dict:
    """w2v-BERT 2.0's 24 layers (25 hidden states), 64 wide; rotary positions instead of
    relative_key (whose (T, T, d) tables cost gigabytes a layer on 60 s chunks): both sides run
    the same model, so this changes nothing compared."""
    b = _bench()
    return dict(
        b.W2V_BERT_2,
        hidden_size=WIDTH,
        num_attention_heads=2,
        intermediate_size=2 * WIDTH,
        position_embeddings_type="rotary",
        layerdrop=0.0,
        apply_spec_augment=False,
    )


def video_config(crop: int) -> dict:
    """V-JEPA2 ViT-g's 40 layers (41 hidden states), 64 wide, at a `crop` px crop; a one-layer
    predictor (the official forward runs it too; its output is not used)."""
    b = _bench()
    return dict(
        b.VJEPA2_VITG,
        crop_size=crop,
        hidden_size=WIDTH,
        num_attention_heads=2,
        mlp_ratio=2.0,
        pred_hidden_size=32,
        pred_num_attention_heads=2,
        pred_num_hidden_layers=1,
        pred_num_mask_tokens=2,
        num_pooler_layers=1,
    )


def build_extractors(hf_home: Path, crop: int = 64, seed: int = 0) -> dict[str, Path]:
    """Save the three random models into the cache under their hub ids (skipped when present
    with the same build settings); returns `{modality: snapshot folder}`."""
    import torch
    from transformers import (
        LlamaConfig,
        LlamaModel,
        SeamlessM4TFeatureExtractor,
        VJEPA2Config,
        VJEPA2Model,
        Wav2Vec2BertConfig,
        Wav2Vec2BertModel,
    )

    from tribe_stream.extractors.demo import _build_tokenizer
    from tribe_stream.extractors.video import VideoPreprocess

    stamp = json.dumps({"version": BUILD_VERSION, "crop": crop, "seed": seed, "width": WIDTH})
    out: dict[str, Path] = {}
    for modality, repo in (("text", TEXT_ID), ("audio", AUDIO_ID), ("video", VIDEO_ID)):
        snap = snapshot_of(hf_home, repo)
        if snap is not None and (snap / "parity-build.json").is_file():
            if (snap / "parity-build.json").read_text() == stamp:
                out[modality] = snap
                continue
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            torch.manual_seed(seed)
            if modality == "text":
                tok = _build_tokenizer(folder)
                cfg = LlamaConfig(**text_config(len(tok), tok.bos_token_id, tok.eos_token_id))
                LlamaModel(cfg).eval().save_pretrained(str(folder))
            elif modality == "audio":
                Wav2Vec2BertModel(Wav2Vec2BertConfig(**audio_config())).eval().save_pretrained(
                    str(folder)
                )
                SeamlessM4TFeatureExtractor(padding_value=1.0).save_pretrained(str(folder))
            else:
                VJEPA2Model(VJEPA2Config(**video_config(crop))).eval().save_pretrained(str(folder))
                prep = VideoPreprocess(resize=int(crop * 256 / 224), crop=crop)
                (folder / "video_preprocessor_config.json").write_text(
                    json.dumps(prep.to_json(), indent=2)
                )
            (folder / "parity-build.json").write_text(stamp)
            out[modality] = install_snapshot(hf_home, repo, folder)
    return out


def hidden_states(modality: str) -> int:
    """How many hidden states each model gives (layers + embeddings)."""
    b = _bench()
    layers = {
        "text": b.LLAMA_32_3B["num_hidden_layers"],
        "audio": b.W2V_BERT_2["num_hidden_layers"],
        "video": b.VJEPA2_VITG["num_hidden_layers"],
    }
    return layers[modality] + 1


def experiment_config(folder: Path, cache: Path) -> dict:
    """The experiment config in the released `config.yaml`'s structure (the keys the official
    `TribeModel.from_pretrained` reads), with the released layer settings and hub ids, a small
    brain model (hidden 288, the official depth 8) and no cluster."""
    ex_infra = {"folder": str(cache), "cluster": None, "keep_in_ram": True, "mode": "cached"}
    feature_common = {"frequency": 2, "aggregation": "sum", "allow_missing": True}
    image = {"name": "HuggingFaceImage", "infra": {"keep_in_ram": False}}
    return {
        "infra": {
            "cluster": None,
            "folder": str(folder),
            "gpus_per_node": 1,
            "cpus_per_task": 2,
            "mode": "retry",
            "workdir": {"copied": ["tribev2"], "includes": ["*.py"]},
        },
        "data": {
            "frequency": 2,
            "duration_trs": 100,
            "overlap_trs_train": 0,
            "overlap_trs_val": 0,
            "shuffle_val": True,
            "num_workers": 20,  # as released; the official run sets 0 (config_update)
            "layers_to_use": LAYERS,
            "layer_aggregation": "group_mean",
            "study": {
                "names": ["Algonauts2025Bold", "Wen2017", "Lahner2024Bold", "Lebel2023Bold"],
                "path": ".",
                "query": None,
                "infra_timelines": {"folder": str(cache)},
                "transforms": None,
            },
            "neuro": {
                "name": "FmriExtractor",
                "allow_missing": True,
                "offset": 5,
                "frequency": 1,
                "projection": {
                    "name": "SurfaceProjector",
                    "mesh": "fsaverage5",
                    "kind": "ball",
                    "radius": 3,
                },
                "infra": dict(ex_infra),
            },
            "features_to_use": ["text", "audio", "video"],
            "text_feature": {
                "name": "HuggingFaceText",
                "event_types": "Word",
                "model_name": TEXT_ID,
                "contextualized": True,
                "layers": LAYERS,
                "cache_n_layers": 20,
                "batch_size": 4,
                **feature_common,
                "infra": dict(ex_infra),
            },
            "audio_feature": {
                "name": "Wav2VecBert",
                "event_types": "Audio",
                "model_name": AUDIO_ID,
                "layers": LAYERS,
                "cache_n_layers": 20,
                **feature_common,
                "infra": dict(ex_infra),
            },
            "video_feature": {
                "name": "HuggingFaceVideo",
                "event_types": "Video",
                "clip_duration": 4,
                "image": {**image, "model_name": VIDEO_ID, "layers": LAYERS, "cache_n_layers": 20},
                **feature_common,
                "infra": dict(ex_infra),
            },
            "image_feature": {
                "name": "HuggingFaceVideo",
                "event_types": "Video",
                "image": {**image, "model_name": "facebook/dinov2-large", "layers": 2 / 3},
                **feature_common,
                "infra": dict(ex_infra),
            },
            "batch_size": 8,
        },
        "brain_model_config": {
            "name": "FmriEncoder",
            "low_rank_head": 64,
            "hidden": 288,
            "extractor_aggregation": "cat",
            "layer_aggregation": "cat",
            "combiner": None,
            "encoder": {"depth": 8},
            "subject_layers": {"subject_dropout": 0.1},
            "subject_embedding": False,
            "modality_dropout": 0.3,
        },
        "metrics": [{"log_name": "pearson", "name": "OnlinePearsonCorr", "dim": 0}],
        "loss": {"name": "MSELoss", "kwargs": {"reduction": "none"}},
        "optim": {
            "name": "LightningOptimizer",
            "optimizer": {"name": "Adam", "lr": 1e-4, "kwargs": {"weight_decay": 0.0}},
            "scheduler": {"name": "OneCycleLR", "kwargs": {"max_lr": 1e-4, "pct_start": 0.1}},
        },
        "wandb_config": None,
        "n_epochs": 15,
        "seed": 33,
    }


def build_checkpoint(folder: Path, cache: Path, seed: int = 0) -> Path:
    """`folder/config.yaml` + `folder/best.ckpt` (official layout: `state_dict` under `model.`,
    `model_build_args`), random weights with every parameter perturbed."""
    import torch

    from tribe_stream.model.config import BrainConfig
    from tribe_stream.model.fmri_encoder import FmriEncoder
    from tribe_stream.model.loading import PREFIX, ours_to_official

    folder.mkdir(parents=True, exist_ok=True)
    exp = experiment_config(folder.resolve(), cache.resolve())
    (folder / "config.yaml").write_text(yaml.safe_dump(exp, sort_keys=False))
    dims = {m: (len(LAYERS) - 1, WIDTH) for m in ("text", "audio", "video")}
    bm = exp["brain_model_config"]
    config = BrainConfig(
        feature_dims=dims,
        hidden=bm["hidden"],
        depth=bm["encoder"]["depth"],
        low_rank_head=bm["low_rank_head"],
    )
    torch.manual_seed(seed)
    model = FmriEncoder(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith((".g", "residual_scale")):
                p.uniform_(0.5, 1.5)
            elif name != "encoder.inv_freq":
                p.normal_(0, 0.05)
    state = {
        PREFIX + ours_to_official(k): v.detach().clone().contiguous()
        for k, v in model.state_dict().items()
    }
    build_args = {
        "feature_dims": {m: list(d) for m, d in dims.items()},
        "n_outputs": config.n_outputs,
        "n_output_timesteps": config.n_output_timesteps,
    }
    torch.save({"state_dict": state, "model_build_args": build_args}, folder / "best.ckpt")
    return folder
