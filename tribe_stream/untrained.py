"""The label of untrained weights: one wording, and whether a stream's or file's metadata says so.

Demo weights (`checkpoint="demo"`, `tribe_stream.model.demo`) make maps that look like brain maps
and mean nothing; every output of them says so: the terminal, the Python API (a warning), the
heads-up line of both viewers, pictures, movies and file metadata (`model.untrained`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

UNTRAINED_TAG = "UNTRAINED demo weights"
UNTRAINED_LABEL = f"{UNTRAINED_TAG}: the maps mean nothing about the brain"


class UntrainedWeightsWarning(UserWarning):
    """Predictions made with untrained (demo) weights."""


def is_untrained(meta: Mapping[str, Any] | None) -> bool:
    """True when `meta` (a model identity, a stream header or metadata, a file's metadata) says
    the weights are untrained: `untrained` itself or in its `model`."""
    if not isinstance(meta, Mapping):
        return False
    if meta.get("untrained") is True:
        return True
    model = meta.get("model")
    return isinstance(model, Mapping) and model.get("untrained") is True


def warn_untrained(stacklevel: int = 3) -> None:
    """The Python API's warning (the commands print `UNTRAINED_LABEL` themselves)."""
    warnings.warn(UNTRAINED_LABEL, UntrainedWeightsWarning, stacklevel=stacklevel)


def tagged(title: str, meta: Mapping[str, Any] | None) -> str:
    """`title` with the untrained tag in front when `meta` says untrained."""
    if not is_untrained(meta):
        return title
    return f"{UNTRAINED_TAG}  |  {title}" if title else UNTRAINED_TAG
