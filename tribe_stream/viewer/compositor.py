"""Cached cortex layer with image-space cross-fades, so frames stay cheap on software GL.

Drawing the cortex costs tens of milliseconds on a CPU rasteriser (Mesa llvmpipe), so it is
drawn into a texture only when the picture changes; each frame blends the previous picture into
the new one and draws the heads-up text on top. A new prediction is drawn progressively, one
panel per frame, into a spare texture, then faded into; changes the user makes (view, colormap,
camera) are drawn at once. Four textures rotate: the two of the running fade, the one being
drawn, and a spare that captures a half-faded picture when a new one completes mid-fade.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
from vispy import gloo

_VERT = """
attribute vec2 a_pos;
varying vec2 v_uv;
void main() {
    v_uv = a_pos * 0.5 + 0.5;
    gl_Position = vec4(a_pos, 0.0, 1.0);
}
"""

_COPY = """
uniform sampler2D u_to;
varying vec2 v_uv;
void main() {
    gl_FragColor = texture2D(u_to, v_uv);
}
"""

_BLEND = """
uniform sampler2D u_from;
uniform sampler2D u_to;
uniform float u_mix;
varying vec2 v_uv;
void main() {
    gl_FragColor = mix(texture2D(u_from, v_uv), texture2D(u_to, v_uv), u_mix);
}
"""

N_TEXTURES = 4


def smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


class Compositor:
    """Owns the layer textures and the fade clock of one canvas."""

    def __init__(self, transition_s: float = 0.5) -> None:
        corners = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]], np.float32)
        self.blend = gloo.Program(_VERT, _BLEND)
        self.blend["a_pos"] = corners
        self.copy = gloo.Program(_VERT, _COPY)  # half the texture reads when not fading
        self.copy["a_pos"] = corners
        self._shape: tuple[int, int] | None = None
        self._tex: list[gloo.Texture2D] = []
        self._fbo: list[gloo.FrameBuffer] = []
        self.src = 0
        self.dst = 0
        self.target: int | None = None
        self._step = 0
        self.transition_s = transition_s
        self.fade_start = -1e9
        self._full = True
        self._progressive = False
        self.layer_renders = 0
        self.on_complete: Callable[[], None] | None = None

    # -- state --------------------------------------------------------------------------------

    def mix(self, now: float | None = None) -> float:
        if self.transition_s <= 0:
            return 1.0
        now = time.perf_counter() if now is None else now
        return smoothstep((now - self.fade_start) / self.transition_s)

    @property
    def busy(self) -> bool:
        """A new picture is being drawn (or waits to be): hold further data until it is done."""
        return self._progressive or self.target is not None

    def invalidate(self, fade: bool = False) -> None:
        """The picture changed. `fade`: a new map, drawn progressively then faded into;
        otherwise (view, colours, camera) redraw everything on the next frame, no fade."""
        if fade:
            self._progressive = True
        else:
            self._full = True

    # -- GL -----------------------------------------------------------------------------------

    def _ensure(self, shape: tuple[int, int]) -> None:
        if shape == self._shape:
            return
        h, w = shape
        self._tex = [
            gloo.Texture2D(shape=(h, w, 4), format="rgba", interpolation="nearest")
            for _ in range(N_TEXTURES)
        ]
        self._fbo = [gloo.FrameBuffer(color=t, depth=gloo.RenderBuffer((h, w))) for t in self._tex]
        for fbo in self._fbo:
            # gloo binds a framebuffer while attaching its buffers and leaves it bound; bind and
            # release each now, or the queued attach would redirect a later draw into it.
            fbo.activate()
            fbo.deactivate()
        self._shape = shape
        self.src = self.dst = 0
        self.target = None
        self._full = True
        self.fade_start = -1e9

    def _into(self, canvas, index: int, draw: Callable[[], None]) -> None:
        canvas.push_fbo(self._fbo[index], (0, 0), canvas.size)
        try:
            draw()
        finally:
            canvas.pop_fbo()

    def _quad(self, a: int, b: int, mix: float) -> None:
        gloo.set_state(depth_test=False, blend=False, cull_face=False)
        if mix >= 1.0 or a == b:
            self.copy["u_to"] = self._tex[b]
            self.copy.draw("triangle_strip")
            return
        self.blend["u_from"] = self._tex[a]
        self.blend["u_to"] = self._tex[b]
        self.blend["u_mix"] = float(mix)
        self.blend.draw("triangle_strip")

    def _free(self, *used: int | None) -> int:
        return next(i for i in range(N_TEXTURES) if i not in used)

    def _complete(self, canvas, fade: bool, now: float) -> None:
        target = self.target
        assert target is not None
        if fade:
            m = self.mix(now)
            if m >= 1.0:
                self.src = self.dst
            elif m > 0.0:  # capture the half-faded picture and fade on from it
                spare = self._free(self.src, self.dst, target)
                a, b = self.src, self.dst
                self._into(canvas, spare, lambda: self._quad(a, b, m))
                self.src = spare
            self.dst = target
            self.fade_start = now
        else:
            self.src = self.dst = target
            self.fade_start = -1e9
        self.target = None
        self.layer_renders += 1
        if self.on_complete is not None:
            self.on_complete()

    def draw(
        self,
        canvas,
        bgcolor,
        layer_steps: Sequence[Callable[[], None]],
        draw_overlay: Callable[[], None],
    ) -> None:
        """Draw one frame: advance the layer drawing, blend, then the overlay on top.

        `layer_steps` draw the layer part by part into the bound framebuffer (all of them make
        the whole picture); `draw_overlay` draws what changes every frame.
        """
        w, h = canvas.physical_size
        self._ensure((max(h, 1), max(w, 1)))
        now = time.perf_counter()

        def clear() -> None:
            canvas.context.clear(color=bgcolor, depth=True)

        if self._full:
            # Everything now, no fade; a progressive drawing in flight restarts after it.
            self._full = False
            self._progressive = self._progressive or self.target is not None
            self.target = self._free(self.src, self.dst)
            self._into(canvas, self.target, lambda: (clear(), *(s() for s in layer_steps)))
            self._complete(canvas, fade=False, now=now)
        elif self.target is None and self._progressive:
            self._progressive = False
            self.target = self._free(self.src, self.dst)
            self._step = 0
        if self.target is not None:
            step = layer_steps[self._step]
            first = self._step == 0
            self._into(canvas, self.target, lambda: (first and clear(), step()))
            self._step += 1
            if self._step >= len(layer_steps):
                self._complete(canvas, fade=True, now=now)
        clear()
        self._quad(self.src, self.dst, self.mix(now))
        draw_overlay()
