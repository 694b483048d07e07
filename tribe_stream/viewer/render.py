"""Offscreen still pictures of cortical maps: several views in one image, with a colorbar."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tribe_stream import N_VERTICES
from tribe_stream.errors import InputError
from tribe_stream.surface.colors import ColorLimits, get_colormap, robust_limits


def parse_size(text: str) -> tuple[int, int]:
    """'1200x900' -> (1200, 900), even numbers not required; a clear error otherwise."""
    try:
        w, h = (int(p) for p in text.lower().split("x"))
    except ValueError:
        raise InputError(
            f"size must look like WIDTHxHEIGHT (e.g. 1200x900), got {text!r}"
        ) from None
    if not (64 <= w <= 8192 and 64 <= h <= 8192):
        raise InputError(f"size {w}x{h} is out of range: each side must be 64..8192 pixels")
    return w, h


def check_values(values: np.ndarray, what: str) -> np.ndarray:
    """A float32 (20484,) map, or a clear error naming the shape that came instead."""
    v = np.asarray(values)
    if v.ndim != 1 or v.shape[0] != N_VERTICES:
        raise InputError(
            f"{what} has shape {v.shape}; expected ({N_VERTICES},) fsaverage5 values "
            "(left hemisphere first), or (seconds, 20484) with --second"
        )
    if not np.issubdtype(v.dtype, np.number):
        raise InputError(f"{what} holds {v.dtype} data, expected numbers")
    return v.astype(np.float32)


def load_map(path: str | Path, second: int | None = None) -> tuple[np.ndarray, str]:
    """One (20484,) map from a .npy file ((20484,) or (N, 20484)) or a recording, and a caption."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p} does not exist")
    if p.suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except ValueError as exc:
            raise InputError(f"{p} is not a plain numpy array file ({exc})") from exc
        if arr.ndim == 2:
            k = 0 if second is None else second
            if not -arr.shape[0] <= k < arr.shape[0]:
                raise InputError(f"{p} has {arr.shape[0]} rows; --second {k} is out of range")
            return check_values(arr[k], f"{p} row {k}"), f"{p.name}  second {k}"
        return check_values(arr, str(p)), p.name
    from tribe_stream.recording import read_recording

    rec = read_recording(p)
    values = np.asarray(rec.values)
    seconds = list(getattr(rec, "seconds", range(len(values))))
    if len(values) == 0:
        raise InputError(f"{p} holds no predictions")
    k = second if second is not None else seconds[0]
    if k not in seconds:
        raise InputError(f"{p} has seconds {seconds[0]}..{seconds[-1]}; --second {k} is not there")
    return check_values(values[seconds.index(k)], f"{p} second {k}"), f"{p.name}  second {k}"


def render_image(
    values: np.ndarray,
    views: list[str] | tuple[str, ...] = ("both",),
    cmap: str = "cold_hot",
    size: tuple[int, int] = (1200, 900),
    limits: ColorLimits | None = None,
    threshold_percentile: float = 50.0,
    threshold: float | None = None,
    title: str = "",
    colorbar_title: str = "z",
) -> np.ndarray:
    """RGBA uint8 (H, W, 4) picture of `values` on the half-inflated cortex."""
    from tribe_stream.viewer.backend import use_offscreen_backend

    use_offscreen_backend()
    from tribe_stream.viewer.scene import BrainScene, Layout

    v = check_values(values, "values")
    cm = get_colormap(cmap)
    if limits is None:
        limits = robust_limits(
            v, cm.diverging, threshold_percentile=threshold_percentile, threshold=threshold
        )
    sc = BrainScene(
        views=views,
        cmap=cmap,
        size=size,
        layout=Layout(hud=36 if title else 0, colorbar=64),
        colorbar_title=colorbar_title,
    )
    try:
        sc.show_map(v, limits)
        sc.set_hud(title)
        return sc.render()
    finally:
        sc.close()


def save_png(path: str | Path, image: np.ndarray) -> None:
    """Write an RGBA/RGB uint8 image as PNG."""
    from vispy.io import write_png

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_png(str(path), np.ascontiguousarray(image))
