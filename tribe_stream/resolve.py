"""Where a model comes from: the one resolver of `--checkpoint` and of the extractors' models.

- `hub_snapshot`: a Hugging Face repo's files, from the local HF cache first, else downloaded
  (unless `HF_HUB_OFFLINE` is set), with one clear line for each way that fails;
- `checkpoint_path`: a brain-model source (`demo`, a folder, a `.ckpt`/`.safetensors` file, a hub
  id) as a local path;
- `model_dir`: a `transformers` model (folder or hub id) as a local folder holding `config.json`;
- `extractor_config`: the extractor settings a checkpoint implies (its `config.yaml`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from tribe_stream.errors import CheckpointError

log = logging.getLogger(__name__)

CONFIG_NAME = "config.yaml"
CKPT_NAME = "best.ckpt"
SAFETENSORS_NAME = "model.safetensors"
CHECKPOINT_FILES = [CONFIG_NAME, CKPT_NAME, SAFETENSORS_NAME]
"""What a brain model needs from a hub repo."""
MODEL_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]
"""What a feature extractor needs from a hub repo (never the `original/` PyTorch shards)."""

_SOURCES = (
    "pass a folder with config.yaml and best.ckpt (or model.safetensors), a .ckpt/.safetensors "
    "file, a hub id such as facebook/tribev2, or `demo`"
)


def looks_like_hub_id(text: str) -> bool:
    """`owner/name`, not a relative or absolute path."""
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and " " not in text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def hub_snapshot(
    repo_id: str,
    patterns: Sequence[str],
    *,
    what: str = "model",
    complete: Callable[[Path], bool] | None = None,
) -> Path:
    """The local snapshot folder of hub repo `repo_id` (only files matching `patterns`).

    The HF cache is tried first, with no network; a snapshot missing what `complete` asks for
    counts as absent. Then the hub, unless `HF_HUB_OFFLINE` is set. Every failure is one
    CheckpointError line: not cached while offline or unreachable, gated or private (401/403),
    not on the hub, any other hub error.
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    fix = (
        f"download it once online (`hf download {repo_id}`; `huggingface-cli download {repo_id}` "
        "with an older huggingface_hub), or pass a local folder"
    )
    partial = False
    try:
        folder = Path(
            snapshot_download(repo_id, allow_patterns=list(patterns), local_files_only=True)
        )
        if complete is None or complete(folder):
            return folder
        partial = True
    except LocalEntryNotFoundError:  # also an incomplete cached snapshot
        pass
    except ValueError as exc:  # HFValidationError: not a valid repo id
        raise CheckpointError(
            f"{what} {repo_id!r} is not a valid hub id ({_first_line(exc)}); {_SOURCES}"
        ) from None
    except OSError as exc:
        raise CheckpointError(
            f"the Hugging Face cache entry for {repo_id} cannot be read ({_first_line(exc)}); "
            f"delete it and {fix}"
        ) from None
    cached = "only partly in the Hugging Face cache" if partial else "not in the Hugging Face cache"
    if constants.HF_HUB_OFFLINE:
        raise CheckpointError(f"{what} {repo_id} is {cached} and HF_HUB_OFFLINE is set; {fix}")
    try:
        log.info("downloading %s from the Hugging Face hub", repo_id)
        folder = Path(snapshot_download(repo_id, allow_patterns=list(patterns)))
    except Exception as exc:  # noqa: BLE001 - network stacks raise their own types: name the fix
        # snapshot_download wraps some hub answers (a 403, a 5xx) as "not found locally"
        cause = exc.__cause__ if isinstance(exc, LocalEntryNotFoundError) else exc
        if isinstance(cause, GatedRepoError):
            raise CheckpointError(
                f"{what} {repo_id} is gated: accept its licence on https://huggingface.co/{repo_id} "
                "and log in (`hf auth login`), or pass a local folder"
            ) from None
        if isinstance(cause, RepositoryNotFoundError):
            raise CheckpointError(
                f"{what} {repo_id} is not on the Hugging Face hub (or is private: log in with "
                "`hf auth login`); check the id, or pass a local folder"
            ) from None
        if isinstance(cause, HfHubHTTPError):
            status = getattr(getattr(cause, "response", None), "status_code", None)
            if status in (401, 403):
                raise CheckpointError(
                    f"{what} {repo_id}: the hub refused access ({status}); if it is gated, accept "
                    f"its licence on https://huggingface.co/{repo_id} and log in (`hf auth login`)"
                ) from None
            raise CheckpointError(
                f"cannot get {what} {repo_id} from the Hugging Face hub (it answered {status}: "
                f"{_first_line(cause)}); try again later, or {fix}"
            ) from None
        if isinstance(exc, LocalEntryNotFoundError):
            raise CheckpointError(
                f"{what} {repo_id} is {cached} and the hub cannot be reached; {fix}"
            ) from None
        raise CheckpointError(
            f"cannot get {what} {repo_id} from the Hugging Face hub "
            f"({type(exc).__name__}: {_first_line(exc)}); {fix}"
        ) from None
    if complete is not None and not complete(folder):
        raise CheckpointError(
            f"{what} {repo_id} on the hub holds none of the files needed ({', '.join(patterns)}); "
            "is this the right repo?"
        )
    return folder


def _has_weights(folder: Path) -> bool:
    return (folder / CKPT_NAME).is_file() or (folder / SAFETENSORS_NAME).is_file()


def check_source(source: str | os.PathLike) -> None:
    """A brain-model source that cannot resolve (no such path, not a hub id) refused in one
    line, before anything loads (`checkpoint_path` would find out only when it loads)."""
    text = str(source)
    if not (Path(text).expanduser().exists() or looks_like_hub_id(text)):
        raise CheckpointError(f"{source} does not exist; {_SOURCES}")


def checkpoint_path(source: str | os.PathLike) -> Path:
    """A brain-model source as a local path: an existing folder or file as is, a hub id -> its
    snapshot (config.yaml and weights). (`demo` is `tribe_stream.models`'.)"""
    path = Path(source).expanduser()
    if path.exists():
        return path
    check_source(source)
    return hub_snapshot(str(source), CHECKPOINT_FILES, what="checkpoint", complete=_has_weights)


def model_dir(name_or_path: str | os.PathLike, what: str = "model") -> Path:
    """The local folder of a `transformers` model: the folder itself (it must hold config.json),
    or the snapshot of a hub id (cache first, then the hub)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(
                f"{path} has no config.json, so it is not a transformers {what} folder; pass the "
                "folder that `save_pretrained` wrote (or a hub id)"
            )
        return path
    if path.exists():
        raise CheckpointError(
            f"{path} is a file; the {what} must be a folder with config.json or a hub id"
        )
    text = str(name_or_path)
    if not looks_like_hub_id(text):
        raise CheckpointError(
            f"{what} {text!r} is neither an existing folder nor a hub id such as "
            "'facebook/w2v-bert-2.0'"
        )
    return hub_snapshot(
        text, MODEL_FILES, what=what, complete=lambda f: (f / "config.json").is_file()
    )
