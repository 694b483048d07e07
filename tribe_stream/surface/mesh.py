"""fsaverage5 cortical meshes from nilearn's bundled data, half-inflated, with sulcal depth.

Nothing is downloaded: nilearn ships fsaverage5 (pial, inflated, sulcal depth) inside its wheel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tribe_stream import N_VERTICES, N_VERTICES_HEMI

HEMISPHERES = ("left", "right")


@dataclass(frozen=True)
class BrainMesh:
    """Both hemispheres as one mesh: left vertices 0..10241, right 10242..20483 (model order).

    `vertices` (20484, 3) float32 in millimetres (RAS), `normals` unit vectors, `faces`
    (40960, 3) uint32 indexing the joint vertex array (left faces first), `sulc` the sulcal depth
    (positive in sulci), `hemi_faces` the face rows of each hemisphere.
    """

    vertices: np.ndarray
    normals: np.ndarray
    faces: np.ndarray
    sulc: np.ndarray
    hemi_faces: dict[str, slice]

    @property
    def n_vertices(self) -> int:
        return len(self.vertices)

    def hemi_vertices(self, hemi: str) -> slice:
        """Vertex rows of `hemi` ("left" or "right")."""
        return slice(0, N_VERTICES_HEMI) if hemi == "left" else slice(N_VERTICES_HEMI, N_VERTICES)

    def bounds(self, hemi: str = "both") -> tuple[np.ndarray, np.ndarray]:
        """(min, max) corners of the vertices of `hemi` ("left", "right" or "both")."""
        v = self.vertices if hemi == "both" else self.vertices[self.hemi_vertices(hemi)]
        return v.min(0), v.max(0)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (outward for FreeSurfer's counter-clockwise faces)."""
    v = vertices.astype(np.float64)
    tri = v[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(v)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_n)
    norm = np.linalg.norm(normals, axis=1, keepdims=True)
    return (normals / np.maximum(norm, 1e-12)).astype(np.float32)


def _aligned_inflated(pial: np.ndarray, inflated: np.ndarray, hemi: str) -> np.ndarray:
    """The inflated surface moved onto the pial one: same medial edge, same y/z centre.

    FreeSurfer centres each inflated hemisphere on its own origin, so unmoved they overlap.
    """
    out = inflated.astype(np.float64).copy()
    centre = (pial.min(0) + pial.max(0)) / 2
    out[:, 1:] += centre[1:] - (out.min(0)[1:] + out.max(0)[1:]) / 2
    edge = np.max if hemi == "left" else np.min  # the medial edge
    out[:, 0] += edge(pial[:, 0]) - edge(out[:, 0])
    return out


@lru_cache(maxsize=4)
def load_brain_mesh(inflation: float = 0.5, gap_mm: float = 8.0) -> BrainMesh:
    """fsaverage5 both hemispheres, `inflation` of the way from pial (0) to inflated (1).

    The hemispheres are pulled `gap_mm` apart at the midline so that dorsal and ventral views
    show a clean fissure whatever the inflation.
    """
    if not 0.0 <= inflation <= 1.0:
        from tribe_stream.errors import InputError

        raise InputError(f"inflation must be between 0 (pial) and 1 (inflated), got {inflation}")
    from nilearn import datasets

    meshes = datasets.load_fsaverage("fsaverage5")
    sulc_img = datasets.load_fsaverage_data("fsaverage5", data_type="sulcal")
    verts, faces, sulc = [], [], []
    offset = 0
    for hemi in HEMISPHERES:
        pial = np.asarray(meshes["pial"].parts[hemi].coordinates, dtype=np.float64)
        infl = np.asarray(meshes["inflated"].parts[hemi].coordinates, dtype=np.float64)
        v = (1 - inflation) * pial + inflation * _aligned_inflated(pial, infl, hemi)
        # Open the midline: left hemisphere's medial edge at -gap/2, right's at +gap/2.
        v[:, 0] += -gap_mm / 2 - v[:, 0].max() if hemi == "left" else gap_mm / 2 - v[:, 0].min()
        f = np.asarray(meshes["pial"].parts[hemi].faces, dtype=np.int64)
        verts.append(v)
        faces.append(f + offset)
        sulc.append(np.asarray(sulc_img.data.parts[hemi], dtype=np.float32).ravel())
        offset += len(v)
    vertices = np.concatenate(verts).astype(np.float32)
    all_faces = np.concatenate(faces)
    if len(vertices) != N_VERTICES:
        raise RuntimeError(f"fsaverage5 has {len(vertices)} vertices, expected {N_VERTICES}")
    n_left = len(faces[0])
    return BrainMesh(
        vertices=vertices,
        normals=vertex_normals(vertices, all_faces),
        faces=all_faces.astype(np.uint32),
        sulc=np.concatenate(sulc),
        hemi_faces={
            "left": slice(0, n_left),
            "right": slice(n_left, len(all_faces)),
            "both": slice(0, len(all_faces)),
        },
    )
