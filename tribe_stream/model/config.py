"""The brain model's architecture settings, read from the experiment's `config.yaml`.

`read_yaml` is the one reader of a checkpoint's `config.yaml` (the brain model's settings here,
the extractors' in `tribe_stream.extractors.config`): a safe loader that reads the Python tags of
the released file as plain data, never executing them, and refuses what no real config holds
(binary files, huge files, alias bombs, cycles) in one line and in bounded time and memory.
`BrainConfig.validate` is the one check of the architecture's values.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from tribe_stream import MAX_TOKENS
from tribe_stream.errors import CheckpointError
from tribe_stream.types import MODALITIES

MAX_YAML_BYTES = 1 << 20
"""A released config.yaml is some tens of KB; anything over 1 MiB is not one."""
MAX_YAML_EXPANDED = 2_000_000
"""The size of a YAML document with every alias expanded (one per node plus one per character of
each scalar); a real config stays far below, a 1 KB "billion laughs" file goes far above."""


class _TolerantLoader(yaml.SafeLoader):
    """A safe loader that reads unknown tags (e.g. `!!python/object`) as plain data, never executing them."""


def _construct_unknown(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_TolerantLoader.add_multi_constructor("", _construct_unknown)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_expansion(root: yaml.Node, path: Path) -> None:
    """Refuse a composed document whose alias-expanded size passes MAX_YAML_EXPANDED, or that
    refers to itself, in time linear in the (unexpanded) node graph: aliases share nodes, so each
    node's expanded size is computed once (iteratively: no recursion limit)."""
    size: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in _children(node))
        elif key in size:
            continue
        elif key in open_nodes:
            raise CheckpointError(
                f"{path} refers to itself (a recursive alias); a config.yaml never does: re-download it"
            )
        elif isinstance(node, yaml.ScalarNode):
            size[key] = 1 + len(node.value)
        else:
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in _children(node) if id(c) not in size)
            continue
        if size[key] > MAX_YAML_EXPANDED:
            raise CheckpointError(
                f"{path} expands to more than {MAX_YAML_EXPANDED:,} YAML nodes and characters through "
                "its aliases (an alias bomb?); a real config.yaml is far smaller: re-download it"
            )


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"{exc.problem}{where}"
    return " ".join(str(exc).split())


def read_yaml(path: Path | str) -> dict:
    """Read a YAML file safely; Python-specific tags become plain dicts, lists or strings."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise CheckpointError(
                f"{path} is {path.stat().st_size:,} bytes, too large for a config.yaml (at most "
                f"{MAX_YAML_BYTES:,}); pass the config.yaml that came with the checkpoint"
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(
            f"cannot read {path}: {exc.strerror or exc}; pass a readable config.yaml"
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(
            f"{path} is not a text file (byte {exc.start} is not UTF-8); is this the model's "
            "config.yaml? re-download it"
        ) from None
    loader = _TolerantLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node, path)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise CheckpointError(
            f"{path} is not valid YAML ({_yaml_problem(exc)}); re-download config.yaml"
        ) from None
    except RecursionError:
        raise CheckpointError(
            f"{path} is nested too deeply for a config.yaml; re-download config.yaml"
        ) from None
    finally:
        loader.dispose()
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
    def from_dict(cls, d: Any, where: str = "the model config") -> BrainConfig:
        """A validated config from `to_dict`'s output (e.g. a safetensors file's metadata)."""
        if not isinstance(d, Mapping):
            raise CheckpointError(
                f"{where} must be a mapping of BrainConfig settings, got {type(d).__name__}; "
                "convert the checkpoint again"
            )
        known = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in d if k not in known)
        missing = [k for k in _REQUIRED if k not in d]
        if unknown or missing:
            what = [f"unknown settings {unknown}"] if unknown else []
            what += [f"missing {missing}"] if missing else []
            raise CheckpointError(
                f"{where} has {' and '.join(what)} (known: {', '.join(known)}); convert the "
                "checkpoint again with this version of tribe-stream"
            )
        values = {k: _norm(v) for k, v in d.items()}
        values["feature_dims"] = _norm_dims(d["feature_dims"])
        return cls(**values).validate(where)

    def validate(self, where: str = "the model config") -> BrainConfig:
        """Refuse values the model cannot be built from (all problems in one line); `self`."""
        problems = []
        dims = self.feature_dims
        if not isinstance(dims, Mapping) or not dims:
            problems.append(
                f"feature_dims must map text/audio/video to (L, D) or null, got {dims!r}"
            )
        else:
            if list(dims) != [m for m in MODALITIES if m in dims]:
                problems.append(
                    f"feature_dims modalities {list(dims)} are not among text, audio, video "
                    "in that order"
                )
            for m, v in dims.items():
                if v is not None and not (
                    isinstance(v, tuple) and len(v) == 2 and all(_pos_int(x) for x in v)
                ):
                    problems.append(
                        f"feature_dims[{m!r}] must be (L, D) positive integers or null, got {v!r}"
                    )
            if all(v is None for v in dims.values()):
                problems.append("feature_dims gives no modality any (L, D)")
        for name in _INT_SETTINGS.split():
            value = getattr(self, name)
            if not _pos_int(value, _LIMITS.get(name, _MAX_INT)):
                problems.append(
                    f"{name} must be an integer from 1 to {_LIMITS.get(name, _MAX_INT):,}, "
                    f"got {value!r}"
                )
        if self.low_rank_head is not None and not _pos_int(self.low_rank_head):
            problems.append(
                f"low_rank_head must be a positive integer or null, got {self.low_rank_head!r}"
            )
        for name in ("rotary_pos_emb", "scale_residual"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not problems:
            if self.hidden % self.heads:
                problems.append(f"hidden {self.hidden} is not divisible by heads {self.heads}")
            elif self.rotary_pos_emb and (self.rotary_dim > self.dim_head or self.rotary_dim % 2):
                problems.append(
                    f"rotary dim {self.rotary_dim} does not fit heads of {self.dim_head} "
                    f"(hidden {self.hidden} / heads {self.heads})"
                )
            if self.hidden % len(dims):
                problems.append(
                    f"hidden {self.hidden} is not divisible by the {len(dims)} modalities"
                )
            if self.max_seq_len < MAX_TOKENS:
                problems.append(
                    f"max_seq_len {self.max_seq_len} is shorter than a {MAX_TOKENS}-bin window"
                )
        if problems:
            raise CheckpointError(
                f"{where}: "
                + "; ".join(problems)
                + "; use the config that came with the checkpoint"
            )
        return self


_REQUIRED = ("feature_dims", "n_outputs", "hidden", "depth", "heads")
_INT_SETTINGS = "n_outputs n_output_timesteps hidden depth heads ff_mult max_seq_len n_subject_rows"
_MAX_INT = 1 << 24
_LIMITS = {"depth": 1024, "ff_mult": 64, "n_subject_rows": 1 << 16}
"""Bounds far beyond any released model, so a hostile file cannot ask for a billion layers."""


def _pos_int(value: Any, limit: int = _MAX_INT) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= limit


def _norm(value: Any) -> Any:
    """Integers of any kind (NumPy, torch) as plain ints; anything else as it is (validated later)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return value


def _norm_dims(dims: Any) -> Any:
    """feature_dims with each (L, D) as a tuple of ints where it looks like a pair."""
    if not isinstance(dims, Mapping):
        return dims
    return {
        m: tuple(_norm(x) for x in v) if isinstance(v, list | tuple) else v for m, v in dims.items()
    }


def config_from_yaml(cfg: dict, build_args: Any, where: str = "the checkpoint") -> BrainConfig:
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
    if not isinstance(build_args, Mapping):
        raise CheckpointError(
            f"{where}: model_build_args must be a mapping with feature_dims, n_outputs and "
            f"n_output_timesteps, got {type(build_args).__name__}; re-download the checkpoint"
        )
    missing = [
        k for k in ("feature_dims", "n_outputs", "n_output_timesteps") if k not in build_args
    ]
    if missing:
        raise CheckpointError(
            f"{where}: model_build_args lacks {missing}; it needs feature_dims, n_outputs and "
            "n_output_timesteps: re-download the checkpoint"
        )
    config = BrainConfig(
        feature_dims=_norm_dims(build_args["feature_dims"]),
        n_outputs=_norm(build_args["n_outputs"]),
        n_output_timesteps=_norm(build_args["n_output_timesteps"]),
        hidden=_norm(bm.get("hidden", 256)),
        depth=_norm(enc.get("depth", 12)),
        heads=_norm(enc.get("heads", 8)),
        ff_mult=_norm(enc.get("ff_mult", 4)),
        low_rank_head=_norm(bm.get("low_rank_head")),
        max_seq_len=_norm(bm.get("max_seq_len", 1024)),
        rotary_pos_emb=enc.get("rotary_pos_emb", True),
        scale_residual=enc.get("scale_residual", True),
    )
    return config.validate(f"{where} (config.yaml + model_build_args)")
