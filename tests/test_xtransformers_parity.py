"""Our encoder equals x_transformers 1.27.20's `Encoder` (the official model's) on random configs."""

from __future__ import annotations

import pytest
import torch

from tribe_stream.model.config import BrainConfig
from tribe_stream.model.fmri_encoder import Encoder
from tribe_stream.model.loading import official_to_ours

x_transformers = pytest.importorskip(
    "x_transformers", reason="test-only oracle: pip install x_transformers==1.27.20"
)


@pytest.mark.parametrize(
    "dim,heads,depth,T",
    [
        (288, 8, 2, 37),  # dim_head 36 -> rotary clamped to 32
        (256, 4, 3, 200),  # dim_head 64 -> rotary 32 = dim_head/2
        (480, 4, 2, 64),  # dim_head 120 -> rotary 60 = dim_head/2
        (384, 12, 1, 5),  # dim_head 32 -> rotary 32 (the whole head)
    ],
)
def test_encoder_matches_x_transformers(dim, heads, depth, T):
    assert x_transformers.__version__ if hasattr(x_transformers, "__version__") else True
    torch.manual_seed(dim + T)
    ref = x_transformers.Encoder(
        dim=dim,
        depth=depth,
        heads=heads,
        attn_dim_head=dim // heads,
        ff_mult=4,
        use_scalenorm=True,
        rotary_pos_emb=True,
        scale_residual=True,
    ).eval()
    with torch.no_grad():  # perturb every parameter so that gains and scales matter
        for name, p in ref.named_parameters():
            if name.endswith(".g") or name.endswith("residual_scale"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0, 0.05)
    config = BrainConfig(hidden=dim, heads=heads, depth=depth)
    ours = Encoder(config).eval()
    assert ours.inv_freq.shape == ref.rotary_pos_emb.inv_freq.shape
    state = {
        official_to_ours("encoder." + k).removeprefix("encoder."): v
        for k, v in ref.state_dict().items()
    }
    ours.load_state_dict(state, strict=True)
    x = torch.randn(2, T, dim) * 3
    with torch.no_grad():
        want = ref(x)
        got = ours(x)
    assert (got - want).abs().max().item() < 1e-5
