"""The live cortical viewer: subscribes latest-only and fades each new prediction in.

The window runs its own paced loop: each frame it drains the subscriber without waiting,
refreshes the heads-up line and draws (the cortex only when a prediction arrives,
`compositor.py`). A slow window only ever sees the newest prediction; it never holds up the stream.
A stream with a subcortical head (`tribe.subcortical`) also gets its three slices below the cortex
(`slices.py`, the atlas from our cache or `$FSLDIR`), in the same colormap on their own limits.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tribe_stream.surface.colors import COLORMAPS, ColorLimits, robust_limits
from tribe_stream.surface.views import VIEWS
from tribe_stream.viewer.hud import end_to_end_latency, hud_line

log = logging.getLogger(__name__)

VIEW_KEYS = {str(i + 1): name for i, name in enumerate(VIEWS)}
"""'1'..'6' -> left, right, medial, dorsal, ventral, both."""
VIEW_KEYS.update({"l": "left", "r": "right", "m": "medial", "d": "dorsal", "v": "ventral"})
VIEW_KEYS["b"] = "both"
HELP = "keys: 1-6 or l r m d v b views, c colormap, [ ] threshold, s screenshot, h help, q quit"
TOPICS = ("prediction", "subcortical")


@dataclass
class ViewerOptions:
    """Settings of the live window (the `view` command's flags)."""

    url: str
    views: tuple[str, ...] = ("both",)
    cmap: str = "cold_hot"
    size: tuple[int, int] = (1280, 800)
    max_fps: float = 60.0
    transition_s: float = 0.5
    """Cross-fade time from one prediction to the next (0 = jump)."""
    limits_tau_s: float = 5.0
    """Time constant of the colour-limit smoothing, so colours stay comparable over seconds."""
    threshold_pct: float = 50.0
    vmax: float | None = None
    stale_after_s: float = 5.0
    duration_s: float | None = None
    cached: bool = True
    """Draw the cortex only when it changes and blend cached pictures in between (fast on
    software GL); False redraws the cortex every frame and jumps between maps (the baseline)."""
    screenshot_dir: Path = field(default_factory=Path.cwd)


@dataclass
class FrameStats:
    """Frame and message counts, for the HUD and for tools/bench_viewer.py."""

    frames: int = 0
    received: int = 0
    started: float = field(default_factory=time.perf_counter)
    frame_times: list[float] = field(default_factory=list)
    passed_over: int = 0
    """Predictions replaced by a newer one before the window could show them (latest-only)."""
    display_latency: list[float] = field(default_factory=list)
    """Seconds from a message's arrival to the first frame that shows it."""
    end_to_end: list[float] = field(default_factory=list)
    """Seconds from the end of each shown prediction's stimulus second to its first frame."""

    def fps(self, window_s: float = 1.0) -> float:
        now = time.perf_counter()
        recent = [t for t in self.frame_times[-240:] if now - t <= window_s]
        return len(recent) / window_s


class LiveViewer:
    """A window on a prediction stream. `run()` returns when the window closes or time is up."""

    def __init__(self, options: ViewerOptions, subscriber=None) -> None:
        from vispy import app

        from tribe_stream.viewer.scene import BrainScene, Layout

        self.opt = options
        self._show_help = True
        self.app = app.use_app()
        if subscriber is None:
            from tribe_stream.client import Subscriber

            subscriber = Subscriber(options.url, latest_only=True, topics=TOPICS)
        if hasattr(subscriber, "subscribe"):  # the subcortical head too, where a stream has one
            subscriber.subscribe(*TOPICS)
        self.sub = subscriber
        self.scene = BrainScene(
            views=options.views,
            cmap=options.cmap,
            size=options.size,
            show=True,
            title=f"tribe-stream view {options.url}",
            layout=Layout(hud=34, colorbar=72),
            cached=options.cached,
        )
        self.compositor = self.scene.compositor
        if self.compositor is not None:
            self.compositor.transition_s = options.transition_s
            self.compositor.on_complete = self._on_layer_complete
        self._update_footer()
        self.canvas = self.scene.canvas
        self.canvas.events.key_press.connect(self._on_key)
        self.canvas.events.draw.connect(self._on_draw, position="last")
        self.canvas.events.close.connect(lambda event: self.stop())
        self.stats = FrameStats()
        self.header: dict | None = None
        self.latency: tuple[float | None, str] = (None, "")
        self.last_arrival: float | None = None
        self._latest: np.ndarray | None = None
        self._intervals: list[float] = []
        self._limits: ColorLimits | None = None
        self._pending = None
        self._volume_msg = None  # the newest subcortical prediction not yet drawn
        self._mask = None  # its atlas (spaces.VolumeMask), read at the first
        self.volume_header: dict | None = None
        self._pending_arrival: float | None = None
        self._arrival_shown: float | None = None
        self._awaiting_frame = False
        self._map_waiting = False
        self._last_limits_time: float | None = None
        self._hud_time = 0.0
        self._stop = False
        self._released = False
        self._state = ""
        self._set_state("waiting")

    # -- stream -----------------------------------------------------------------------------

    def poll(self) -> bool:
        """Take the newest prediction waiting on the socket, and show it as soon as the
        compositor is free (a newer one replaces one still waiting). True if one was shown."""
        while True:
            msg = self.sub.recv(timeout=0)
            if msg is None:
                break
            if getattr(msg, "topic", "prediction") == "subcortical":
                self._volume_msg = msg
            elif getattr(msg, "values", None) is not None:
                if self._pending is not None:
                    self.stats.passed_over += 1
                self._pending = msg
                self._pending_arrival = time.perf_counter()
        if self._volume_msg is not None and not (self.compositor and self.compositor.busy):
            self._show_volume(self._volume_msg)
            self._volume_msg = None
        if self._pending is None or (self.compositor is not None and self.compositor.busy):
            return False
        msg, self._pending = self._pending, None
        now = time.perf_counter()
        if self.last_arrival is not None:
            self._intervals = [*self._intervals[-9:], now - self.last_arrival]
        self.stats.received += 1
        self.header = dict(msg.header)
        self.last_arrival = now
        self._arrival_shown = self._pending_arrival
        self._show(np.asarray(msg.values, dtype=np.float32), now)
        self._map_waiting = True
        if self.compositor is None:
            self._on_layer_complete()
        return True

    def _show_volume(self, msg) -> None:
        """Draw a subcortical prediction's slices (skipped, said once, without its atlas)."""
        from tribe_stream.errors import InputError
        from tribe_stream.spaces import subcortical_mask
        from tribe_stream.viewer.slices import slice_picture

        values = np.asarray(msg.values, dtype=np.float32)
        if self._mask is None:
            try:
                self._mask = subcortical_mask()
            except InputError as exc:
                self._mask = False
                log.warning("subcortical predictions not drawn: %s", exc)
        if not self._mask or len(self._mask) != len(values):
            if self._mask:
                log.warning("subcortical: %d values, the atlas here has %d voxels: not drawn",
                            len(values), len(self._mask))  # fmt: skip
                self._mask = False
            return
        div = self.scene.cmap.diverging
        limits = robust_limits(values, div, threshold_percentile=self.opt.threshold_pct)
        if self.opt.vmax is not None:
            limits = _fixed_vmax(limits, self.opt.vmax, div)
        pic = slice_picture(self._mask, values, self.scene.cmap, limits)
        self.volume_header = dict(msg.header)
        caption = (
            f"subcortical  second {msg.header.get('second')}  |  {pic.caption()}  |  "
            f"own scale ±{max(abs(limits.vmin), abs(limits.vmax)):.2g}"
        )
        self.scene.show_volume(pic.rgba, caption)

    def _on_layer_complete(self) -> None:
        """The compositor finished a picture: a new map in it is on screen from this frame."""
        if self._map_waiting:
            self._map_waiting = False
            self._awaiting_frame = True

    def _show(self, values: np.ndarray, now: float) -> None:
        """Fade into a new map; fades never outlast the gap between predictions."""
        self._latest = values
        if self._intervals and self.compositor is not None:
            gap = float(np.median(self._intervals))
            self.compositor.transition_s = min(self.opt.transition_s, 0.8 * gap)
        target = self._target_limits(values)
        if self._limits is None:
            self._limits = target
        else:
            dt = now - (self._last_limits_time or now)
            self._limits = self._limits.blend(target, 1 - math.exp(-dt / self.opt.limits_tau_s))
        self._last_limits_time = now
        self.scene.show_map(values, self._limits, fade=True)
        self._set_state("receiving")

    # -- per frame ---------------------------------------------------------------------------

    def update(self) -> None:
        """Advance animation and text for this frame, and ask for a redraw."""
        now = time.perf_counter()
        self.poll()
        status = getattr(self.sub, "status", None)
        if self.last_arrival is None:
            self._set_state("connected" if status else "waiting")
        elif now - self.last_arrival > self.opt.stale_after_s:
            self._set_state("stale")
        banner = self._banner(now)
        if banner != self.scene.banner.text:
            self.scene.set_banner(banner)
        if now - self._hud_time >= 0.25:
            # Text layout costs a little: refresh the line at 4 Hz and on each prediction.
            self._hud_time = now
            self.scene.set_hud(
                hud_line(
                    self.header,
                    self.latency,
                    lost=int(getattr(self.sub, "missed", 0) or 0),
                    skipped=int(getattr(self.sub, "skipped", 0) or 0) + self.stats.passed_over,
                    fps=self.stats.fps(),
                    status=status,
                )
            )
        self.canvas.update()

    def _banner(self, now: float) -> str:
        if self._state == "waiting":
            return f"waiting for stream\n{self.opt.url}"
        if self._state == "connected":
            return f"connected, waiting for the first prediction\n{self.opt.url}"
        if self._state == "stale":
            return f"stream silent for {now - (self.last_arrival or now):.0f} s"
        return ""

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            print(f"viewer: {state} ({self.opt.url})", flush=True)

    def _on_draw(self, event) -> None:
        t = time.perf_counter()
        self.stats.frames += 1
        self.stats.frame_times.append(t)
        if len(self.stats.frame_times) > 4096:
            del self.stats.frame_times[:2048]
        if self._awaiting_frame and self._arrival_shown is not None:
            self._awaiting_frame = False
            self.stats.display_latency.append(t - self._arrival_shown)
            if self.header is not None:
                self.latency = end_to_end_latency(self.header, time.time())
                if self.latency[0] is not None:
                    self.stats.end_to_end.append(self.latency[0])

    # -- input -------------------------------------------------------------------------------

    def _on_key(self, event) -> None:
        text = (event.text or "").lower() if event.text else ""
        name = event.key.name if event.key is not None else ""
        if name == "Escape" or text == "q":
            self.stop()
        elif text in VIEW_KEYS:
            self.scene.set_views((VIEW_KEYS[text],))
            self._update_footer()
        elif text == "c":
            step = -1 if "Shift" in [m.name for m in event.modifiers] else 1
            names = list(COLORMAPS)
            self.scene.set_cmap(names[(names.index(self.scene.cmap.name) + step) % len(names)])
            self._refit_limits()
            self._update_footer()
        elif text in ("[", "]"):
            delta = -10.0 if text == "[" else 10.0
            self.opt.threshold_pct = float(min(max(self.opt.threshold_pct + delta, 0.0), 95.0))
            self._refit_limits()
            self._update_footer()
        elif text == "s":
            self.screenshot()
        elif text == "h":
            self._show_help = not self._show_help
            self._update_footer()

    def _update_footer(self) -> None:
        state = (
            f"{'+'.join(self.scene.views)}   {self.scene.cmap.name}   "
            f"threshold p{self.opt.threshold_pct:.0f}"
        )
        self.scene.set_footer(f"{state}      {HELP}" if self._show_help else state)

    def _refit_limits(self) -> None:
        """Limits for the current map right away (after a colormap or threshold change)."""
        if self._latest is not None:
            self._limits = self._target_limits(self._latest)
            self.scene.set_state(limits=self._limits)

    def _target_limits(self, values: np.ndarray) -> ColorLimits:
        """This map's own limits (`--vmax` fixes the top)."""
        div = self.scene.cmap.diverging
        limits = robust_limits(values, div, threshold_percentile=self.opt.threshold_pct)
        return limits if self.opt.vmax is None else _fixed_vmax(limits, self.opt.vmax, div)

    def screenshot(self, path: str | Path | None = None) -> Path:
        """Save what the window shows as a PNG; returns its path."""
        from tribe_stream.viewer.render import save_png

        if path is None:
            path = self.opt.screenshot_dir / f"tribe-stream-{time.strftime('%Y%m%d-%H%M%S')}.png"
        save_png(path, self.scene.render())
        print(f"viewer: screenshot {path}", flush=True)
        return Path(path)

    # -- loop --------------------------------------------------------------------------------

    def run(self) -> FrameStats:
        """Paced loop: poll, update, draw, sleep until the next frame is due."""
        period = 1.0 / self.opt.max_fps if self.opt.max_fps > 0 else 0.0
        end = None if self.opt.duration_s is None else time.perf_counter() + self.opt.duration_s
        next_frame = time.perf_counter()
        try:
            while not self._stop:
                now = time.perf_counter()
                if end is not None and now >= end:
                    break
                self.update()
                self.app.process_events()
                next_frame += period
                delay = next_frame - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_frame = time.perf_counter()  # late: do not try to catch up in a burst
        finally:
            self.close()
        return self.stats

    def stop(self) -> None:
        """Ask `run()` to return after the current frame (safe from a signal handler)."""
        self._stop = True

    def close(self) -> None:
        """Close the window and the subscriber (once)."""
        self._stop = True
        if self._released:
            return
        self._released = True
        self.canvas.close()
        self.sub.close()


_fixed_vmax = ColorLimits.with_vmax
