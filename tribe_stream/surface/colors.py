"""Colour mapping of cortical values: robust limits, a threshold, and a sulcal-depth background.

One formula, used on the CPU here and mirrored in the viewer's shader
(`tribe_stream.viewer.brain_visual`): a vertex whose value is inside the threshold (or NaN) shows
the grey sulcal background; others take the colormap at `(value - vmin) / (vmax - vmin)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tribe_stream.errors import InputError

LUT_SIZE = 256

# Control points (position 0..1, r, g, b) of the colormaps defined here; others come from vispy.
_POINTS: dict[str, list[tuple[float, float, float, float]]] = {
    # Diverging, dark near zero (where the threshold hides it anyway), bright at the extremes.
    "cold_hot": [
        (0.0, 0.55, 1.0, 1.0),
        (0.2, 0.0, 0.75, 1.0),
        (0.42, 0.05, 0.2, 0.85),
        (0.5, 0.25, 0.25, 0.35),
        (0.58, 0.85, 0.1, 0.05),
        (0.8, 1.0, 0.6, 0.0),
        (1.0, 1.0, 1.0, 0.55),
    ],
    # Diverging blue-white-red (RdBu reversed).
    "coolwarm": [
        (0.0, 0.02, 0.19, 0.38),
        (0.25, 0.26, 0.58, 0.76),
        (0.5, 0.97, 0.97, 0.97),
        (0.75, 0.84, 0.38, 0.30),
        (1.0, 0.40, 0.0, 0.12),
    ],
    # Sequential black-red-yellow-white.
    "hot": [
        (0.0, 0.35, 0.0, 0.0),
        (0.35, 0.9, 0.1, 0.0),
        (0.7, 1.0, 0.8, 0.0),
        (1.0, 1.0, 1.0, 0.9),
    ],
}
_VISPY = {"viridis": "viridis", "fire": "fire"}
_DIVERGING = {"cold_hot": True, "coolwarm": True, "hot": False, "viridis": False, "fire": False}
COLORMAPS: tuple[str, ...] = ("cold_hot", "coolwarm", "hot", "viridis", "fire")
"""Colormap names, in the order the viewer's `c` key cycles through them."""


@dataclass(frozen=True)
class Colormap:
    """A 256-entry RGBA lookup table; `diverging` maps [-vmax, vmax], else [threshold, vmax]."""

    name: str
    lut: np.ndarray
    diverging: bool


def get_colormap(name: str) -> Colormap:
    """The colormap called `name` (one of COLORMAPS)."""
    if name not in COLORMAPS:
        raise InputError(f"unknown colormap {name!r}; choose one of: {', '.join(COLORMAPS)}")
    x = np.linspace(0.0, 1.0, LUT_SIZE)
    if name in _POINTS:
        pts = np.asarray(_POINTS[name], dtype=np.float64)
        rgb = np.stack([np.interp(x, pts[:, 0], pts[:, c]) for c in (1, 2, 3)], axis=1)
        lut = np.concatenate([rgb, np.ones((LUT_SIZE, 1))], axis=1)
    else:
        from vispy.color import get_colormap as vispy_colormap

        lut = np.asarray(vispy_colormap(_VISPY[name]).map(x), dtype=np.float64)
        lut[:, 3] = 1.0
    return Colormap(name=name, lut=lut.astype(np.float32), diverging=_DIVERGING[name])


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
