"""Extractor settings read out of a checkpoint's `config.yaml` (the `data` section), with the
reference values (docs/MODEL.md §3) wherever the file is silent.

The official experiment resolves the settings the same way: `data.layers_to_use` (or
`n_layers_to_use`) overrides each extractor's own `layers`, and `data.layer_aggregation` overrides
each extractor's aggregation. `cache_n_layers` absent means none (neuralset's default: no
thinning), and it never applies to audio: neuralset thins hidden states only in the token
aggregation that text and video use, so the audio groups are cut from all of w2v-BERT's states
whatever the config says (the released config sets 20 for all three). An empty config is the
released full model's (`REFERENCE_DATA`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tribe_stream.errors import CheckpointError, InputError
from tribe_stream.types import MODALITIES

REFERENCE_MODELS = {
    "text": "meta-llama/Llama-3.2-3B",
    "audio": "facebook/w2v-bert-2.0",
    "video": "facebook/vjepa2-vitg-fpc64-256",
}
MINI_MODELS = {
    "text": "Qwen/Qwen3-0.6B",
    "audio": "facebook/w2v-bert-2.0",
    "video": "facebook/vjepa2-vitl-fpc64-256",
}
REFERENCE_FRACTIONS = (0.5, 0.75, 1.0)
THINNED = ("text", "video")
"""The modalities whose hidden states `cache_n_layers` thins (never audio, see above)."""
REFERENCE_DATA = {
    "text_feature": {"cache_n_layers": 20},
    "audio_feature": {"cache_n_layers": 20},
    "video_feature": {"image": {"cache_n_layers": 20}},
}
"""The `data` section of the released full model that differs from the defaults."""


@dataclass(frozen=True)
class ModalitySettings:
    """How one modality's foundation model is run and its hidden states grouped."""

    modality: str
    model_name: str
    fractions: tuple[float, ...] = REFERENCE_FRACTIONS
    aggregation: str | None = "group_mean"
    cache_n_layers: int | None = None
    frequency: float = 2.0
    # video only
    clip_seconds: float = 4.0
    num_frames: int = 64
    # text only
    max_context_words: int = 1024
    # audio only (offline chunking, seconds)
    chunk_max_seconds: float = 60.0
    chunk_min_seconds: float = 30.0

    def groups(self, n_hidden_states: int) -> list[list[int]]:
        """Hidden-state indices of each layer group for a model with `n_hidden_states` states."""
        from tribe_stream.extractors.layers import group_layers

        return group_layers(n_hidden_states, self.fractions, self.cache_n_layers, self.aggregation)


@dataclass(frozen=True)
class ExtractorConfig:
    """Settings for the three extractors and which modalities the brain model uses."""

    text: ModalitySettings
    audio: ModalitySettings
    video: ModalitySettings
    features_to_use: tuple[str, ...] = MODALITIES

    def __getitem__(self, modality: str) -> ModalitySettings:
        if modality not in MODALITIES:
            raise InputError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
        return getattr(self, modality)

    def with_models(self, **models: str | os.PathLike | None) -> ExtractorConfig:
        """A copy with some model names replaced (local folders or hub ids), e.g. `text=path`."""
        changes = {
            m: replace(self[m], model_name=str(p)) for m, p in models.items() if p is not None
        }
        return replace(self, **changes)

    @classmethod
    def reference(cls) -> ExtractorConfig:
        """The full TRIBE v2 settings (docs/MODEL.md §3)."""
        return from_experiment({"data": REFERENCE_DATA})

    @classmethod
    def mini(cls) -> ExtractorConfig:
        """The `facebook/tribev2-mini` settings: one layer at 2/3 depth (L = 1), mean."""
        data = {
            "layers_to_use": None,
            "layer_aggregation": "mean",
            "text_feature": {"model_name": MINI_MODELS["text"], "layers": 2 / 3},
            "audio_feature": {"layers": 2 / 3},
            "video_feature": {"image": {"model_name": MINI_MODELS["video"], "layers": 2 / 3}},
        }
        return from_experiment({"data": data})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fractions(value: Any, where: str) -> tuple[float, ...]:
    values = value if isinstance(value, list | tuple) else [value]
    if values and all(_is_number(v) and 0.0 <= v <= 1.0 for v in values):
        return tuple(float(v) for v in values)
    raise CheckpointError(
        f"config.yaml: {where} must be a fraction or a list of fractions in [0, 1], got {value!r}"
    )


def _cache_n(section: dict, where: str) -> int | None:
    """`cache_n_layers`: None (no thinning) when the key is absent or null."""
    value = section.get("cache_n_layers")
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 2):
        return value
    raise CheckpointError(
        f"config.yaml: {where}.cache_n_layers must be an integer >= 2 or null, got {value!r}"
    )


def _positive(value: Any, default: float, where: str, integer: bool = False) -> Any:
    """A positive number from the config (`default` when absent or null)."""
    if value is None:
        return default
    ok = isinstance(value, int) if integer else _is_number(value)
    if ok and not isinstance(value, bool) and value > 0:
        return int(value) if integer else float(value)
    kind = "a positive integer" if integer else "a positive number"
    raise CheckpointError(f"config.yaml: {where} must be {kind}, got {value!r}")


def _section(data: dict, key: str, where: str) -> dict:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CheckpointError(
            f"config.yaml: {where}.{key} must be a mapping, got {type(value).__name__}"
        )
    return value


def from_experiment(experiment: dict[str, Any] | None) -> ExtractorConfig:
    """Settings from a parsed `config.yaml` (the whole file, or `{}` for the reference)."""
    if not experiment:
        return ExtractorConfig.reference()
    if not isinstance(experiment, dict):
        raise CheckpointError("config.yaml must hold a mapping")
    data = experiment.get("data") or {}
    if not isinstance(data, dict):
        raise CheckpointError("config.yaml: `data` must be a mapping")
    override = None
    if data.get("n_layers_to_use") is not None:
        n = data["n_layers_to_use"]
        if not (isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 1000):
            raise CheckpointError(
                f"config.yaml: data.n_layers_to_use must be an integer from 1 to 1000, got {n!r}"
            )
        override = tuple(float(x) for x in np.linspace(0, 1, n))
    elif data.get("layers_to_use") is not None:
        override = _fractions(data["layers_to_use"], "data.layers_to_use")
    elif "layers_to_use" not in data and "n_layers_to_use" not in data:
        override = REFERENCE_FRACTIONS
    aggregation = data.get("layer_aggregation", "group_mean")
    if aggregation not in ("group_mean", "mean", None):
        raise CheckpointError(
            f"config.yaml: data.layer_aggregation {aggregation!r} is not supported"
        )
    features = data.get("features_to_use") or list(MODALITIES)
    if isinstance(features, str):
        features = [features]
    if not isinstance(features, list | tuple):
        raise CheckpointError(
            f"config.yaml: data.features_to_use must be a list of modalities, got {features!r}"
        )
    unknown = [m for m in features if m not in MODALITIES]
    if unknown:
        raise CheckpointError(f"config.yaml: data.features_to_use has unsupported {unknown}")
    settings = {}
    for modality in MODALITIES:
        section = _section(data, f"{modality}_feature", "data")
        inner = _section(section, "image", "data.video_feature") if modality == "video" else section
        where = f"data.{modality}_feature" + (".image" if modality == "video" else "")
        if override is not None:
            fractions = override
        elif "layers" in inner:
            fractions = _fractions(inner["layers"], f"{where}.layers")
        else:
            fractions = (2 / 3,)
        frequency = _positive(
            data.get("frequency") or section.get("frequency"), 2.0, "feature frequency"
        )
        if frequency != 2.0:
            raise CheckpointError(
                f"config.yaml: feature frequency {frequency} Hz; tribe-stream bins at 2 Hz"
            )
        model_name = inner.get("model_name") or REFERENCE_MODELS[modality]
        if not isinstance(model_name, str):
            raise CheckpointError(
                f"config.yaml: {where}.model_name must be a folder or hub id, got {model_name!r}"
            )
        video = section if modality == "video" else {}  # clip settings: video only
        clip = _positive(video.get("clip_duration"), 4.0, "data.video_feature.clip_duration")
        n_frames = _positive(video.get("num_frames"), 64, "data.video_feature.num_frames", True)
        settings[modality] = ModalitySettings(
            modality=modality,
            model_name=model_name,
            fractions=fractions,
            aggregation=aggregation,
            cache_n_layers=_cache_n(inner, where) if modality in THINNED else None,
            frequency=frequency,
            clip_seconds=clip,
            num_frames=n_frames,
        )
    return ExtractorConfig(**settings, features_to_use=tuple(features))


def from_yaml(path: str | os.PathLike) -> ExtractorConfig:
    """Settings from a `config.yaml` file or a checkpoint folder holding one, read by the one
    reader of config.yaml (`tribe_stream.model.config.read_yaml`: Python tags as plain data)."""
    from tribe_stream.model.config import read_yaml

    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "config.yaml"
    if not p.is_file():
        raise CheckpointError(f"{p} does not exist; pass the checkpoint folder or its config.yaml")
    return from_experiment(read_yaml(p))
