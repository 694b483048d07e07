"""Convert a brain model to one compact, mmap-able `model.safetensors` with its build args inside."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tribe_stream.model.fmri_encoder import FmriEncoder
from tribe_stream.model.loading import PREFIX, ours_to_official


def save_safetensors(
    model: FmriEncoder,
    out: Path | str,
    *,
    dtype: torch.dtype | None = None,
    experiment: dict | None = None,
) -> None:
    """Write the weights under their official names (`model.…`) and the config as metadata."""
    from safetensors.torch import save_file

    state = {
        PREFIX + ours_to_official(k): (
            v.to(dtype) if dtype is not None and v.is_floating_point() else v
        )
        .detach()
        .contiguous()
        .cpu()
        for k, v in model.state_dict().items()
    }
    meta = {
        "format": "pt",
        "tribe_stream.config": json.dumps(model.config.to_dict()),
        "tribe_stream.experiment": json.dumps(experiment or {}, default=str),
    }
    save_file(state, str(out), metadata=meta)
