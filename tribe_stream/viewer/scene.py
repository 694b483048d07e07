"""The picture both the live window and the offscreen renderer draw: panels, colorbar, text.

`BrainScene` owns a vispy SceneCanvas laid out by hand (no constraint solver): an optional
heads-up line on top, the cortex panels in a grid, a horizontal colorbar at the bottom, and once
a subcortical prediction comes (`show_volume`), a strip of its three slices below the cortex. With
`cached=True` (the live window) the cortex is drawn into a texture only when it changes and
frames cross-fade between such pictures (`compositor.py`); otherwise every frame draws it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from vispy import scene
from vispy.scene import Node
from vispy.visuals.transforms import STTransform

from tribe_stream.surface.colors import ColorLimits, Colormap, get_colormap, sulcal_gray
from tribe_stream.surface.mesh import BrainMesh, load_brain_mesh
from tribe_stream.surface.views import Panel, fit_camera, grid_shape, panels_for
from tribe_stream.viewer.brain_visual import Brain, BrainBuffers, lut_texture
from tribe_stream.viewer.compositor import Compositor

BACKGROUND = (0.07, 0.07, 0.09, 1.0)
TEXT_COLOR = (0.92, 0.92, 0.92, 1.0)
DIM_TEXT = (0.65, 0.65, 0.7, 1.0)


def _text(parent, text="", color=TEXT_COLOR, size=9, anchor=("left", "bottom"), **kw):
    """A text visual under `parent`, anchored at (x, y) `anchor`."""
    ax, ay = anchor
    return scene.visuals.Text(
        text, color=color, font_size=size, anchor_x=ax, anchor_y=ay, parent=parent, **kw
    )


@dataclass
class Layout:
    """Pixel heights of the strips around the panels."""

    hud: int = 0
    colorbar: int = 64
    label: bool = True


class ColorBar:
    """Horizontal colorbar: the colormap with the thresholded band in background grey, ticks."""

    def __init__(self, parent, lut_n: int = 256) -> None:
        self._n = lut_n
        self.root = parent = Node(parent=parent, name="colorbar")
        self.image = scene.visuals.Image(
            np.zeros((1, lut_n, 4), np.float32), parent=parent, interpolation="linear"
        )
        self.image.transform = STTransform()
        self.frame = scene.visuals.Rectangle(
            center=(0, 0), width=1, height=1, color=None, border_color=DIM_TEXT, parent=parent
        )
        self.ticks = [_text(parent, anchor=("center", "bottom")) for _ in range(5)]
        self.title = _text(parent, color=DIM_TEXT, anchor=("right", "center"))
        self._key: tuple | None = None
        self._rect = (0.0, 0.0, 1.0, 1.0)

    def place(self, x: float, y: float, w: float, h: float) -> None:
        """Put the bar at pixel rect (x, y, w, h), y measured down from the top."""
        self._rect = (x, y, w, h)
        self.image.transform.scale = (w / self._n, h, 1)
        self.image.transform.translate = (x, y, 0)
        self.frame.center = (x + w / 2, y + h / 2)
        self.frame.width = max(w, 1)
        self.frame.height = max(h, 1)
        self.title.pos = (x - 10, y + h / 2)
        self._key = None

    def update(self, cmap: Colormap, limits: ColorLimits, gray: float, title: str) -> None:
        key = (cmap.name, _fmt(limits.vmin), _fmt(limits.vmax), _fmt(limits.threshold), title)
        if key == self._key:
            return
        self._key = key
        x, y, w, h = self._rect
        span = max(limits.vmax - limits.vmin, 1e-12)
        vals = limits.vmin + (np.arange(self._n) + 0.5) / self._n * span
        rgba = cmap.lut[np.clip(np.rint((vals - limits.vmin) / span * 255), 0, 255).astype(int)]
        hidden = np.abs(vals) <= limits.threshold if cmap.diverging else vals <= limits.threshold
        rgba = rgba.copy()
        rgba[hidden, :3] = gray
        self.image.set_data(rgba[None].astype(np.float32))
        if cmap.diverging:
            marks = [limits.vmin, -limits.threshold, 0.0, limits.threshold, limits.vmax]
            if limits.threshold <= 0.08 * limits.vmax:
                marks = [limits.vmin, 0.0, limits.vmax]
        else:
            marks = [limits.vmin, limits.vmax]
        for t, m in zip(self.ticks, marks + [None] * (5 - len(marks)), strict=True):
            if m is None:
                t.text = ""
                continue
            t.text = _fmt(m)
            t.pos = (x + (m - limits.vmin) / span * w, y + h + 4)
        self.title.text = title


class RGBLegend:
    """Which channel is which modality, in the colorbar's place: a swatch and a name each."""

    COLORS = ((1.0, 0.0, 0.0, 1.0), (0.0, 1.0, 0.0, 1.0), (0.0, 0.0, 1.0, 1.0))

    def __init__(self, parent, names: tuple[str, ...] = ("text", "audio", "video")) -> None:
        self.root = Node(parent=parent, name="rgb-legend")
        self.swatches = [
            scene.visuals.Rectangle(
                center=(0, 0), width=1, height=1, color=c, border_color=DIM_TEXT, parent=self.root
            )
            for c in self.COLORS
        ]
        self.names = names
        self.labels = [_text(self.root, n, size=10, anchor=("left", "center")) for n in names]

    def mark_absent(self, absent) -> None:
        """Dim the names of the modalities that have no map, saying so."""
        for name, label in zip(self.names, self.labels, strict=True):
            label.text = f"{name} (absent)" if name in absent else name
            label.color = DIM_TEXT if name in absent else TEXT_COLOR

    def place(self, x: float, y: float, w: float, h: float) -> None:
        """Spread the three entries over the pixel rect (x, y, w, h), y down from the top."""
        step = w / len(self.swatches)
        for i, (box, label) in enumerate(zip(self.swatches, self.labels, strict=True)):
            left = x + i * step + step / 4
            box.center = (left + h / 2, y + h / 2)
            box.width = box.height = max(h, 1)
            label.pos = (left + h + 8, y + h / 2)


def _fmt(v: float) -> str:
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.2g}" if a < 10 else f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{v:.2g}"


class _Canvas(scene.SceneCanvas):
    """SceneCanvas whose frames can go through a Compositor (see BrainScene `cached`)."""

    owner: BrainScene | None = None

    def _draw_scene(self, bgcolor=None):
        owner = self.owner
        if owner is None or owner.compositor is None:
            return super()._draw_scene(bgcolor)
        owner.before_draw()
        bg = self._bgcolor if bgcolor is None else bgcolor
        owner.compositor.draw(self, bg, owner.layer_steps(), owner.draw_overlay)


class BrainScene:
    """A canvas showing the cortex in one or more views, with colorbar and optional HUD line."""

    def __init__(
        self,
        views: list[str] | tuple[str, ...] = ("both",),
        cmap: str = "cold_hot",
        size: tuple[int, int] = (1280, 800),
        show: bool = False,
        title: str = "tribe-stream",
        layout: Layout | None = None,
        inflation: float = 0.5,
        mesh: BrainMesh | None = None,
        colorbar_title: str = "z",
        cached: bool = False,
    ) -> None:
        self.mesh = mesh if mesh is not None else load_brain_mesh(inflation)
        self.gray = sulcal_gray(self.mesh.sulc)
        self.layout = layout or Layout()
        self.canvas = _Canvas(
            size=size, show=show, title=title, bgcolor=BACKGROUND, keys=None, resizable=True
        )
        self.canvas.owner = self
        self.compositor = Compositor() if cached else None
        self.buffers = BrainBuffers(self.mesh, self.gray)
        self.colorbar_title = colorbar_title
        # What changes with the map (panels, labels, colorbar, key help) vs. every frame (text).
        self.layer_root = Node(parent=self.canvas.scene, name="layer")
        self.live_root = Node(parent=self.canvas.scene, name="live")
        self._camera_key: tuple | None = None
        self.hud = _text(self.live_root, size=11, anchor=("left", "center"))
        self.banner = _text(self.live_root, size=20, anchor=("center", "center"), bold=True)
        self.footer = _text(self.layer_root, color=DIM_TEXT, size=8, anchor=("left", "top"))
        self.colorbar = ColorBar(self.layer_root)
        self.legend = RGBLegend(self.layer_root)
        self.legend.root.visible = False
        self.volume_root = Node(parent=self.layer_root, name="volume")
        self.volume_root.visible = False
        self.volume = scene.visuals.Image(
            np.zeros((1, 1, 4), np.uint8), parent=self.volume_root, interpolation="nearest"
        )
        self.volume.transform = STTransform()
        self.volume_caption = _text(self.volume_root, color=DIM_TEXT, anchor=("left", "bottom"))
        self._volume_shape = (1, 1)
        self.rgb = False
        self._boxes: list[tuple[scene.ViewBox, Panel, object, object]] = []
        self.cmap = get_colormap(cmap)
        self._lut = lut_texture(self.cmap)
        self.limits = ColorLimits(-1.0, 1.0, 0.0)
        self.active = False
        self.set_views(views)
        self.canvas.events.resize.connect(lambda event: self.relayout())

    # -- content ------------------------------------------------------------------------------

    def set_views(self, views: list[str] | tuple[str, ...]) -> None:
        """Replace the panels (keeps data, colormap and limits)."""
        panels = panels_for(views)
        for box, _, _, _ in self._boxes:
            box.parent = None
        self._boxes = []
        for panel in panels:
            box = scene.widgets.ViewBox(parent=self.layer_root, border_color=None)
            box.camera = scene.TurntableCamera(
                fov=0, azimuth=panel.azimuth, elevation=panel.elevation, up="+z"
            )
            # No per-fragment clipping (a `discard` defeats software GL's early depth test):
            # each camera is fitted to its box, so nothing spills over.
            box.scene.clip_children = False
            box.camera.depth_value = 400.0  # mm: tight depth range, no z-fighting at the rim
            brain = Brain(self.buffers, panel.hemi, parent=box.scene)
            brain.set_colors(self.cmap, self._lut)
            label = _text(box, panel.label if self.layout.label else "", color=DIM_TEXT)
            self._boxes.append((box, panel, brain, label))
        self.views = tuple(views)
        self.relayout()
        self.apply_state()

    def set_cmap(self, name: str) -> None:
        self.cmap = get_colormap(name)
        self._lut = lut_texture(self.cmap)
        for _, _, brain, _ in self._boxes:
            brain.set_colors(self.cmap, self._lut)
        self.apply_state()

    def show_map(self, values: np.ndarray, limits: ColorLimits, fade: bool = False) -> None:
        """Show `values` with `limits`; with a compositor, `fade` cross-fades into it."""
        self.buffers.set_values(values)
        self.limits = limits
        self.active = True
        self.rgb = False
        self.apply_state(fade=fade)

    def show_rgb(self, colors: np.ndarray, absent=(), fade: bool = False) -> None:
        """Show per-vertex colours `(N, 3)` in [0, 1] (`surface.colors.rgb_colors`) instead of
        a colormapped map; a legend of the three channels (those `absent` marked so) replaces
        the colorbar."""
        self.buffers.set_rgb(colors)
        self.legend.mark_absent(absent)
        self.active = True
        self.rgb = True
        self.apply_state(fade=fade)

    def set_state(self, limits: ColorLimits | None = None, active: bool | None = None) -> None:
        if limits is not None:
            self.limits = limits
        if active is not None:
            self.active = active
        self.apply_state()

    def apply_state(self, fade: bool = False) -> None:
        for _, _, brain, _ in self._boxes:
            brain.set_state(self.limits, self.active, self.rgb)
        if self.layout.colorbar:
            gray = float(np.median(self.gray))
            self.colorbar.update(self.cmap, self.limits, gray, self.colorbar_title)
        shown = bool(self.layout.colorbar) and self.active
        for bar, visible in ((self.colorbar, not self.rgb), (self.legend, self.rgb)):
            if bar.root.visible != (shown and visible):
                bar.root.visible = shown and visible
        if self.compositor is not None:
            self.compositor.invalidate(fade=fade)

    def show_volume(self, rgba: np.ndarray, caption: str) -> None:
        """Show a volume's slice picture (`viewer.slices.slice_picture`) below the cortex."""
        first = not self.volume_root.visible
        self.volume.set_data(np.ascontiguousarray(rgba))
        self.volume_caption.text = caption
        self._volume_shape = rgba.shape[:2]
        self.volume_root.visible = True
        if first:
            self.relayout()  # the cortex makes room
        else:
            self._place_volume()
        if self.compositor is not None:
            self.compositor.invalidate()

    def set_hud(self, text: str) -> None:
        self.hud.text = text

    def set_banner(self, text: str) -> None:
        self.banner.text = text

    def set_footer(self, text: str) -> None:
        self.footer.text = text
        if self.compositor is not None:
            self.compositor.invalidate()

    # -- drawing (cached mode) ----------------------------------------------------------------

    def before_draw(self) -> None:
        """Redraw the cortex layer if a camera moved (mouse) since the last frame."""
        key = tuple(
            (
                tuple(np.round(box.camera.center, 3)),
                round(box.camera.scale_factor, 4),
                box.camera.azimuth,
                box.camera.elevation,
                box.camera.roll,
            )
            for box, _, _, _ in self._boxes
        )
        if key != self._camera_key:
            self._camera_key = key
            if self.compositor is not None:
                self.compositor.invalidate()

    def _draw_subtree(self, node) -> None:
        """Draw `node` and its visible descendants into the bound framebuffer.

        (SceneCanvas.draw_visual always walks the whole scene; switching nodes' visibility
        between walks within one frame loses draws, so parts are walked directly instead.)
        """
        skip = None
        for n, start in self.canvas._generate_draw_order(node):
            if start:
                if skip is None:
                    if not n.visible:
                        skip = n
                    elif hasattr(n, "draw"):
                        n.draw()
            elif n is skip:
                skip = None

    def layer_steps(self) -> list:
        """Callables that draw the cached layer one panel at a time (the last one adds the
        colorbar and key help), for the compositor's progressive drawing."""
        boxes = [box for box, _, _, _ in self._boxes]
        decorations = [self.footer, self.colorbar.root, self.legend.root, self.volume_root]

        def step(i: int) -> None:
            self._draw_subtree(boxes[i])
            if i == len(boxes) - 1:
                for node in decorations:
                    self._draw_subtree(node)

        return [lambda i=i: step(i) for i in range(len(boxes))]

    def draw_overlay(self) -> None:
        """The heads-up line and banner, drawn every frame over the cached layer."""
        self._draw_subtree(self.live_root)

    # -- layout -------------------------------------------------------------------------------

    def relayout(self) -> None:
        """Place HUD, panels and colorbar for the current canvas size."""
        w, h = self.canvas.size
        top = self.layout.hud
        bottom = self.layout.colorbar
        if self.volume_root.visible:  # a third of the body for the slices
            bottom += int(max(h - top - bottom, 3) / 3)
        rows, cols = grid_shape(len(self._boxes))
        cell_w = w / cols
        cell_h = max(h - top - bottom, 1) / rows
        for i, (box, panel, _, label) in enumerate(self._boxes):
            r, c = divmod(i, cols)
            box.pos = (c * cell_w, top + r * cell_h)
            box.size = (cell_w, cell_h)
            # a panel's name in its outer top corner: the last column's at the right, so none
            # sits at the middle of the picture, where the banner is ("waiting for stream")
            if cols > 1 and c == cols - 1:
                label.anchors = ("right", "bottom")
                label.pos = (cell_w - 8, 6)
            else:
                label.anchors = ("left", "bottom")
                label.pos = (8, 6)
            rows_v = self.mesh.vertices
            if panel.hemi != "both":
                rows_v = rows_v[self.mesh.hemi_vertices(panel.hemi)]
            centre, scale = fit_camera(rows_v, panel, cell_w / cell_h)
            box.camera.center = centre
            box.camera.scale_factor = scale
        self.hud.pos = (12, top / 2)
        self.banner.pos = (w / 2, top + (h - top - bottom) / 2)
        self.footer.pos = (10, h - 6)  # anchor "top" in these y-down pixels: grows upward
        if self.layout.colorbar:
            bar_w, bar_y = min(0.5 * w, 520), h - self.layout.colorbar + 10
            self.colorbar.place((w - bar_w) / 2, bar_y, bar_w, 14)
            self.legend.place((w - bar_w) / 2, bar_y, bar_w, 14)
        self.colorbar._key = None
        self._place_volume()
        self.apply_state()

    def _place_volume(self) -> None:
        """Fit the slice picture into the strip between the cortex and the colorbar."""
        if not self.volume_root.visible:
            return
        w, h = self.canvas.size
        strip_top = (
            h - self.layout.colorbar - int(max(h - self.layout.hud - self.layout.colorbar, 3) / 3)
        )
        strip_h = max(h - self.layout.colorbar - strip_top - 18, 1)
        ph, pw = self._volume_shape
        scale = min(strip_h / ph, (w - 20) / pw)
        x = (w - pw * scale) / 2
        self.volume.transform.scale = (scale, scale, 1)
        self.volume.transform.translate = (x, strip_top + 16, 0)
        self.volume_caption.pos = (x, strip_top + 1)  # "bottom" grows down in y-down pixels

    # -- output -------------------------------------------------------------------------------

    def render(self) -> np.ndarray:
        """The canvas as an RGBA uint8 array (H, W, 4), drawn afresh offscreen.

        The cortex is drawn directly (not through the compositor's cached textures), so a
        screenshot taken mid-fade shows the newest map.
        """
        comp, self.compositor = self.compositor, None
        try:
            return np.asarray(self.canvas.render(alpha=True))
        finally:
            self.compositor = comp

    def close(self) -> None:
        self.canvas.close()
