"""Load a `transformers` model folder (found by `tribe_stream.resolve.model_dir`: a local folder,
the Hugging Face cache or a hub id).

Real weights and the random-weight demo/test models go through these same two functions, so
what the tests load is what users load.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tribe_stream.devices import pick_device
from tribe_stream.errors import CheckpointError
from tribe_stream.resolve import model_dir

if TYPE_CHECKING:
    from tribe_stream.extractors.config import ModalitySettings


def load_pretrained(cls: Any, folder: Path, what: str, **kwargs: Any) -> Any:
    """`cls.from_pretrained(folder)` offline, with a clear error when the folder does not fit."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return cls.from_pretrained(str(folder), local_files_only=True, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a bad folder fails in many ways: one line each
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(
            f"cannot load the {what} in {folder} with "
            f"transformers.{getattr(cls, '__name__', cls)}: {first}; re-download the model"
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
    folder = model_dir(name_or_path or settings.model_name, f"{modality} model")
    return settings, folder, pick_device(device)
