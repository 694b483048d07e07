"""Load a brain model from a folder, a converted safetensors file, a Hugging Face hub id or `demo`.

The official `best.ckpt` (Lightning) stores `state_dict` under the prefix `model.` and the shapes
under `model_build_args`; the architecture is in `config.yaml`. Keys, shapes, dtypes (official
names) and finiteness are checked strictly before anything loads. `tribe_stream.resolve` finds it.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from tribe_stream.errors import CheckpointError
from tribe_stream.model.config import BrainConfig, config_from_yaml, read_yaml
from tribe_stream.model.fmri_encoder import FmriEncoder
from tribe_stream.resolve import CKPT_NAME, CONFIG_NAME, SAFETENSORS_NAME, checkpoint_path

PREFIX = "model."
WEIGHT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
"""What a checkpoint's tensors may hold; they are cast to the engine's dtype afterwards."""

# (official key without "model.", this implementation's parameter name), as regex <-> template pairs
_KEY_PAIRS = [
    (r"encoder.layers.{i}.0.0.g", r"encoder.layers.{i}.norm.g"),
    (r"encoder.layers.{i}.1.{p}.weight", r"encoder.layers.{i}.fn.{p}.weight"),
    (r"encoder.layers.{i}.1.ff.0.0.{w}", r"encoder.layers.{i}.fn.up.{w}"),
    (r"encoder.layers.{i}.1.ff.2.{w}", r"encoder.layers.{i}.fn.down.{w}"),
    (r"encoder.layers.{i}.2.residual_scale", r"encoder.layers.{i}.residual_scale"),
    (r"encoder.rotary_pos_emb.inv_freq", r"encoder.inv_freq"),
    (r"predictor.weights", r"predictor_weights"),
    (r"predictor.bias", r"predictor_bias"),
]
_GROUPS = {"i": r"(?P<i>\d+)", "p": r"(?P<p>to_q|to_k|to_v|to_out)", "w": r"(?P<w>weight|bias)"}


def _rename(key: str, src_index: int) -> str:
    for pair in _KEY_PAIRS:
        src, dst = pair[src_index], pair[1 - src_index]
        m = re.fullmatch(
            re.escape(src).replace(r"\{", "{").replace(r"\}", "}").format(**_GROUPS), key
        )
        if m:
            return dst.format(**m.groupdict())
    return key


def official_to_ours(key: str) -> str:
    """Map an official state-dict key (without the `model.` prefix) to this implementation's name."""
    return _rename(key, 0)


def ours_to_official(key: str) -> str:
    """Map this implementation's parameter name to the official key (without `model.`)."""
    return _rename(key, 1)


@dataclass
class LoadedModel:
    """A brain model ready to run, with where it came from."""

    model: FmriEncoder
    config: BrainConfig
    source: str
    experiment: dict

    @property
    def space(self):
        """Where the outputs live (`tribe_stream.spaces.OutputSpace`), from the config's
        `data.neuro.projection`; an unknown space is refused in one line."""
        from tribe_stream.spaces import space_of

        return space_of(self.experiment, self.config.n_outputs)

    @property
    def identity(self) -> dict:
        """What a consumer needs to know about the model (published in stream metadata)."""
        return {
            "source": self.source,
            "n_outputs": self.config.n_outputs,
            "space": self.space.name,
            "feature_dims": {
                k: list(v) if v else None for k, v in self.config.feature_dims.items()
            },
            "hidden": self.config.hidden,
            "depth": self.config.depth,
            "untrained": bool(self.experiment.get("untrained", False)),
        }


def expected_shapes(config: BrainConfig) -> dict[str, tuple[int, ...]]:
    """Every official key (with `model.`) and its shape for this architecture."""
    with torch.device("meta"):
        model = FmriEncoder(config)
    return {PREFIX + ours_to_official(k): tuple(v.shape) for k, v in model.state_dict().items()}


def _listing(items: list[str], sep: str = ", ", n: int = 20) -> str:
    return sep.join(items[:n]) + (" …" if len(items) > n else "")


def check_state_dict(state: dict[str, torch.Tensor], config: BrainConfig, where: str) -> None:
    """Refuse missing keys, unexpected keys, non-tensors, shape and dtype mismatches (each listed,
    on one line), then non-finite weights (the first bad tensor named)."""
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{where}: its state_dict is a {type(state).__name__}, not a mapping of tensors; "
            "re-download the checkpoint"
        )
    want = expected_shapes(config)
    names = {k for k in state if isinstance(k, str)}
    missing = [k for k in want if k not in names]
    unexpected = sorted(str(k) for k in state if k not in want)
    present = [k for k in want if k in names]
    not_tensors = [
        f"{k} ({type(state[k]).__name__})"
        for k in present
        if not isinstance(state[k], torch.Tensor)
    ]
    tensors = [k for k in present if isinstance(state[k], torch.Tensor)]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {want[k]}"
        for k in tensors
        if tuple(state[k].shape) != want[k]
    ]
    bad_dtype = [
        f"{k} ({str(state[k].dtype).removeprefix('torch.')})"
        for k in tensors
        if state[k].dtype not in WEIGHT_DTYPES or state[k].layout != torch.strided
    ]
    found = {
        "missing keys": (missing, ", "),
        "unexpected keys": (unexpected, ", "),
        "not tensors": (not_tensors, ", "),
        "shape mismatches": (mismatched, "; "),
        "not dense float16/bfloat16/float32/float64": (bad_dtype, ", "),
    }
    problems = [f"{what} ({len(v)}): {_listing(v, sep)}" for what, (v, sep) in found.items() if v]
    if problems:
        raise CheckpointError(
            f"{where} does not match the architecture in its config.yaml / model_build_args: "
            + " | ".join(problems)
            + ". Use the config.yaml that came with this checkpoint, or re-download both."
        )
    check_finite(state, where, order=list(want))


def _all_finite(v: torch.Tensor) -> bool:
    """One reduction: a sum is finite only if every term is (NaN and inf propagate); only when the
    sum is not (a real NaN, or an overflow of large finite values) is each element looked at."""
    acc = torch.float64 if v.dtype == torch.float64 else torch.float32
    if math.isfinite(float(v.sum(dtype=acc))):
        return True
    return bool(torch.isfinite(v).all())


def check_finite(
    state: dict[str, torch.Tensor], where: str, order: list[str] | None = None
) -> None:
    """Refuse NaN or inf weights, naming the first bad tensor (about 0.04 s for the full model's
    177 M float32 parameters on two CPU cores)."""
    for k in order or list(state):
        if not _all_finite(state[k]):
            n = int((~torch.isfinite(state[k])).sum())
            raise CheckpointError(
                f"{where}: weight {k} holds {n:,} NaN or inf values of {state[k].numel():,}; the "
                "checkpoint is corrupt (or was trained into divergence): re-download it"
            )


def build_model(config: BrainConfig, state: dict[str, torch.Tensor], where: str) -> FmriEncoder:
    """Build on the meta device, then take the checkpoint's tensors (strict, in official names)."""
    check_state_dict(state, config, where)
    with torch.device("meta"):
        model = FmriEncoder(config)
    ours = {official_to_ours(k[len(PREFIX) :]): v for k, v in state.items()}
    model.load_state_dict(ours, strict=True, assign=True)
    model.requires_grad_(False)
    return model.eval()


def _read_ckpt(path: Path) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # noqa: BLE001 - truncated zip, not a torch file, unsafe pickle content
        raise CheckpointError(
            f"cannot read {path}: {type(exc).__name__}: {_first_line(exc)}; the file is corrupt, "
            "truncated or not a PyTorch checkpoint: re-download it"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "model_build_args" not in ckpt:
        keys = list(ckpt)[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path} is not a TRIBE v2 checkpoint: it needs `state_dict` and `model_build_args` "
            f"(found {keys})"
        )
    return ckpt


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def read_safetensors(
    path: Path, *, tensors: bool = True
) -> tuple[BrainConfig, dict, dict[str, torch.Tensor] | None]:
    """A converted file's config, experiment (its config.yaml as data) and, with `tensors`, its
    weights; every problem is one CheckpointError line."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path)) if tensors else None
    except (SafetensorError, OSError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(
            f"cannot read {path}: {_first_line(exc)}; the file is corrupt or truncated, convert again"
        ) from None
    if "tribe_stream.config" not in meta:
        raise CheckpointError(
            f"{path} has no tribe-stream metadata; make it with "
            "`tribe-stream convert best.ckpt OUT.safetensors`"
        )
    parsed = {}
    for key, default in (("tribe_stream.config", None), ("tribe_stream.experiment", "{}")):
        try:
            parsed[key] = json.loads(meta.get(key, default))
        except (ValueError, RecursionError) as exc:
            raise CheckpointError(
                f"{path}: its {key} metadata is not valid JSON ({_first_line(exc)}); convert again"
            ) from None
    config = BrainConfig.from_dict(parsed["tribe_stream.config"], f"{path} (tribe_stream.config)")
    experiment = parsed["tribe_stream.experiment"]
    if not isinstance(experiment, dict):
        raise CheckpointError(
            f"{path}: its tribe_stream.experiment metadata is not a mapping; convert again"
        )
    return config, experiment, state


def _weights_of(path: Path) -> tuple[Path, Path]:
    """(folder, weights file) of a resolved source."""
    if path.is_dir():
        for name in (SAFETENSORS_NAME, CKPT_NAME):
            if (path / name).is_file():
                return path, path / name
        raise CheckpointError(
            f"{path} holds neither {CKPT_NAME} nor {SAFETENSORS_NAME}; is this the model folder?"
        )
    if path.suffix in (".yaml", ".yml"):  # the config.yaml of a model folder
        return _weights_of(path.parent)
    return path.parent, path


def load_brain_model(
    source: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LoadedModel:
    """Load a TRIBE v2 brain model from a folder, a `.ckpt`/`.safetensors` file, a hub id, or `demo`."""
    folder, weights = _weights_of(checkpoint_path(source))
    cfg_path = folder / CONFIG_NAME
    experiment = read_yaml(cfg_path) if cfg_path.exists() else None
    if experiment is not None:  # an output space we do not know: refused before the weights load
        from tribe_stream.spaces import space_of

        space_of(experiment, 1)  # (the real count is checked against the space when used)

    if weights.suffix == ".safetensors":
        config, meta_experiment, state = read_safetensors(weights)
        experiment = experiment if experiment is not None else meta_experiment
    else:
        if experiment is None:
            raise CheckpointError(
                f"{cfg_path} is missing: the architecture of {weights.name} is read from the "
                "config.yaml beside it; put the config.yaml that came with the checkpoint there"
            )
        ckpt = _read_ckpt(weights)
        config = config_from_yaml(experiment, ckpt["model_build_args"], str(weights))
        state = ckpt["state_dict"]
    loaded = LoadedModel(model=None, config=config, source=str(source), experiment=experiment)
    loaded.space  # noqa: B018 - a converted file's own config: its space refused if unknown
    loaded.model = build_model(config, state, str(weights)).to(device=device, dtype=dtype)
    return loaded
