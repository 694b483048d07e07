"""MP4 movies of recordings: one frame per predicted second, or interpolated between seconds,
optionally beside the stimulus video. Rendered offscreen, encoded with PyAV (H.264 or MPEG-4).

Movie time is stimulus time: the frame at time t shows the prediction for the stimulus second
containing t (or, interpolated, a blend of the two seconds whose centres bracket t) and, beside
it, the stimulus frame at t. Colour limits are fixed over the whole movie.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from tribe_stream.errors import InputError
from tribe_stream.surface.colors import get_colormap, robust_limits

log = logging.getLogger(__name__)


@dataclass
class MovieOptions:
    """What `tribe-stream movie` makes: output size covers the stimulus panel too."""

    out: Path
    size: tuple[int, int] = (1280, 720)
    fps: float = 1.0
    interpolate: bool = False
    views: tuple[str, ...] = ("both",)
    cmap: str = "cold_hot"
    threshold_pct: float = 50.0
    stimulus: Path | None = None
    stimulus_offset_s: float = 0.0
    codec: str | None = None


def pick_codec(preferred: str | None = None) -> str:
    """libx264 if this PyAV build has it, else MPEG-4 part 2 (both play everywhere)."""
    import av

    available = av.codecs_available
    for name in [preferred] if preferred else ["libx264", "h264", "mpeg4"]:
        if name in available:
            try:
                av.codec.Codec(name, "w")
                return name
            except Exception:  # listed but not an encoder in this build
                continue
    raise InputError(
        f"no usable video encoder ({preferred or 'libx264/mpeg4'}) in this PyAV build; "
        "install the PyAV wheel from PyPI (`pip install av`), which includes them"
    )


def frame_values(
    values: np.ndarray,
    seconds: np.ndarray,
    times: np.ndarray,
    interpolate: bool,
    step: float = 1.0,
) -> Iterator[tuple[float, np.ndarray, float]]:
    """(t, map, nearest row's second) for each movie time; seconds may have gaps. A row covers
    `[second, second + step)` (`step`: 1 s, or a scan's TR after `predict --tr`).

    Steps: the row whose span contains t (the last one before, across a gap).
    Interpolated: linear between the rows whose centres (second + step / 2) bracket t.
    """
    rows = np.argsort(seconds, kind="stable")
    secs = np.asarray(seconds, dtype=np.float64)[rows]
    centres = secs + step / 2
    for t in times:
        if not interpolate or len(secs) == 1:
            i = int(np.clip(np.searchsorted(secs, t, side="right") - 1, 0, len(secs) - 1))
            yield float(t), np.asarray(values[rows[i]], dtype=np.float32), float(secs[i])
            continue
        j = int(np.searchsorted(centres, t, side="right"))
        i0, i1 = max(j - 1, 0), min(j, len(centres) - 1)  # the same row outside the centres
        w = 0.0 if i0 == i1 else float((t - centres[i0]) / (centres[i1] - centres[i0]))
        a = np.asarray(values[rows[i0]], dtype=np.float32)
        b = np.asarray(values[rows[i1]], dtype=np.float32)
        nearest = float(secs[i1] if w >= 0.5 else secs[i0])
        yield float(t), (1 - w) * a + w * b, nearest


class StimulusFrames:
    """Frames of the stimulus video by stimulus time, decoded in order with PyAV and fitted
    (aspect kept, letterboxed) into a `width` x `height` box."""

    def __init__(self, path: Path, width: int, height: int, offset_s: float = 0.0) -> None:
        import av

        try:
            self._container = av.open(str(path))
        except (av.error.FFmpegError, OSError) as exc:
            raise InputError(f"cannot open stimulus video {path}: {exc}") from None
        if not self._container.streams.video:
            raise InputError(f"{path} has no video stream")
        self._stream = self._container.streams.video[0]
        self._frames = self._container.decode(self._stream)
        self.width, self.height, self.offset = width, height, offset_s
        cc = self._stream.codec_context
        aspect = (cc.width / cc.height) if cc.width and cc.height else 4 / 3
        fw = min(width, int(round(height * aspect)))
        fh = min(height, int(round(fw / aspect)))
        self._fit = (max(2, fw // 2 * 2), max(2, fh // 2 * 2))
        self._canvas = np.full((height, width, 3), (18, 18, 23), np.uint8)
        self._next = None
        self._done = False

    def _advance(self):
        try:
            return next(self._frames)
        except StopIteration:
            self._done = True
            return None

    def at(self, t: float) -> np.ndarray:
        """RGB uint8 (height, width, 3): the frame on screen at stimulus time t."""
        t = t + self.offset
        if self._next is None and not self._done:
            self._next = self._advance()
        while self._next is not None and (self._next.time or 0.0) <= t + 1e-6:
            fw, fh = self._fit
            img = self._next.to_ndarray(width=fw, height=fh, format="rgb24")
            y, x = (self.height - fh) // 2, (self.width - fw) // 2
            self._canvas[y : y + fh, x : x + fw] = img
            self._next = self._advance()
        return self._canvas

    def close(self) -> None:
        self._container.close()


def stimulus_sound(path: Path, start: float, end: float) -> tuple[np.ndarray, int] | None:
    """The stimulus's sound from stimulus time `start` to `end` (silence outside it), mono
    float32, and its rate; None when it has no sound (`media.read_sound`: a late start and
    gaps are silence)."""
    from tribe_stream.errors import SourceError
    from tribe_stream.media import read_sound

    try:
        sound = read_sound(path)
    except SourceError:
        return None
    rate, samples = sound.rate, np.asarray(sound.samples, np.float32)
    a, b = int(round(start * rate)), int(round(end * rate))
    out = np.zeros(max(0, b - a), np.float32)
    lo, hi = max(a, 0), min(b, len(samples))
    if hi > lo:
        out[lo - a : hi - a] = samples[lo:hi]
    return out, rate


def mux_sound(container, samples: np.ndarray, rate: int) -> None:
    """Encode `samples` (mono float32 from movie time 0) as the movie's AAC track."""
    import av

    stream = container.add_stream("aac", rate=rate, layout="mono")
    stream.time_base = Fraction(1, rate)
    n = 1024
    for i in range(0, len(samples), n):
        piece = np.ascontiguousarray(np.clip(samples[i : i + n], -1, 1)[None, :])
        frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def write_movie(recording_path: str | Path, opt: MovieOptions) -> dict:
    """Render any prediction file or recording (`read_prediction_file`) to `opt.out`, with the
    stimulus's sound when it has some; returns {"frames", "seconds", "codec", "size", "sound"}."""
    import av

    from tribe_stream.offline_outputs import read_prediction_file
    from tribe_stream.viewer.backend import use_offscreen_backend

    w, h = opt.size
    if w % 2 or h % 2:
        raise InputError(f"movie size {w}x{h}: MP4 (yuv420p) needs an even width and height")
    if opt.fps <= 0 or opt.fps > 60:
        raise InputError(f"--fps {opt.fps}: choose a frame rate between 1/60 and 60")
    pred = read_prediction_file(recording_path)
    if len(pred.values) == 0:
        raise InputError(f"{recording_path} holds no predictions: nothing to film")
    values, seconds = pred.values, np.asarray(pred.seconds)
    cm = get_colormap(opt.cmap)
    limits = robust_limits(values, cm.diverging, threshold_percentile=opt.threshold_pct)

    stim = None
    brain_w = w
    if opt.stimulus is not None:
        stim_w = w // 2 // 2 * 2  # half the movie, even; the video is fitted inside
        brain_w = w - stim_w
        stim = StimulusFrames(Path(opt.stimulus), stim_w, h, opt.stimulus_offset_s)

    start, end = float(seconds.min()), float(seconds.max()) + pred.tr
    n_frames = max(1, int(round((end - start) * opt.fps)))
    times = start + np.arange(n_frames) / opt.fps
    codec = pick_codec(opt.codec)
    rate = Fraction(opt.fps).limit_denominator(1000)

    use_offscreen_backend()
    from tribe_stream.viewer.scene import BrainScene, Layout

    scene = BrainScene(
        views=opt.views, cmap=opt.cmap, size=(brain_w, h), layout=Layout(hud=36, colorbar=64)
    )
    from tribe_stream.untrained import UNTRAINED_LABEL, is_untrained, tagged

    untrained = is_untrained(pred.metadata)
    out = Path(opt.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sound = None
    container = av.open(str(out), mode="w")
    if untrained:  # the file says it too, not only its pictures
        container.metadata["comment"] = UNTRAINED_LABEL
    try:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        sound = (
            None
            if opt.stimulus is None
            else stimulus_sound(
                Path(opt.stimulus), start + opt.stimulus_offset_s, end + opt.stimulus_offset_s
            )
        )
        if sound is not None:  # first: its few packets wait in the muxer for the pictures
            mux_sound(container, *sound)
        if codec in ("libx264", "h264"):
            stream.options = {"crf": "20", "preset": "veryfast"}
        else:
            stream.bit_rate = 4_000_000
        frames = frame_values(values, seconds, times, opt.interpolate, pred.tr)
        for i, (t, vals, sec) in enumerate(frames):
            scene.show_map(vals, limits)
            line = f"second {sec:g}   stimulus t = {t:.1f} s   BOLD {t + pred.offset:.1f} s"
            scene.set_hud(tagged(line, {"untrained": untrained}))
            brain = scene.render()[..., :3]
            rgb = brain if stim is None else np.concatenate([stim.at(t), brain], axis=1)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
            if (i + 1) % 50 == 0:
                log.info("movie: %d/%d frames", i + 1, n_frames)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
        scene.close()
        if stim is not None:
            stim.close()
    return {
        "frames": n_frames,
        "seconds": len(seconds),
        "codec": codec,
        "size": (w, h),
        "untrained": untrained,
        "sound": sound is not None,
    }
