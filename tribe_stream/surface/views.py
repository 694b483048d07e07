"""Named views of the cortex: which hemisphere each panel shows and from where.

Camera angles follow vispy's TurntableCamera (up = +z, RAS millimetres): azimuth -90 looks at the
left hemisphere from the left with the frontal lobe on the left of the picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tribe_stream.errors import InputError


@dataclass(frozen=True)
class Panel:
    """One picture of `hemi` ("left", "right" or "both") from `azimuth`/`elevation` degrees.

    `right` and `up` are the RAS directions that point right and up on screen (used to fit the
    camera to the mesh).
    """

    label: str
    hemi: str
    azimuth: float
    elevation: float
    right: tuple[float, float, float]
    up: tuple[float, float, float]


_LEFT_LATERAL = Panel("left lateral", "left", -90.0, 0.0, (0, -1, 0), (0, 0, 1))
_RIGHT_LATERAL = Panel("right lateral", "right", 90.0, 0.0, (0, 1, 0), (0, 0, 1))
_LEFT_MEDIAL = Panel("left medial", "left", 90.0, 0.0, (0, 1, 0), (0, 0, 1))
_RIGHT_MEDIAL = Panel("right medial", "right", -90.0, 0.0, (0, -1, 0), (0, 0, 1))
_DORSAL = Panel("dorsal", "both", 0.0, 90.0, (1, 0, 0), (0, 1, 0))
_VENTRAL = Panel("ventral", "both", 180.0, -90.0, (-1, 0, 0), (0, 1, 0))

VIEWS: dict[str, tuple[Panel, ...]] = {
    "left": (_LEFT_LATERAL,),
    "right": (_RIGHT_LATERAL,),
    "medial": (_LEFT_MEDIAL, _RIGHT_MEDIAL),
    "dorsal": (_DORSAL,),
    "ventral": (_VENTRAL,),
    "both": (_LEFT_LATERAL, _RIGHT_LATERAL, _LEFT_MEDIAL, _RIGHT_MEDIAL),
}
"""View name -> panels. "both" is both hemispheres, lateral and medial, in a 2 x 2 grid."""


def panels_for(views: list[str] | tuple[str, ...]) -> list[Panel]:
    """The panels of several views, in order (a view named twice is drawn twice)."""
    panels: list[Panel] = []
    for name in views:
        if name not in VIEWS:
            raise InputError(f"unknown view {name!r}; choose from: {', '.join(VIEWS)}")
        panels.extend(VIEWS[name])
    if not panels:
        raise InputError("no view given; choose from: " + ", ".join(VIEWS))
    return panels


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, columns) for n panels: one row up to 3, 2 x 2 for four, rows of 3 beyond."""
    if n <= 3:
        return 1, n
    if n == 4:
        return 2, 2
    return -(-n // 3), 3


def fit_camera(
    vertices: np.ndarray, panel: Panel, aspect: float, margin: float = 1.06
) -> tuple[tuple[float, float, float], float]:
    """(centre, scale_factor) that fit `vertices` seen as `panel` into a box of width/height `aspect`.

    vispy's orthographic TurntableCamera shows `scale_factor` along the box's shorter side.
    """
    lo, hi = vertices.min(0), vertices.max(0)
    centre = tuple(float(c) for c in (lo + hi) / 2)
    w = float(np.ptp(vertices @ np.asarray(panel.right, dtype=np.float64)))
    h = float(np.ptp(vertices @ np.asarray(panel.up, dtype=np.float64)))
    scale = max(h, w / aspect) if aspect >= 1 else max(w, h * aspect)
    return centre, scale * margin
