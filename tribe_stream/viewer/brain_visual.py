"""The cortex as a vispy visual: colour mapping, threshold and lighting run in the shader.

All panels share one set of GPU buffers (`BrainBuffers`): a new prediction uploads 20,484 floats
once. The fragment shader mirrors `tribe_stream.surface.colors.map_colors`; in RGB mode it shows
per-vertex colours made on the CPU instead (`tribe_stream.surface.colors.rgb_colors`).
"""

from __future__ import annotations

import numpy as np
from vispy import gloo
from vispy.scene.visuals import create_visual_node
from vispy.visuals import Visual

from tribe_stream.surface.colors import ColorLimits, Colormap
from tribe_stream.surface.mesh import BrainMesh

_VERT = """
attribute vec3 a_position;
attribute vec3 a_normal;
attribute float a_gray;
attribute float a_value;
attribute vec3 a_rgb;
uniform vec3 u_light;
uniform vec3 u_eye;
varying float v_gray;
varying float v_value;
varying vec3 v_rgb;
varying float v_shade;
varying float v_specular;

void main() {
    // Lighting per vertex (Gouraud): a CPU rasteriser pays per pixel, and at fsaverage5 density
    // the difference from per-pixel lighting is not visible.
    vec3 n = a_normal;
    if (dot(n, u_eye) < 0.0) n = -n;
    float diffuse = max(dot(n, u_light), 0.0);
    float fill = max(dot(n, u_eye), 0.0);
    vec3 h = normalize(u_light + u_eye);
    v_shade = 0.28 + 0.55 * diffuse + 0.25 * fill;
    v_specular = pow(max(dot(n, h), 0.0), 32.0) * 0.12;
    v_gray = a_gray;
    v_value = a_value;
    v_rgb = a_rgb;
    gl_Position = $transform(vec4(a_position, 1.0));
}
"""

_FRAG = """
uniform sampler2D u_lut;
uniform float u_vmin;
uniform float u_vmax;
uniform float u_threshold;
uniform float u_diverging;
uniform float u_active;
uniform float u_rgb;
varying float v_gray;
varying float v_value;
varying vec3 v_rgb;
varying float v_shade;
varying float v_specular;

void main() {
    vec3 base = vec3(v_gray);
    float v = v_value;
    bool shown = u_active > 0.5 && u_rgb < 0.5
        && ((u_diverging > 0.5) ? (abs(v) > u_threshold) : (v > u_threshold));
    if (u_active > 0.5 && u_rgb > 0.5) {
        base = v_rgb;
    } else if (shown) {
        float f = clamp((v - u_vmin) / max(u_vmax - u_vmin, 1e-12), 0.0, 1.0);
        base = texture2D(u_lut, vec2(f * (255.0 / 256.0) + 0.5 / 256.0, 0.5)).rgb;
    }
    gl_FragColor = vec4(min(base * v_shade + v_specular, vec3(1.0)), 1.0);
}
"""


class BrainBuffers:
    """GPU buffers of the mesh and its value map, shared by all panels."""

    def __init__(self, mesh: BrainMesh, gray: np.ndarray) -> None:
        self.mesh = mesh
        self.position = gloo.VertexBuffer(mesh.vertices.astype(np.float32))
        self.normal = gloo.VertexBuffer(mesh.normals.astype(np.float32))
        self.gray = gloo.VertexBuffer(np.asarray(gray, dtype=np.float32).reshape(-1, 1))
        self.value = gloo.VertexBuffer(np.zeros((mesh.n_vertices, 1), dtype=np.float32))
        self.rgb = gloo.VertexBuffer(np.zeros((mesh.n_vertices, 3), dtype=np.float32))
        self.index = {
            hemi: gloo.IndexBuffer(np.ascontiguousarray(mesh.faces[rows]))
            for hemi, rows in mesh.hemi_faces.items()
        }

    def set_values(self, values: np.ndarray) -> None:
        """Upload a map (NaN and inf become 0, which the strict threshold test hides)."""
        v = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        self.value.set_data(v.reshape(-1, 1))

    def set_rgb(self, colors: np.ndarray) -> None:
        """Upload per-vertex colours `(N, 3)` in [0, 1] (shown in RGB mode)."""
        c = np.clip(np.nan_to_num(np.asarray(colors, dtype=np.float32)), 0.0, 1.0)
        self.rgb.set_data(np.ascontiguousarray(c.reshape(-1, 3)))


class BrainVisual(Visual):
    """One hemisphere (or both) of the shared mesh, shaded with a headlight from the camera."""

    def __init__(self, buffers: BrainBuffers, hemi: str = "both") -> None:
        Visual.__init__(self, vcode=_VERT, fcode=_FRAG)
        self._buffers = buffers
        self._lo, self._hi = buffers.mesh.bounds(hemi)
        prog = self.shared_program
        prog["a_position"] = buffers.position
        prog["a_normal"] = buffers.normal
        prog["a_gray"] = buffers.gray
        prog["a_value"] = buffers.value
        prog["a_rgb"] = buffers.rgb
        prog["u_active"] = 0.0
        prog["u_rgb"] = 0.0
        prog["u_light"] = (0.0, 0.0, 1.0)
        prog["u_eye"] = (0.0, 0.0, 1.0)
        self._index_buffer = buffers.index[hemi]
        self._draw_mode = "triangles"
        self.set_gl_state("opaque", depth_test=True, cull_face=True)
        # FreeSurfer faces wind counter-clockwise seen from outside: skip the hidden half early.

    def set_colors(self, cmap: Colormap, lut_texture: gloo.Texture2D) -> None:
        self.shared_program["u_lut"] = lut_texture
        self.shared_program["u_diverging"] = 1.0 if cmap.diverging else 0.0

    def set_state(self, limits: ColorLimits, active: bool, rgb: bool = False) -> None:
        """Colour limits, whether data is shown (else the sulcal background only), and whether
        as the per-vertex colours (`BrainBuffers.set_rgb`) rather than through the colormap."""
        prog = self.shared_program
        prog["u_rgb"] = 1.0 if rgb else 0.0
        prog["u_vmin"] = float(limits.vmin)
        prog["u_vmax"] = float(limits.vmax)
        prog["u_threshold"] = float(limits.threshold)
        prog["u_active"] = 1.0 if active else 0.0

    def _prepare_transforms(self, view) -> None:
        view.view_program.vert["transform"] = view.get_transform()

    def _prepare_draw(self, view) -> None:
        # Light from the camera, raised up and to the left, in the mesh's own coordinates.
        tr = view.get_transform("render", "visual")
        pts = tr.map(np.array([[0, 0, 0, 1], [0, 0, -1, 1], [1, 0, 0, 1], [0, 1, 0, 1]], float))
        pts = pts[:, :3] / pts[:, 3:]
        eye, right, up = (_unit(pts[i] - pts[0]) for i in (1, 2, 3))
        self.shared_program["u_eye"] = tuple(eye)
        self.shared_program["u_light"] = tuple(_unit(eye + 0.55 * up - 0.35 * right))

    def _compute_bounds(self, axis: int, view) -> tuple[float, float]:
        return float(self._lo[axis]), float(self._hi[axis])


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else np.array([0.0, 0.0, 1.0])


Brain = create_visual_node(BrainVisual)
"""Scene-graph node of BrainVisual."""


def lut_texture(cmap: Colormap) -> gloo.Texture2D:
    """The colormap as a 1 x 256 RGBA texture with linear filtering."""
    data = np.ascontiguousarray(cmap.lut[None, :, :].astype(np.float32))
    return gloo.Texture2D(
        data, interpolation="linear", wrapping="clamp_to_edge", internalformat="rgba32f"
    )
