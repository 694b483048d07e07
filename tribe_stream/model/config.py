"""The brain model's architecture settings, read from the experiment's `config.yaml`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tribe_stream.errors import CheckpointError
from tribe_stream.types import MODALITIES


class _TolerantLoader(yaml.SafeLoader):
    """A safe loader that reads unknown tags (e.g. `!!python/object`) as plain data, never executing them."""


def _construct_unknown(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_TolerantLoader.add_multi_constructor("", _construct_unknown)


def read_yaml(path: Path | str) -> dict:
    """Read a YAML file safely; Python-specific tags become plain dicts, lists or strings."""
    path = Path(path)
    try:
        data = yaml.load(path.read_text(), Loader=_TolerantLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{path} is not valid YAML ({exc}); re-download config.yaml") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a mapping; is this the model's config.yaml?")
    return data


# Settings of the released models that this implementation reproduces; anything else is refused.
_SUPPORTED_ENCODER = {
    "causal": False,
    "cross_attend": False,
    "use_scalenorm": True,
    "use_rmsnorm": False,
    "rel_pos_bias": False,
    "alibi_pos_bias": False,
    "rotary_xpos": False,
    "residual_attn": False,
}


@dataclass
class BrainConfig:
    """FmriEncoder hyper-parameters and shapes (defaults: the released TRIBE v2 model)."""

    feature_dims: dict[str, tuple[int, int] | None] = field(
        default_factory=lambda: {"text": (2, 3072), "audio": (2, 1024), "video": (2, 1408)}
    )
    n_outputs: int = 20484
    n_output_timesteps: int = 100
    hidden: int = 1152
    depth: int = 8
    heads: int = 8
    ff_mult: int = 4
    low_rank_head: int | None = 2048
    max_seq_len: int = 1024
    rotary_pos_emb: bool = True
    scale_residual: bool = True
    n_subject_rows: int = 1

    @property
    def dim_head(self) -> int:
        return self.hidden // self.heads

    @property
    def rotary_dim(self) -> int:
        """x_transformers 1.27.20: `max(dim_head // 2, 32)`."""
        return max(self.dim_head // 2, 32)

    @property
    def modality_width(self) -> int:
        return self.hidden // len(self.feature_dims)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> BrainConfig:
        d = dict(d)
        d["feature_dims"] = {
            k: (tuple(v) if v is not None else None) for k, v in d["feature_dims"].items()
        }
        return cls(**d)

    def validate(self) -> None:
        if list(self.feature_dims) != [m for m in MODALITIES if m in self.feature_dims]:
            raise CheckpointError(
                f"feature_dims modalities {list(self.feature_dims)} are not in the order text, audio, video"
            )
        if self.hidden % self.heads:
            raise CheckpointError(f"hidden {self.hidden} is not divisible by heads {self.heads}")
        if self.hidden % len(self.feature_dims):
            raise CheckpointError(
                f"hidden {self.hidden} is not divisible by the {len(self.feature_dims)} modalities"
            )


def config_from_yaml(cfg: dict, build_args: dict) -> BrainConfig:
    """Combine `config.yaml`'s `brain_model_config` with the checkpoint's `model_build_args`."""
    bm = cfg.get("brain_model_config")
    if not isinstance(bm, dict):
        raise CheckpointError(
            "config.yaml has no `brain_model_config` section; is this a TRIBE v2 experiment config?"
        )
    if bm.get("name", "FmriEncoder") != "FmriEncoder":
        raise CheckpointError(
            f"brain_model_config.name is {bm.get('name')!r}; only FmriEncoder is supported"
        )
    unsupported = {
        "extractor_aggregation": ("cat", bm.get("extractor_aggregation", "cat")),
        "layer_aggregation": ("cat", bm.get("layer_aggregation", "cat")),
        "combiner": (None, bm.get("combiner")),
        "subject_embedding": (False, bm.get("subject_embedding", False)),
        "linear_baseline": (False, bm.get("linear_baseline", False)),
        "temporal_smoothing": (None, bm.get("temporal_smoothing")),
        "time_pos_embedding": (True, bm.get("time_pos_embedding", True)),
    }
    enc = bm.get("encoder") or {}
    if enc is None or not isinstance(enc, dict):
        raise CheckpointError("brain_model_config.encoder must be a mapping")
    for key, want in _SUPPORTED_ENCODER.items():
        unsupported[f"encoder.{key}"] = (want, enc.get(key, want))
    bad = [
        f"{k}={got!r} (supported: {want!r})"
        for k, (want, got) in unsupported.items()
        if got != want
    ]
    if bad:
        raise CheckpointError("unsupported brain model settings: " + "; ".join(bad))
    try:
        dims = {
            m: (tuple(int(x) for x in v) if v is not None else None)
            for m, v in build_args["feature_dims"].items()
        }
        config = BrainConfig(
            feature_dims=dims,
            n_outputs=int(build_args["n_outputs"]),
            n_output_timesteps=int(build_args["n_output_timesteps"]),
            hidden=int(bm.get("hidden", 256)),
            depth=int(enc.get("depth", 12)),
            heads=int(enc.get("heads", 8)),
            ff_mult=int(enc.get("ff_mult", 4)),
            low_rank_head=bm.get("low_rank_head"),
            max_seq_len=int(bm.get("max_seq_len", 1024)),
            rotary_pos_emb=bool(enc.get("rotary_pos_emb", True)),
            scale_residual=bool(enc.get("scale_residual", True)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"model_build_args is incomplete or malformed ({exc!r}); it needs feature_dims, "
            "n_outputs and n_output_timesteps"
        ) from exc
    config.validate()
    return config
