"""Where tribe-stream keeps what it builds or joins once (demo weights, the Whisper model, atlases):
the one place that knows the cache folder."""

from __future__ import annotations

import os
from pathlib import Path

from tribe_stream.errors import InputError

CACHE_ENV = "TRIBE_STREAM_CACHE"


def cache_dir(*parts: str | os.PathLike, create: bool = False) -> Path:
    """`$TRIBE_STREAM_CACHE` (default `~/.cache/tribe-stream`) joined with `parts`; with `create`,
    the folder is made (a one-line error naming the variable when it cannot be)."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tribe-stream"
    folder = Path(root).expanduser().joinpath(*parts)
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"cannot create the tribe-stream cache folder {folder} ({exc.strerror or exc}); "
                f"set {CACHE_ENV} to a writable folder"
            ) from None
    return folder


def atlas_dir(*parts: str | os.PathLike, create: bool = False) -> Path:
    """Atlases by name (`atlases.py`): our fsaverage5 annotations (`lh.NAME.annot`), and under
    `nilearn/` and `mne/` what those libraries fetched for them."""
    return cache_dir("atlases", *parts, create=create)
