"""Decoded PyAV video frames to RGB uint8 arrays, optionally downscaled; bad frames are refused.

A frame is refused (`BadFrame`) when FFmpeg flagged it corrupt, when it has no pixels, or when a
float pixel format (EXR, some HDR formats) holds NaN or inf values. Callers count and skip it.
"""

from __future__ import annotations

import av
import numpy as np

from tribe_stream.types import Chunk


class BadFrame(Exception):
    """A decoded frame that must be skipped; `reason` is "corrupt", "nan" or "empty"."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} frame{': ' + detail if detail else ''}")
        self.reason = reason


def target_size(width: int, height: int, max_size: int | None) -> tuple[int, int]:
    """(width, height) with the shortest edge at most `max_size`, keeping the aspect ratio."""
    short = min(width, height)
    if max_size is None or short <= max_size:
        return width, height
    scale = max_size / short
    if width <= height:
        return max_size, max(1, round(height * scale))
    return max(1, round(width * scale)), max_size


def is_float_format(name: str) -> bool:
    """True for float pixel formats (e.g. gbrpf32le, grayf32le, rgbaf16le)."""
    return "f32" in name or "f16" in name


def frame_to_rgb(frame: av.VideoFrame, max_size: int | None = None) -> np.ndarray:
    """RGB uint8 `(H, W, 3)` of `frame`, shortest edge downscaled to `max_size` (area filter).

    Raises `BadFrame` for corrupt, empty or non-finite frames.
    """
    if frame.width <= 0 or frame.height <= 0:
        raise BadFrame("empty", f"{frame.width}x{frame.height}")
    if frame.is_corrupt:
        raise BadFrame("corrupt", "FFmpeg flagged the frame as corrupt")
    width, height = target_size(frame.width, frame.height, max_size)
    if is_float_format(frame.format.name):
        rgb = _float_frame_to_rgb(frame)
        if (width, height) == (frame.width, frame.height):
            return rgb
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    if (width, height) == (frame.width, frame.height):
        return frame.to_ndarray(format="rgb24")
    return frame.reformat(
        width=width, height=height, format="rgb24", interpolation="AREA"
    ).to_ndarray()


def _float_frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    try:
        values = frame.to_ndarray()
    except (ValueError, av.FFmpegError):
        values = frame.reformat(format="gbrpf32le").to_ndarray()
    values = np.asarray(values, dtype=np.float32)
    if not np.isfinite(values).all():
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise BadFrame("nan", f"{bad} of {values.size} values are NaN or inf")
    if values.ndim == 2:
        values = np.repeat(values[:, :, None], 3, axis=2)
    values = values[:, :, :3]
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def video_chunk(
    rgb: np.ndarray, stamp: float, frame_s: float, rate: float | None, capture_time: float
) -> Chunk:
    """The chunk of one RGB frame shown from stream time `stamp` for `frame_s` seconds."""
    return Chunk(
        kind="video",
        data=rgb[None],
        start=stamp,
        end=stamp + frame_s,
        capture_time=capture_time,
        times=np.array([stamp]),
        rate=rate,
    )
