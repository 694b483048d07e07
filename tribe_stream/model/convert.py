"""Convert a brain model to one compact, mmap-able `model.safetensors` with its build args inside."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import torch

from tribe_stream.errors import CheckpointError
from tribe_stream.model.fmri_encoder import FmriEncoder
from tribe_stream.model.loading import PREFIX, check_finite, ours_to_official
from tribe_stream.outputs import atomic_write


def _plain(value: Any) -> Any:
    """The experiment (config.yaml as read) as JSON-able data: str keys, odd scalars as text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


def save_safetensors(
    model: FmriEncoder,
    out: Path | str,
    *,
    dtype: torch.dtype | None = None,
    experiment: dict | None = None,
) -> Path:
    """Write the weights under their official names (`model.…`) and the config as metadata,
    atomically (a temporary file renamed to `out`); returns the path written.

    Refuses weights that the cast to `dtype` makes non-finite (float16 tops out at 65504)."""
    from safetensors.torch import save_file

    official = {PREFIX + ours_to_official(k): v.detach() for k, v in model.state_dict().items()}
    state = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous().cpu()
        for k, v in official.items()
    }
    if dtype is not None:
        name = str(dtype).removeprefix("torch.")
        try:
            check_finite(state, f"the weights in {name}")
        except CheckpointError:
            check_finite(official, "the model")  # NaN before the cast: say that instead
            peak = max(float(v.abs().max()) for v in official.values() if v.numel())
            raise CheckpointError(
                f"converting to {name} overflows: weights of magnitude up to {peak:.3g} do not "
                "fit; convert to bfloat16 or float32 instead"
            ) from None
    meta = {
        "format": "pt",
        "tribe_stream.config": json.dumps(model.config.to_dict()),
        "tribe_stream.experiment": json.dumps(_plain(experiment or {})),
    }
    return atomic_write(out, lambda tmp: save_file(state, str(tmp), metadata=meta))
