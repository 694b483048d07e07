"""Find a `transformers` model folder (local folder, Hugging Face cache or hub id) and load it.

Real weights and the random-weight demo/test models go through these same two functions, so
what the tests load is what users load.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tribe_stream.devices import pick_device
from tribe_stream.errors import CheckpointError

if TYPE_CHECKING:
    from tribe_stream.extractors.config import ModalitySettings

log = logging.getLogger(__name__)

HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]
"""What a feature extractor needs from a hub repo (never the `original/` PyTorch shards)."""


def _looks_like_hub_id(text: str) -> bool:
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and " " not in text


def resolve_model_dir(name_or_path: str | os.PathLike, what: str = "model") -> Path:
    """The local folder holding `name_or_path`: the folder itself, its HF-cache snapshot, or a
    fresh hub download (when the hub is reachable and `HF_HUB_OFFLINE` is not set)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(
                f"{path} has no config.json, so it is not a transformers {what} folder; pass the folder "
                "that `save_pretrained` wrote (or a hub id)"
            )
        return path
    if path.exists():
        raise CheckpointError(
            f"{path} is a file; the {what} must be a folder with config.json or a hub id"
        )
    text = str(name_or_path)
    if not _looks_like_hub_id(text):
        raise CheckpointError(
            f"{what} {text!r} is neither an existing folder nor a hub id such as {'facebook/w2v-bert-2.0'!r}"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(text, allow_patterns=HUB_PATTERNS, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"the Hugging Face cache entry for {text} cannot be read: {exc}"
        ) from None
    try:
        log.info("downloading %s from the Hugging Face hub", text)
        return Path(snapshot_download(text, allow_patterns=HUB_PATTERNS))
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"{what} {text} is not in the Hugging Face cache and the hub cannot be reached; download it "
            f"once online (`huggingface-cli download {text}`), or pass a local folder"
        ) from None
    except HfHubHTTPError as exc:
        hint = " (a gated model: accept its licence on the hub and log in with `huggingface-cli login`)"
        gated = "401" in str(exc) or "403" in str(exc) or "gated" in str(exc).lower()
        raise CheckpointError(
            f"cannot get {text} from the Hugging Face hub{hint if gated else ''}: {exc}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - network stacks raise their own types: name the fix
        raise CheckpointError(f"cannot get {text} from the Hugging Face hub: {exc}") from None


def load_pretrained(cls: Any, folder: Path, what: str, **kwargs: Any) -> Any:
    """`cls.from_pretrained(folder)` offline, with a clear error when the folder does not fit."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return cls.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(
            f"cannot load the {what} in {folder} with transformers.{getattr(cls, '__name__', cls)}: {exc}"
        ) from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def locate(
    name_or_path: str | os.PathLike | None,
    settings: ModalitySettings | None,
    modality: str,
    device: str | None,
) -> tuple[ModalitySettings, Path, str]:
    """What an extractor's `from_pretrained` starts from: its settings (default: the reference
    ones of `modality`), the model folder (default: the settings' model name) and the device."""
    from tribe_stream.extractors.config import ExtractorConfig

    settings = settings or getattr(ExtractorConfig.reference(), modality)
    folder = resolve_model_dir(name_or_path or settings.model_name, f"{modality} model")
    return settings, folder, pick_device(device)
