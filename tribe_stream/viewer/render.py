"""Offscreen still pictures of cortical maps: several views in one image, with a colorbar; or
the three modalities' contributions as one RGB map (text red, audio green, video blue)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tribe_stream import N_VERTICES
from tribe_stream.errors import InputError
from tribe_stream.surface.colors import RGB_PERCENTILE, ColorLimits, get_colormap, robust_limits
from tribe_stream.types import MODALITIES


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


def load_map(path: str | Path, second: float | None = None) -> tuple[np.ndarray, str]:
    """One (20484,) map from any prediction file or recording (`read_prediction_file`), and a
    caption: the row of stimulus second `second` (a numpy index when negative), else the first."""
    from tribe_stream.offline_outputs import read_prediction_file

    values, seconds, _ = read_prediction_file(path)
    name = Path(path).name
    if len(values) == 0:
        raise InputError(f"{path} holds no predictions")
    if len(values) == 1 and second is None and Path(path).suffix == ".npy":  # one map
        return check_values(values[0], str(path)), name
    hits = np.flatnonzero(np.isclose(seconds, second if second is not None else seconds[0]))
    if hits.size:
        i = int(hits[0])
    elif second is not None and -len(values) <= second < 0 and float(second).is_integer():
        i = int(second)
    else:
        raise InputError(
            f"{path} has {len(values)} rows; --second {second:g} is not there (seconds "
            f"{seconds[0]:g}..{seconds[-1]:g})"
        )
    when = f"second {seconds[i]:g}"
    return check_values(values[i], f"{path} {when}"), f"{name}  {when}"


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
    v = check_values(values, "values")
    cm = get_colormap(cmap)
    if limits is None:
        limits = robust_limits(
            v, cm.diverging, threshold_percentile=threshold_percentile, threshold=threshold
        )
    return _picture(
        lambda sc: sc.show_map(v, limits),
        title,
        views=views,
        cmap=cmap,
        size=size,
        colorbar_title=colorbar_title,
    )


def _picture(show, title: str, **scene_args) -> np.ndarray:
    """An offscreen `BrainScene(**scene_args)`, `show(scene)` on it, captioned `title`: RGBA."""
    from tribe_stream.viewer.backend import use_offscreen_backend

    use_offscreen_backend()
    from tribe_stream.viewer.scene import BrainScene, Layout

    sc = BrainScene(layout=Layout(hud=36 if title else 0, colorbar=64), **scene_args)
    try:
        show(sc)
        sc.set_hud(title)
        return sc.render()
    finally:
        sc.close()


def load_contributions(
    paths: list[str | Path], second: float | None = None
) -> tuple[np.ndarray, str, list[str]]:
    """The modalities' contributions as RGB channels `(20484, 3)` (text, audio, video; an
    absent modality's channel is NaN: black, and left out of the scale), a caption, and the
    modalities found.

    `paths`: one prediction file (its contribution files beside it are read: `clip.text.npy`,
    ...), or contribution files themselves (each says its modality in its metadata or name).
    `second`: that stimulus second of each; None: the mean over all seconds."""
    import json

    from tribe_stream.offline_outputs import (
        find_contributions,
        output_stem,
        pair_name,
        read_prediction_file,
    )

    if len(paths) == 1:
        files = find_contributions(paths[0])
        if not files:
            raise InputError(
                f"no contribution files beside {paths[0]}; make them with `tribe-stream predict "
                "... --contributions` (or name the .text/.audio/.video files)"
            )
    else:
        files = {}
        for f in paths:
            meta = read_prediction_file(f)[2]
            stem = output_stem(pair_name(f)).name
            m = meta.get("contribution") or _modality_suffix(stem)
            if m not in MODALITIES:
                raise InputError(
                    f"{f}: which modality is it? Not in its metadata nor its name "
                    "(NAME.text.EXT, NAME.audio.EXT, NAME.video.EXT)"
                )
            if m in files:
                raise InputError(f"{files[m]} and {f} are both the {m} contribution; give one")
            files[m] = Path(f)
    channels = np.full((N_VERTICES, 3), np.nan, np.float32)
    shapes, origins = {}, {}
    for m, f in files.items():
        values, seconds, meta = read_prediction_file(f)
        shapes[m] = seconds.tolist()
        model = json.dumps(meta.get("model"), sort_keys=True, default=str)  # dicts by content
        origins[m] = (meta.get("stimulus_sha256"), model)
        if second is None:
            row = values.mean(axis=0)
        elif (hit := np.flatnonzero(np.isclose(seconds, second))).size:
            row = values[hit[0]]
        else:
            raise InputError(
                f"{f} has seconds {seconds[0]:g}..{seconds[-1]:g}; --second {second:g} is not there"
            )
        channels[:, MODALITIES.index(m)] = check_values(row, str(f))
    if len({tuple(s) for s in shapes.values()}) > 1 or len(set(origins.values())) > 1:
        each = ", ".join(f"{m}: {len(s)} s" for m, s in shapes.items())
        raise InputError(
            f"the contribution files do not belong together ({each}; stimulus or model differ); "
            "give the files of one `predict --contributions` run"
        )
    found = [m for m in MODALITIES if m in files]
    name = output_stem(pair_name(next(iter(files.values())))).name  # without hemisphere, modality
    if suffix := _modality_suffix(name):
        name = name.removesuffix(f".{suffix}")
    when = "mean over time" if second is None else f"second {second:g}"
    return channels, f"{name}  {'/'.join(found)}  {when}", found


def _modality_suffix(stem: str) -> str | None:
    """The modality a contribution file's name ends with (`clip.text` -> text), else None."""
    return next((m for m in MODALITIES if stem.endswith(f".{m}")), None)


def render_rgb_image(
    channels: np.ndarray,
    views: list[str] | tuple[str, ...] = ("both",),
    size: tuple[int, int] = (1200, 900),
    percentile: float = RGB_PERCENTILE,
    background: float = 0.0,
    title: str = "",
) -> np.ndarray:
    """RGBA uint8 (H, W, 4) picture of three maps `(20484, 3)` as one RGB map (text red,
    audio green, video blue), normalised as the official `plot_surf_rgb` (`rgb_colors`); a
    channel all NaN is an absent modality (black, marked absent in the legend)."""
    from tribe_stream.surface.colors import rgb_colors

    channels = np.asarray(channels, np.float32)
    if channels.shape != (N_VERTICES, 3):
        raise InputError(f"RGB channels of shape {channels.shape}; expected ({N_VERTICES}, 3)")
    absent = [m for m, gone in zip(MODALITIES, np.isnan(channels).all(axis=0), strict=True) if gone]

    def show(sc) -> None:
        sc.show_rgb(rgb_colors(channels, percentile, sc.gray, background), absent=absent)

    return _picture(show, title, views=views, size=size)


def save_png(path: str | Path, image: np.ndarray, text: dict[str, str] | None = None) -> None:
    """Write an RGBA/RGB uint8 image as PNG, atomically (never half a picture under its name);
    `text`: PNG text chunks (`Title`, `Comment`, ...), written with Pillow."""
    from tribe_stream.outputs import atomic_write

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not text:
        from vispy.io import write_png

        atomic_write(path, lambda tmp: write_png(str(tmp), np.ascontiguousarray(image)))
        return
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    picture = Image.fromarray(np.ascontiguousarray(image))
    atomic_write(path, lambda tmp: picture.save(str(tmp), format="PNG", pnginfo=info))


def map_metadata(path: str | Path) -> dict:
    """What a prediction file or recording says about itself (`{}` when nothing), as
    `read_prediction_file` reads it (a recording's stream metadata with `predict`'s merged in)."""
    from tribe_stream.offline_outputs import read_prediction_file

    try:
        return read_prediction_file(path).metadata
    except InputError:  # not readable: the map's own reading says why
        return {}


def picture_text(title: str, meta: dict) -> tuple[str, dict[str, str]]:
    """A picture's caption and PNG text: both say untrained when `meta` does."""
    from tribe_stream.untrained import UNTRAINED_LABEL, is_untrained, tagged

    caption = tagged(title, meta)
    text = {"Title": caption, "Software": "tribe-stream"}
    if is_untrained(meta):
        text["Comment"] = UNTRAINED_LABEL
    return caption, text
