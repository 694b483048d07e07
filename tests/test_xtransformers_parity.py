"""Our encoder equals x_transformers 1.27.20's `Encoder` (the official model's) on random configs."""

from __future__ import annotations

import copy
from importlib.metadata import version

import pytest
import torch

from tribe_stream.model.config import BrainConfig
from tribe_stream.model.fmri_encoder import Encoder
from tribe_stream.model.loading import official_to_ours

ORACLE = "1.27.20"  # the version the official TRIBE v2 checkpoint was trained with
x_transformers = pytest.importorskip(
    "x_transformers", reason=f"test-only oracle: pip install x_transformers=={ORACLE}"
)
if version("x_transformers") != ORACLE:
    pytest.skip(
        f"the oracle is x_transformers {ORACLE}, this is {version('x_transformers')} "
        f"(pip install x_transformers=={ORACLE})",
        allow_module_level=True,
    )

TOL = 1e-5


def _wrong_variants(ours: Encoder):
    """Copies of `ours`, each with one plausible mistake; none may match the oracle."""

    def no_rotary(m):
        m.inv_freq.zero_()  # cos 1, sin 0: positions ignored

    def one_weight(m):
        m.layers[0].fn.to_q.weight[0, 0] += 0.05  # one entry of one projection

    def lost_skip_scale(m):
        m.layers[-1].residual_scale.fill_(1.0)  # the last block's learned skip scale lost

    def final_gain(m):
        m.final_norm.g.mul_(1.001)

    for mistake in (no_rotary, one_weight, lost_skip_scale, final_gain):
        wrong = copy.deepcopy(ours)
        with torch.no_grad():
            mistake(wrong)
        yield mistake.__name__, wrong


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
    torch.testing.assert_close(ours.inv_freq, ref.rotary_pos_emb.inv_freq, rtol=0, atol=0)
    state = {
        official_to_ours("encoder." + k).removeprefix("encoder."): v
        for k, v in ref.state_dict().items()
    }
    ours.load_state_dict(state, strict=True)
    x = torch.randn(2, T, dim) * 3
    with torch.no_grad():
        want = ref(x)
        got = ours(x)
        # A real output, not a constant the two could share by accident.
        assert want.std() > 0.5 and (want[:, 1:] - want[:, :1]).abs().amax() > 0.5
        assert (got - want).abs().max().item() < TOL
        # The comparison is sharp enough to see a single mistake anywhere in the encoder.
        for name, wrong in _wrong_variants(ours):
            err = (wrong(x) - want).abs().max().item()
            assert err > 10 * TOL, f"{name}: a wrong encoder still matched ({err:.2e})"
