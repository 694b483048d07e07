"""What the page draws, served from `tribe_stream.surface` (the one owner of meshes, views and
colormaps): the mesh as one binary blob, each colormap as a 256-entry RGBA table, and the scene
description (views, panels, hemisphere ranges) as JSON.

`mesh.bin` layout, little-endian, in this order: positions float32 (N, 3) in millimetres,
normals float32 (N, 3), sulcal grey float32 (N,), faces uint32 (F, 3) (left hemisphere's
first); N and F are in the scene description.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from tribe_stream.surface.colors import (
    COLORMAPS,
    LUT_SIZE,
    Colormap,
    ColormapError,
    get_colormap,
    sulcal_gray,
)
from tribe_stream.surface.views import VIEWS, grid_shape

MARGIN = 1.06
"""Room around the cortex in each panel (as the viewer's camera fit)."""


@lru_cache(maxsize=1)
def _mesh():
    from tribe_stream.surface.mesh import load_brain_mesh

    return load_brain_mesh()


@lru_cache(maxsize=1)
def mesh_bytes() -> bytes:
    """The mesh blob (see the module docs)."""
    m = _mesh()
    parts = (
        m.vertices.astype("<f4"),
        m.normals.astype("<f4"),
        sulcal_gray(m.sulc).astype("<f4"),
        m.faces.astype("<u4"),
    )
    return b"".join(np.ascontiguousarray(p).tobytes() for p in parts)


@lru_cache(maxsize=len(COLORMAPS))
def colormap(name: str) -> Colormap:
    return get_colormap(name)


@lru_cache(maxsize=1)
def available_colormaps() -> tuple[str, ...]:
    """The colormaps that can be built here (vispy's `fire` needs vispy, the others matplotlib)."""
    names = []
    for name in COLORMAPS:
        try:
            colormap(name)
        except (ColormapError, ImportError):
            continue
        names.append(name)
    return tuple(names)


@lru_cache(maxsize=len(COLORMAPS))
def lut_bytes(name: str) -> bytes:
    """Colormap `name` as LUT_SIZE RGBA uint8 entries (the page's lookup texture)."""
    lut = colormap(name).lut
    return np.clip(np.rint(lut * 255), 0, 255).astype(np.uint8).tobytes()


def _panel(vertices: np.ndarray, hemi_rows: dict[str, slice], panel) -> dict[str, Any]:
    """A panel's camera as the page needs it: the screen axes and the box the hemisphere fills
    (extent along `right` and `up`, around its centre), for an orthographic fit at any aspect."""
    v = vertices[hemi_rows[panel.hemi]].astype(np.float64)
    right, up = np.asarray(panel.right, float), np.asarray(panel.up, float)
    lo, hi = v.min(0), v.max(0)
    return {
        "label": panel.label,
        "hemi": panel.hemi,
        "right": list(map(float, right)),
        "up": list(map(float, up)),
        "centre": [float(c) for c in (lo + hi) / 2],
        "width": float(np.ptp(v @ right)) * MARGIN,
        "height": float(np.ptp(v @ up)) * MARGIN,
    }


@lru_cache(maxsize=1)
def scene() -> dict[str, Any]:
    """The scene description the page starts from (also names every view and colormap)."""
    m = _mesh()
    rows = {h: m.hemi_vertices(h) for h in ("left", "right")} | {"both": slice(0, m.n_vertices)}
    views = {}
    for name, panels in VIEWS.items():
        r, c = grid_shape(len(panels))
        views[name] = {"grid": [r, c], "panels": [_panel(m.vertices, rows, p) for p in panels]}
    faces = {
        h: [m.hemi_faces[h].start or 0, (m.hemi_faces[h].stop or 0) - (m.hemi_faces[h].start or 0)]
        for h in ("left", "right", "both")
    }
    return {
        "n_vertices": int(m.n_vertices),
        "n_faces": int(len(m.faces)),
        "faces": faces,
        "views": views,
        "colormaps": {n: {"diverging": colormap(n).diverging} for n in available_colormaps()},
        "lut_size": LUT_SIZE,
    }
