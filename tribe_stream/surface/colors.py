"""Colour mapping of cortical values: robust limits, a threshold, and a sulcal-depth background.

One formula, used on the CPU here and mirrored in the viewer's shader
(`tribe_stream.viewer.brain_visual`): a vertex whose value is inside the threshold (or NaN) shows
the grey sulcal background; others take the colormap at `(value - vmin) / (vmax - vmin)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tribe_stream.errors import InputError, TribeStreamError, install_hint

LUT_SIZE = 256

COLORMAPS: tuple[str, ...] = ("cold_hot", "coolwarm", "hot", "viridis", "fire")
"""Colormap names, in the order the viewer's `c` key cycles through them."""
_DIVERGING = {"cold_hot": True, "coolwarm": True, "hot": False, "viridis": False, "fire": False}
_MATPLOTLIB = {"coolwarm": "coolwarm", "hot": "hot", "viridis": "viridis"}
"""Our name -> matplotlib's. cold_hot is nilearn's (from matplotlib's hot); fire is vispy's."""
MATPLOTLIB_HINT = (
    "the colormaps come from matplotlib, which is not installed: `pip install matplotlib` "
    f"(or `{install_hint('viewer')}`)"
)


class ColormapError(TribeStreamError):
    """A colormap that cannot be built here (its library is missing)."""


@dataclass(frozen=True)
class Colormap:
    """A 256-entry RGBA lookup table; `diverging` maps [-vmax, vmax], else [threshold, vmax]."""

    name: str
    lut: np.ndarray
    diverging: bool


def _matplotlib_colormap(name: str):
    try:
        import matplotlib
    except ImportError:
        raise ColormapError(MATPLOTLIB_HINT) from None
    return matplotlib.colormaps[name]


def _lut(name: str) -> np.ndarray:
    """The colormap sampled at LUT_SIZE even steps over [0, 1], as float RGBA."""
    x = np.linspace(0.0, 1.0, LUT_SIZE)
    if name == "cold_hot":
        # nilearn's cold_hot (nilearn.plotting.cm), made the way nilearn makes it: matplotlib's hot
        # above the middle, mirrored below with red and blue swapped (white-cyan-blue-black-red-
        # yellow-white); equal to nilearn's to the last bit (tests/test_viewer_pure.py). Importing
        # nilearn.plotting for it would add over a second to every start (tools/bench_colormap.py).
        rgba = _matplotlib_colormap("hot")(np.abs(2.0 * x - 1.0))
        cold = x < 0.5
        rgba[cold, :3] = rgba[cold, 2::-1]
    elif name in _MATPLOTLIB:
        # A 256-entry matplotlib map sampled at i / 255 returns exactly its own table.
        rgba = _matplotlib_colormap(_MATPLOTLIB[name])(x)
    else:
        from vispy.color import get_colormap as vispy_colormap

        rgba = vispy_colormap(name).map(x[:, None])  # (N, 1): what every vispy colormap takes
    lut = np.array(rgba, dtype=np.float32)
    lut[:, 3] = 1.0
    return lut


def get_colormap(name: str) -> Colormap:
    """The colormap called `name` (one of COLORMAPS)."""
    if name not in COLORMAPS:
        raise InputError(f"unknown colormap {name!r}; choose one of: {', '.join(COLORMAPS)}")
    return Colormap(name=name, lut=_lut(name), diverging=_DIVERGING[name])


@dataclass(frozen=True)
class ColorLimits:
    """Colormap range and the threshold inside which the background shows.

    Diverging maps use `|value| <= threshold` as background, sequential ones `value <= threshold`.
    """

    vmin: float
    vmax: float
    threshold: float

    def blend(self, other: ColorLimits, weight: float) -> ColorLimits:
        """`weight` of the way from self to other (smooths limits over a live stream)."""
        w = float(np.clip(weight, 0.0, 1.0))
        return ColorLimits(
            vmin=(1 - w) * self.vmin + w * other.vmin,
            vmax=(1 - w) * self.vmax + w * other.vmax,
            threshold=(1 - w) * self.threshold + w * other.threshold,
        )

    def with_vmax(self, vmax: float, diverging: bool) -> ColorLimits:
        """These limits with a fixed `vmax` (and `-vmax` below, diverging); threshold kept below it."""
        return ColorLimits(-vmax if diverging else self.vmin, vmax, min(self.threshold, vmax))


def robust_limits(
    values: np.ndarray,
    diverging: bool = True,
    percentile: float = 98.0,
    threshold_percentile: float = 50.0,
    threshold: float | None = None,
) -> ColorLimits:
    """Limits from percentiles, so a few extreme vertices do not wash out the map.

    Diverging: vmax = `percentile` of |values|, vmin = -vmax, threshold = `threshold_percentile`
    of |values|. Sequential: vmax = `percentile` of values, vmin = threshold =
    `threshold_percentile` of values. An explicit `threshold` overrides the percentile.
    Any array shape; NaN and inf are ignored; constant or empty data gives a usable unit range.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return ColorLimits(-1.0 if diverging else 0.0, 1.0, 0.0 if threshold is None else threshold)
    if diverging:
        a = np.abs(v)
        vmax = float(np.percentile(a, percentile))
        thr = float(np.percentile(a, threshold_percentile)) if threshold is None else threshold
        if vmax <= 0:
            vmax = 1.0
        return ColorLimits(-vmax, vmax, min(thr, vmax))
    vmax = float(np.percentile(v, percentile))
    thr = float(np.percentile(v, threshold_percentile)) if threshold is None else threshold
    thr = min(thr, vmax)
    if vmax <= thr:
        vmax = thr + (abs(thr) if thr else 1.0)
    return ColorLimits(thr, vmax, thr)


def sulcal_gray(sulc: np.ndarray, light: float = 0.8, dark: float = 0.42) -> np.ndarray:
    """Grey level per vertex: gyri (sulc < 0) light, sulci (sulc > 0) dark, smooth in between."""
    s = np.asarray(sulc, dtype=np.float32)
    t = 0.5 + 0.5 * np.tanh(3.0 * s / max(float(np.std(s)), 1e-6))
    return (light + (dark - light) * t).astype(np.float32)


def map_colors(
    values: np.ndarray, gray: np.ndarray, limits: ColorLimits, cmap: Colormap
) -> np.ndarray:
    """RGBA float32 (N, 4): colormap above the threshold, the sulcal grey elsewhere (and at NaN)."""
    v = np.asarray(values, dtype=np.float64)
    if v.shape != np.shape(gray):
        raise InputError(f"values have shape {v.shape}, the mesh has {np.shape(gray)} vertices")
    finite = np.isfinite(v)
    vz = np.where(finite, v, 0.0)
    shown = finite & (
        (np.abs(vz) > limits.threshold) if cmap.diverging else (vz > limits.threshold)
    )
    span = max(limits.vmax - limits.vmin, 1e-12)
    frac = np.clip((vz - limits.vmin) / span, 0.0, 1.0)
    idx = np.rint(frac * (LUT_SIZE - 1)).astype(np.int64)
    out = np.empty((v.size, 4), dtype=np.float32)
    out[:, :3] = np.asarray(gray, dtype=np.float32)[:, None]
    out[:, 3] = 1.0
    out[shown] = cmap.lut[idx[shown]]
    return out


RGB_PERCENTILE = 95.0
"""The official `plot_surf_rgb`'s default `norm_percentile`."""


def rgb_colors(
    channels: np.ndarray,
    percentile: float = RGB_PERCENTILE,
    gray: np.ndarray | None = None,
    background: float = 0.0,
) -> np.ndarray:
    """Per-vertex RGB float32 (N, 3) in [0, 1] from three maps `channels (N, 3)` (red, green,
    blue: text, audio, video), normalised as the official TRIBE v2 `plot_surf_rgb` does.

    One scale for all three: `(x - lo) / (hi - lo)` clipped to [0, 1], `lo` their smallest
    value, `hi` their `percentile`-th percentile together (official `robust_normalize(colors,
    percentile=95, two_sided=False)`). NaN and inf are left out of the scale and shown as 0 (an
    all-NaN channel is an absent modality: black). Where the percentile equals `lo` the maximum
    is the scale (the official divides by zero). `background` mixes the sulcal `gray` in
    (`alpha_bg`, default 0). A map with no spread gives black.
    """
    c = np.asarray(channels, dtype=np.float64)
    if c.ndim != 2 or c.shape[1] != 3:
        raise InputError(f"RGB channels have shape {c.shape}; expected (n_vertices, 3)")
    if not 0 < percentile <= 100:
        raise InputError(f"percentile {percentile}: give a number in (0, 100]")
    finite = np.isfinite(c)
    if not finite.any():
        return np.zeros(c.shape, np.float32)
    lo = float(c[finite].min())
    hi = float(np.percentile(c[finite], percentile))
    if hi <= lo:  # the percentile sits at the minimum: fall back to the maximum, as a scale
        hi = float(c[finite].max())
    out = (
        np.zeros(c.shape) if hi <= lo else np.clip((np.where(finite, c, lo) - lo) / (hi - lo), 0, 1)
    )
    if background:
        if gray is None or np.shape(gray) != (c.shape[0],):
            raise InputError("an RGB background needs the sulcal grey of every vertex")
        a = float(np.clip(background, 0.0, 1.0))
        out = out * (1 - a) + np.asarray(gray, np.float64)[:, None] * a
    return out.astype(np.float32)
