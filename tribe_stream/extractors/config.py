"""Extractor settings read out of a checkpoint's `config.yaml` (the `data` section), with the
reference values (REFERENCE.md §3) wherever the file is silent.

The official experiment resolves the settings the same way: `data.layers_to_use` (or
`n_layers_to_use`) overrides each extractor's own `layers`, and `data.layer_aggregation` overrides
each extractor's aggregation.
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
REFERENCE_CACHE_N_LAYERS = {"text": 20, "audio": None, "video": 20}


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
        """The full TRIBE v2 settings (REFERENCE.md §3)."""
        return from_experiment({})

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


def _fractions(value: Any, where: str) -> tuple[float, ...]:
    if isinstance(value, int | float):
        return (float(value),)
    if isinstance(value, list | tuple) and value and all(isinstance(v, int | float) for v in value):
        return tuple(float(v) for v in value)
    raise CheckpointError(
        f"{where} must be a fraction or a list of fractions in [0, 1], got {value!r}"
    )


def _cache_n(section: dict, default: int | None, where: str) -> int | None:
    """`cache_n_layers`: the reference value when the key is absent, None when it is null."""
    if "cache_n_layers" not in section:
        return default
    value = section["cache_n_layers"]
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 2:
        return value
    raise CheckpointError(f"{where} must be an integer >= 2 or null, got {value!r}")


def from_experiment(experiment: dict[str, Any] | None) -> ExtractorConfig:
    """Settings from a parsed `config.yaml` (the whole file, or `{}` for the reference)."""
    exp = experiment or {}
    data = exp.get("data") or {}
    if not isinstance(data, dict):
        raise CheckpointError("config.yaml: `data` must be a mapping")
    override = None
    if data.get("n_layers_to_use") is not None:
        override = tuple(float(x) for x in np.linspace(0, 1, int(data["n_layers_to_use"])))
    elif data.get("layers_to_use") is not None:
        override = _fractions(data["layers_to_use"], "data.layers_to_use")
    elif "layers_to_use" not in data and "n_layers_to_use" not in data:
        override = REFERENCE_FRACTIONS
    aggregation = data.get("layer_aggregation", "group_mean")
    if aggregation not in ("group_mean", "mean", None):
        raise CheckpointError(
            f"config.yaml: data.layer_aggregation {aggregation!r} is not supported"
        )
    features = tuple(data.get("features_to_use") or MODALITIES)
    unknown = [m for m in features if m not in MODALITIES]
    if unknown:
        raise CheckpointError(f"config.yaml: data.features_to_use has unsupported {unknown}")
    settings = {}
    for modality in MODALITIES:
        section = data.get(f"{modality}_feature") or {}
        inner = section.get("image") or {} if modality == "video" else section
        if not isinstance(section, dict) or not isinstance(inner, dict):
            raise CheckpointError(f"config.yaml: data.{modality}_feature must be a mapping")
        where = f"data.{modality}_feature" + (".image" if modality == "video" else "")
        if override is not None:
            fractions = override
        elif "layers" in inner:
            fractions = _fractions(inner["layers"], f"{where}.layers")
        else:
            fractions = (2 / 3,)
        frequency = float(data.get("frequency") or section.get("frequency") or 2.0)
        if frequency != 2.0:
            raise CheckpointError(
                f"config.yaml: feature frequency {frequency} Hz; tribe-stream bins at 2 Hz"
            )
        settings[modality] = ModalitySettings(
            modality=modality,
            model_name=str(inner.get("model_name") or REFERENCE_MODELS[modality]),
            fractions=fractions,
            aggregation=aggregation,
            cache_n_layers=_cache_n(
                inner,
                REFERENCE_CACHE_N_LAYERS[modality],
                f"{where}.cache_n_layers",
            ),
            frequency=frequency,
            clip_seconds=float(section.get("clip_duration") or 4.0) if modality == "video" else 4.0,
            num_frames=int(section.get("num_frames") or 64) if modality == "video" else 64,
        )
    return ExtractorConfig(**settings, features_to_use=features)


def from_yaml(path: str | os.PathLike) -> ExtractorConfig:
    """Settings from a `config.yaml` file or a checkpoint folder holding one."""
    import yaml

    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "config.yaml"
    if not p.is_file():
        raise CheckpointError(f"{p} does not exist; pass the checkpoint folder or its config.yaml")
    try:
        exp = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{p} is not valid YAML: {exc}") from None
    if not isinstance(exp, dict):
        raise CheckpointError(f"{p} does not hold a mapping")
    return from_experiment(exp)
