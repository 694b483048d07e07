"""Choosing a vispy GL backend: a real window (glfw, or Qt if asked) or headless EGL."""

from __future__ import annotations

import os

from tribe_stream.errors import TribeStreamError

_chosen: str | None = None


class DisplayError(TribeStreamError):
    """No way to get an OpenGL context for the viewer or the renderer."""


def use_window_backend(name: str = "glfw") -> str:
    """Select a windowing backend for the live viewer; needs an X display."""
    global _chosen
    if _chosen:
        return _chosen
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise DisplayError(
            "no display: the live viewer needs a screen. Run it on a desktop, or under a virtual "
            "X server: `xvfb-run -s '-screen 0 1280x800x24' tribe-stream view URL`"
        )
    import vispy

    try:
        vispy.use(app=name)
    except Exception as exc:  # vispy raises RuntimeError/ImportError with the reason
        raise DisplayError(
            f"cannot use the {name!r} window backend ({exc}); install it with "
            "`pip install glfw` (or pass --backend pyqt6/pyside6 with that package installed)"
        ) from exc
    _chosen = name
    return name


def use_offscreen_backend() -> str:
    """Select a headless backend for pictures and movies: EGL (Mesa surfaceless), else a window.

    EGL needs no X server (`apt-get install libegl1 libgl1-mesa-dri` on Debian/Ubuntu).
    """
    global _chosen
    if _chosen:
        return _chosen
    import vispy

    os.environ.setdefault("EGL_PLATFORM", "surfaceless")
    try:
        vispy.use(app="egl")
        _chosen = "egl"
        return _chosen
    except Exception as egl_exc:
        if os.environ.get("DISPLAY"):
            return use_window_backend("glfw")
        raise DisplayError(
            f"no headless OpenGL ({egl_exc}): install Mesa's EGL "
            "(`apt-get install libegl1 libgl1-mesa-dri`), or run under `xvfb-run` with glfw"
        ) from egl_exc
