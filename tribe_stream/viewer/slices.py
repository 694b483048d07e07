"""Three orthogonal slices of a volume prediction (the subcortical head), as one RGBA picture.

Both viewers draw the subcortical prediction this way: axial, coronal and sagittal planes of the
mask's grid through the peak voxel (largest |value| for a diverging colormap, else largest
value), side by side, in the cortex's colormap: voxels past the threshold coloured, the rest of
the mask grey (the structures' outlines), outside it the background. Neurological convention:
the subject's left on the left in axial and coronal planes, anterior on the right in sagittal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tribe_stream.surface.colors import ColorLimits, Colormap, map_colors

PLANES = ("axial", "coronal", "sagittal")
GAP = 4  # voxels between planes
MASK_GRAY = 0.42
BACKGROUND = (0.07, 0.07, 0.09, 1.0)  # scene.BACKGROUND


@dataclass(frozen=True)
class SlicePicture:
    """`rgba (H, W, 4)` uint8; `cut`, the voxel the planes pass through (its MNI mm in `mni`,
    its structure in `structure`); `columns`, each plane's (name, first column, width)."""

    rgba: np.ndarray
    cut: tuple[int, int, int]
    mni: tuple[float, float, float]
    structure: str
    peak: float
    columns: tuple[tuple[str, int, int], ...]

    def caption(self) -> str:
        x, y, z = self.mni
        return f"peak {self.peak:.2f} {self.structure} ({x:.0f}, {y:.0f}, {z:.0f} mm)"


def slice_picture(
    mask, values: np.ndarray, cmap: Colormap, limits: ColorLimits, *, scale: int = 1
) -> SlicePicture:
    """The three planes of `values` (`(n_voxels,)` in `mask`'s order: `spaces.VolumeMask`),
    each voxel `scale` pixels square."""
    v = np.asarray(values, np.float32).reshape(-1)
    if v.shape != (len(mask),):
        from tribe_stream.errors import InputError

        raise InputError(f"{v.shape[0]} values for a mask of {len(mask)} voxels")
    finite = np.where(np.isfinite(v), v, 0.0)
    peak = int(np.argmax(np.abs(finite) if cmap.diverging else finite))
    i, j, k = (int(c) for c in mask.ijk[peak])
    colors = map_colors(v, np.full(len(v), MASK_GRAY, np.float32), limits, cmap)
    X, Y, Z = mask.shape
    x, y, z = mask.ijk.T
    planes = []  # (rows, columns) of each plane's voxels: up is anterior (axial) or superior
    for rows, cols, on, row, col in (
        (Y, X, z == k, Y - 1 - y, x),  # axial: columns x, the subject's left first
        (Z, X, y == j, Z - 1 - z, x),  # coronal
        (Z, Y, x == i, Z - 1 - z, y),  # sagittal: columns y, posterior first
    ):
        p = np.empty((rows, cols, 4), np.float32)
        p[:] = BACKGROUND
        p[row[on], col[on]] = colors[on]
        planes.append(p)
    height = max(p.shape[0] for p in planes)
    width = sum(p.shape[1] for p in planes) + GAP * (len(planes) - 1)
    out = np.empty((height, width, 4), np.float32)
    out[:] = BACKGROUND
    columns, left = [], 0
    for name, p in zip(PLANES, planes, strict=True):
        top = (height - p.shape[0]) // 2
        out[top : top + p.shape[0], left : left + p.shape[1]] = p
        columns.append((name, left * scale, p.shape[1] * scale))
        left += p.shape[1] + GAP
    if scale > 1:
        out = out.repeat(scale, axis=0).repeat(scale, axis=1)
    mni = mask.affine[:3, :3] @ np.array([i, j, k], np.float64) + mask.affine[:3, 3]
    return SlicePicture(
        rgba=np.clip(np.rint(out * 255), 0, 255).astype(np.uint8),
        cut=(i, j, k),
        mni=(float(mni[0]), float(mni[1]), float(mni[2])),
        structure=mask.names[int(mask.label[peak])],
        peak=float(v[peak]),
        columns=tuple(columns),
    )


def voxel_pixel(picture: SlicePicture, mask, plane: str, ijk: tuple[int, int, int]) -> tuple:
    """Where voxel `ijk` (in the picture's plane `plane`) is drawn: (row, column) in pixels of
    a `scale` 1 picture (tests and labels)."""
    i, j, k = ijk
    X, Y, Z = mask.shape
    _, x0, _ = next(c for c in picture.columns if c[0] == plane)
    height = picture.rgba.shape[0]
    rows = {"axial": Y, "coronal": Z, "sagittal": Z}[plane]
    top = (height - rows) // 2
    row, col = {"axial": (Y - 1 - j, i), "coronal": (Z - 1 - k, i), "sagittal": (Z - 1 - k, j)}[
        plane
    ]
    return top + row, x0 + col
