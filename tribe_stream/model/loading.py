"""Load a brain model from a folder, a converted safetensors file, or a Hugging Face hub id.

The official checkpoint (`best.ckpt`, a Lightning file) stores `state_dict` under the prefix
`model.` and the shapes under `model_build_args`; the architecture is in `config.yaml`. Keys are
checked strictly against the architecture, in the official names, before anything is loaded.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from tribe_stream.errors import CheckpointError
from tribe_stream.model.config import BrainConfig, config_from_yaml, read_yaml
from tribe_stream.model.fmri_encoder import FmriEncoder

CKPT_NAME = "best.ckpt"
CONFIG_NAME = "config.yaml"
SAFETENSORS_NAME = "model.safetensors"
PREFIX = "model."

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
    def identity(self) -> dict:
        """What a consumer needs to know about the model (published in stream metadata)."""
        return {
            "source": self.source,
            "n_outputs": self.config.n_outputs,
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
    shapes = {PREFIX + ours_to_official(k): tuple(v.shape) for k, v in model.state_dict().items()}
    return shapes


def check_state_dict(state: dict[str, torch.Tensor], config: BrainConfig, where: str) -> None:
    """Refuse missing keys, unexpected keys and shape mismatches, listing each."""
    want = expected_shapes(config)
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {want[k]}"
        for k in sorted(set(want) & set(state))
        if tuple(state[k].shape) != want[k]
    ]
    problems = []
    if missing:
        problems.append(
            f"missing keys ({len(missing)}): {', '.join(missing[:20])}"
            + (" …" if len(missing) > 20 else "")
        )
    if unexpected:
        problems.append(
            f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}"
            + (" …" if len(unexpected) > 20 else "")
        )
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): {'; '.join(mismatched[:20])}")
    if problems:
        raise CheckpointError(
            f"{where} does not match the architecture in its config.yaml / model_build_args:\n  "
            + "\n  ".join(problems)
            + "\nUse the config.yaml that came with this checkpoint, or re-download both."
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
    except Exception as exc:  # truncated zip, not a torch file, unsafe pickle content
        raise CheckpointError(
            f"cannot read {path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}\n"
            "The file is corrupt, truncated or not a PyTorch checkpoint; re-download it."
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "model_build_args" not in ckpt:
        keys = list(ckpt)[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path} is not a TRIBE v2 checkpoint: it needs `state_dict` and `model_build_args` "
            f"(found {keys})"
        )
    return ckpt


def _load_safetensors(path: Path, experiment: dict | None) -> tuple[BrainConfig, dict, dict]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read {path}: {exc}; the file is corrupt or truncated, convert again"
        ) from None
    if "tribe_stream.config" not in meta:
        raise CheckpointError(
            f"{path} has no tribe-stream metadata; make it with `tribe-stream convert best.ckpt OUT.safetensors`"
        )
    config = BrainConfig.from_dict(json.loads(meta["tribe_stream.config"]))
    exp = (
        experiment
        if experiment is not None
        else json.loads(meta.get("tribe_stream.experiment", "{}"))
    )
    return config, state, exp


def resolve_source(source: str | os.PathLike) -> Path:
    """A local folder or file as is; otherwise a hub id, downloaded (online) or from the HF cache."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    text = str(source)
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        try:
            return Path(
                snapshot_download(text, allow_patterns=[CONFIG_NAME, CKPT_NAME, SAFETENSORS_NAME])
            )
        except LocalEntryNotFoundError:
            raise CheckpointError(
                f"{text} is not in the Hugging Face cache and the hub cannot be reached; download it "
                f"once online (`huggingface-cli download {text}`) or pass a local folder"
            ) from None
        except (HfHubHTTPError, OSError, ValueError) as exc:
            raise CheckpointError(f"cannot get {text} from the Hugging Face hub: {exc}") from None
    raise CheckpointError(
        f"{source} does not exist; pass a folder with config.yaml and best.ckpt (or model.safetensors), "
        "a .ckpt/.safetensors file, a hub id such as facebook/tribev2, or `demo`"
    )


def load_brain_model(
    source: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> LoadedModel:
    """Load a TRIBE v2 brain model from a folder, a `.ckpt`/`.safetensors` file, a hub id, or `demo`."""
    if str(source) == "demo":
        from tribe_stream.model.demo import demo_model_path

        source = demo_model_path()
    path = resolve_source(source)
    if path.is_dir():
        folder, files = path, {p.name for p in path.iterdir()}
        if SAFETENSORS_NAME in files:
            weights = path / SAFETENSORS_NAME
        elif CKPT_NAME in files:
            weights = path / CKPT_NAME
        else:
            raise CheckpointError(
                f"{path} holds neither {CKPT_NAME} nor {SAFETENSORS_NAME}; is this the model folder?"
            )
    else:
        folder, weights = path.parent, path
    cfg_path = folder / CONFIG_NAME
    experiment = read_yaml(cfg_path) if cfg_path.exists() else None

    if weights.suffix == ".safetensors":
        config, state, experiment = _load_safetensors(weights, experiment)
    else:
        if experiment is None:
            raise CheckpointError(
                f"{cfg_path} is missing: the architecture of {weights.name} is read from the config.yaml "
                "beside it; put the config.yaml that came with the checkpoint there"
            )
        ckpt = _read_ckpt(weights)
        config = config_from_yaml(experiment, ckpt["model_build_args"])
        state = ckpt["state_dict"]
    model = build_model(config, state, str(weights))
    model = model.to(device=device, dtype=dtype)
    return LoadedModel(model=model, config=config, source=str(source), experiment=experiment or {})
