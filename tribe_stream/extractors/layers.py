"""Which hidden states feed each layer group: the official thinning and grouping rule, in one place.

A model with `n` hidden states (index 0 = embeddings) is first thinned to `cache_n_layers` states
(`round(linspace(0, n-1, k))`, skipped when k is None or k >= n), then cut at the fractions:
bound `int(f * (m-1))` over the m kept states, duplicates removed, the last bound +1, and each
group is the mean of the states between consecutive bounds (`group_mean`). One fraction (the mini
variant, 2/3) or `mean` aggregation gives a single group (L = 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tribe_stream.errors import InputError

AGGREGATIONS = ("group_mean", "mean", None)


def thin_indices(n_hidden_states: int, cache_n_layers: int | None) -> list[int]:
    """Indices of the hidden states kept before grouping (the official `cache_n_layers` rule)."""
    if n_hidden_states < 1:
        raise InputError(f"a model needs at least one hidden state, got {n_hidden_states}")
    if cache_n_layers is None or cache_n_layers >= n_hidden_states:
        return list(range(n_hidden_states))
    if cache_n_layers < 2:
        raise InputError(f"cache_n_layers must be None or >= 2, got {cache_n_layers}")
    return [int(round(float(x))) for x in np.linspace(0, n_hidden_states - 1, cache_n_layers)]


def group_layers(
    n_hidden_states: int,
    fractions: float | Sequence[float] = (0.5, 0.75, 1.0),
    cache_n_layers: int | None = 20,
    aggregation: str | None = "group_mean",
) -> list[list[int]]:
    """Hidden-state indices averaged into each layer group, in group order.

    >>> group_layers(25, cache_n_layers=None)
    [[12, 13, 14, 15, 16, 17], [18, 19, 20, 21, 22, 23, 24]]
    """
    if aggregation not in AGGREGATIONS:
        raise InputError(f"layer aggregation {aggregation!r} is not one of {AGGREGATIONS}")
    fracs = (
        [float(fractions)] if isinstance(fractions, int | float) else [float(f) for f in fractions]
    )
    if not fracs or not all(0.0 <= f <= 1.0 for f in fracs):
        raise InputError(f"layer fractions must be floats in [0, 1], got {fractions!r}")
    kept = thin_indices(n_hidden_states, cache_n_layers)
    m = len(kept)
    bounds = sorted({int(f * (m - 1)) for f in fracs})
    if len(bounds) == 1:
        return [[kept[bounds[0]]]]
    if aggregation == "mean":
        return [[kept[b] for b in bounds]]
    if aggregation is None:
        return [[kept[b]] for b in bounds]
    bounds[-1] += 1
    return [kept[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def needed_group_weights(
    groups: list[list[int]], n_hidden_states: int
) -> tuple[list[int], np.ndarray]:
    """The sorted hidden-state indices any group uses and the `(L, n_needed)` matrix averaging
    them into the groups (`W @ needed states`), so only the needed hidden states are ever kept."""
    needed = sorted({i for g in groups for i in g})
    w = np.zeros((len(groups), n_hidden_states), dtype=np.float32)
    for g, idx in enumerate(groups):
        w[g, idx] = 1.0 / len(idx)
    return needed, w[:, needed]
