"""Small UNTRAINED brain-model weights, built locally, so the demo runs with no downloads.

The outputs mean nothing about the brain: they only show the pipeline working end to end on a
whole fsaverage5 cortex (20,484 vertices). Everything that carries them is labelled untrained.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tribe_stream import N_VERTICES
from tribe_stream.model.config import BrainConfig
from tribe_stream.model.fmri_encoder import FmriEncoder
from tribe_stream.paths import cache_dir

DEMO_VERSION = 1
DEMO_FEATURE_DIMS = {"text": (2, 64), "audio": (2, 64), "video": (2, 64)}
"""Must match the demo extractors' (L, D) (tribe_stream.extractors.demo)."""


def demo_config(feature_dims: dict | None = None) -> BrainConfig:
    return BrainConfig(
        feature_dims=dict(feature_dims or DEMO_FEATURE_DIMS),
        n_outputs=N_VERTICES,
        n_output_timesteps=100,
        hidden=192,
        depth=2,
        heads=4,
        low_rank_head=64,
    )


def _smooth_vertex_basis(n_basis: int, generator: torch.Generator) -> torch.Tensor:
    """Low-frequency functions over the fsaverage5 sphere (when nilearn is there), so the untrained
    maps look like blobs on the cortex rather than salt and pepper; iid noise otherwise."""
    try:
        from nilearn.datasets import load_fsaverage

        mesh = load_fsaverage("fsaverage5")["sphere"]
        parts = [mesh.parts[h].coordinates for h in ("left", "right")]
        coords = torch.cat([torch.as_tensor(p, dtype=torch.float32) for p in parts])
        coords = coords / coords.norm(dim=1, keepdim=True)
        freqs = torch.randn(n_basis, 3, generator=generator) * 2.0
        phase = torch.rand(n_basis, 1, generator=generator) * 6.283
        return torch.cos(freqs @ coords.T + phase)
    except Exception:  # noqa: BLE001 - the basis is cosmetic; any failure falls back to noise
        return torch.randn(n_basis, N_VERTICES, generator=generator)


def build_demo_model(feature_dims: dict | None = None, seed: int = 0) -> FmriEncoder:
    """A deterministic random-weight FmriEncoder with the demo's shapes."""
    config = demo_config(feature_dims)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = FmriEncoder(config)
    with torch.no_grad():
        model.time_pos_embed.normal_(0.0, 0.02, generator=g)
        basis = _smooth_vertex_basis(16, g)
        mix = torch.randn(config.low_rank_head, 16, generator=g) / 4.0
        model.predictor_weights[0] = mix @ basis
        model.predictor_bias.zero_()
    return model.eval()


def demo_model_path(folder: Path | None = None) -> Path:
    """Build (once) and return the demo model folder: `config.yaml` + `model.safetensors`."""
    from tribe_stream.model.convert import save_safetensors
    from tribe_stream.outputs import atomic_write

    if folder is None:
        folder = cache_dir(f"demo-brain-v{DEMO_VERSION}", create=True)
    folder = Path(folder)
    weights = folder / "model.safetensors"
    if weights.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    model = build_demo_model()
    experiment = {"untrained": True, "note": "tribe-stream demo: random weights, not a brain model"}
    text = (
        "# tribe-stream demo brain model: UNTRAINED random weights\n"
        + json.dumps({"untrained": True, "brain_model_config": {"name": "FmriEncoder"}})
        + "\n"
    )
    atomic_write(folder / "config.yaml", lambda tmp: tmp.write_text(text))
    save_safetensors(model, weights, experiment=experiment)  # last: its presence marks it done
    return folder
