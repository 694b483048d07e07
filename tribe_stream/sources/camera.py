"""Camera source through PyAV: a V4L2 device, any URL or file FFmpeg opens, or a lavfi graph.

`open_camera(spec)` accepts `/dev/video0`, `v4l2:/dev/video0` or `0` (a V4L2 device);
`lavfi:testsrc=size=320x240:rate=25` (a filter graph, paced at its frame rate like a camera);
`rtsp://…` (over TCP), `rtmp://…`, `udp://…`, `srt://…` (live streams); `http(s)://…` or a file
path (paced by its timestamps when it has a duration, so a file plays like a camera); and
`x11grab:`, `avfoundation:`, `dshow:`, `gdigrab:<target>` (other FFmpeg capture devices).

The first frame after each (re)open anchors the frame timestamps onto the stream clock; later
frames follow their pts, re-anchored if they run ahead of the clock or fall more than `max_lag`
behind. With `reconnect=True` an input that ends or drops out is reopened (at once, then with
exponential backoff): a camera made from a file loops.
"""

from __future__ import annotations

import glob
import logging
import math
import os
from dataclasses import dataclass, field

import av

from tribe_stream.clock import StreamClock
from tribe_stream.errors import SourceError
from tribe_stream.sources.base import Source
from tribe_stream.sources.chunks import video_chunk

log = logging.getLogger("tribe_stream.sources")

LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "rtp", "srt", "tcp")
DEVICE_FORMATS = ("v4l2", "video4linux2", "x11grab", "avfoundation", "dshow", "gdigrab", "kmsgrab")


@dataclass(frozen=True)
class CameraSpec:
    """What `open_camera` makes of a spec: the FFmpeg URL, format, options and pacing.

    `paced` is True when frames must be released at their timestamps (lavfi, files), False when
    the input paces itself (devices, live streams), None to decide from the input's duration.
    """

    url: str
    format: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    paced: bool | None = None


def parse_camera_spec(spec: str | int) -> CameraSpec:
    """Turn a camera spec (see the module docstring) into a `CameraSpec`."""
    text = str(spec).strip()
    if not text:
        raise SourceError("empty camera spec: use /dev/video0, lavfi:testsrc, a URL or a file")
    if text.isdigit():
        return CameraSpec(f"/dev/video{text}", "v4l2", paced=False)
    if text.startswith("lavfi:"):
        graph = text[len("lavfi:") :]
        if not graph:
            raise SourceError("empty lavfi graph: use e.g. lavfi:testsrc=size=320x240:rate=25")
        return CameraSpec(graph, "lavfi", paced=True)
    if text.startswith("/dev/video"):
        return CameraSpec(text, "v4l2", paced=False)
    scheme, sep, rest = text.partition("://")
    if sep:
        scheme = scheme.lower()
        if scheme in ("rtsp", "rtsps"):
            return CameraSpec(text, None, {"rtsp_transport": "tcp"}, paced=False)
        if scheme in LIVE_SCHEMES:
            return CameraSpec(text, None, paced=False)
        return CameraSpec(text, None, paced=None)
    prefix, sep, target = text.partition(":")
    if sep and prefix.lower() in DEVICE_FORMATS:
        fmt = "v4l2" if prefix.lower() == "video4linux2" else prefix.lower()
        return CameraSpec(target, fmt, paced=False)
    return CameraSpec(text, None, paced=None)


def _device_error(url: str, reason: object, denied: bool) -> str:
    """The one line for a V4L2 device that cannot be opened: the cameras there, and the fix."""
    found = ", ".join(sorted(glob.glob("/dev/video*"))) or "none"
    fix = (
        "add your user to the 'video' group (sudo usermod -aG video $USER)"
        if denied
        else "plug a camera in, pick another /dev/videoN, or use lavfi:testsrc"
    )
    return f"cannot open camera {url}: {reason}. Cameras here: {found}. Fix: {fix}"


def check_camera(spec: str | int) -> None:
    """Raise `SourceError` now, before any model loads, for a camera that cannot be there: a
    device path that does not exist or cannot be read, a file that does not exist, a lavfi graph
    FFmpeg refuses. URLs and other capture formats are left to the opening."""
    parsed = parse_camera_spec(spec)
    if parsed.format == "v4l2":
        if not os.path.exists(parsed.url):
            raise SourceError(_device_error(parsed.url, "no such device", denied=False))
        if not os.access(parsed.url, os.R_OK):
            raise SourceError(_device_error(parsed.url, "permission denied", denied=True))
    elif parsed.format == "lavfi":
        CameraSource(spec)._open_input().close()
    elif parsed.format is None and "://" not in parsed.url and not os.path.exists(parsed.url):
        CameraSource(spec)._open_input()  # raises the "no such file" line


def open_camera(spec: str | int, **kwargs: object) -> CameraSource:
    """A `CameraSource` for `spec` (not started); keyword arguments go to `CameraSource`."""
    return CameraSource(spec, **kwargs)  # type: ignore[arg-type]


class CameraSource(Source):
    """Video frames from a camera-like input, one RGB uint8 frame per `Chunk`.

    Args:
        spec: see the module docstring.
        clock: the shared stream clock (a new one if None).
        max_size: downscale so the shortest edge is at most this many pixels (None: keep).
        max_fps: keep at most one frame per 1/max_fps slot of stream time (None: all frames).
        pace: override the spec's pacing (True: release frames at their timestamps).
        reconnect: reopen when the input ends or drops out (counted in `reconnects`).
        max_reconnects: give up after this many failed reopen attempts in a row (None: never).
        options: extra FFmpeg options (e.g. {"video_size": "640x480", "input_format": "mjpeg"}).
        queue_size: chunks kept for the consumer; beyond it the oldest is dropped and counted.
        open_timeout, read_timeout: seconds before a hung open/read counts as a dropout.
        backoff: (first, maximum) seconds between reopen attempts after the first immediate one.
        max_lag: seconds a frame's pts may fall behind the clock before stamps are re-anchored.
    """

    kind = "video"

    def __init__(
        self,
        spec: str | int,
        *,
        clock: StreamClock | None = None,
        max_size: int | None = None,
        max_fps: float | None = None,
        pace: bool | None = None,
        reconnect: bool = True,
        max_reconnects: int | None = None,
        options: dict[str, str] | None = None,
        queue_size: int = 64,
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
        backoff: tuple[float, float] = (0.25, 5.0),
        max_lag: float = 0.5,
        name: str | None = None,
    ) -> None:
        self.spec = parse_camera_spec(spec)
        super().__init__(clock=clock, queue_size=queue_size, name=name or f"camera {spec}")
        if max_size is not None and max_size < 1:
            raise SourceError(f"max_size must be a positive number of pixels, not {max_size}")
        if max_fps is not None and max_fps <= 0:
            raise SourceError(f"max_fps must be positive, not {max_fps}")
        self.max_size = max_size
        self.max_fps = max_fps
        self.pace = pace
        self.reconnect = reconnect
        self.max_reconnects = max_reconnects
        self.options = {**self.spec.options, **(options or {})}
        self.timeout = (open_timeout, read_timeout)
        self.backoff = backoff
        self.max_lag = max_lag
        self._paced = False
        self._last_stamp = -math.inf
        self._last_end = -math.inf

    # ----- opening -----
    def _open(self) -> None:
        self._container = self._open_input()

    def _open_input(self) -> av.container.InputContainer:
        spec = self.spec
        if spec.format is None and "://" not in spec.url and not os.path.exists(spec.url):
            raise SourceError(
                f"camera {spec.url!r}: no such file. Give an existing video file, a URL, "
                "a device such as /dev/video0, or a test source such as "
                "lavfi:testsrc=size=320x240:rate=25"
            )
        try:
            container = av.open(
                spec.url, format=spec.format, options=self.options, timeout=self.timeout
            )
        except av.FFmpegError as exc:
            raise SourceError(self._open_hint(exc)) from exc
        if not container.streams.video:
            container.close()
            raise SourceError(f"camera {spec.url!r} has no video stream")
        pace = self.pace if self.pace is not None else self.spec.paced
        self._paced = pace if pace is not None else (container.duration or 0) > 0
        # Frame threads add frames of latency: fine for paced files, not for live cameras.
        container.streams.video[0].thread_type = "AUTO" if self._paced else "SLICE"
        return container

    def _open_hint(self, exc: Exception) -> str:
        spec = self.spec
        if spec.format == "v4l2":
            return _device_error(spec.url, exc, denied=isinstance(exc, PermissionError))
        if spec.format == "lavfi":
            return (
                f"cannot open lavfi graph {spec.url!r}: {exc}. "
                "Check the filter name and options, e.g. lavfi:testsrc=size=320x240:rate=25"
            )
        return f"cannot open camera {spec.url!r}: {exc}. Check the path or URL and the network"

    # ----- capture -----
    def _run(self) -> None:
        while not self._stop.is_set():
            assert self._container is not None
            try:
                self._read(self._container)
                if not self._stop.is_set():
                    log.info("%s: input ended", self.name)
            except (av.FFmpegError, OSError) as exc:
                self._count(errors=1)
                log.warning("%s: input dropped out: %s", self.name, exc)
            self._close()
            if self._stop.is_set() or not self.reconnect or not self._retry_open(self._reopen):
                return
            log.info("%s: reopened", self.name)

    def _reopen(self) -> None:
        self._container = self._open_input()

    def _read(self, container: av.container.InputContainer) -> None:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 0) or None
        frame_s = 1.0 / rate if rate else 0.04
        offset: float | None = None  # stream time minus media time, set by the first frame
        for packet in container.demux(stream):
            if self._stop.is_set():
                return
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                self._corrupt(f"decode error: {exc}")
                continue
            for frame in frames:
                now = self.clock.now()
                media_t = frame.time
                if media_t is None:
                    stamp = now
                else:
                    if offset is None:
                        # After a reopen, follow on from the last frame's end at the earliest.
                        offset = max(now, self._last_end) - media_t
                    stamp = media_t + offset
                    ahead = 1.0 if self._paced else 0.05
                    if stamp > now + ahead or stamp < now - self.max_lag:
                        if not math.isinf(self._last_stamp):
                            self._count(clock_resyncs=1)
                        offset = now - media_t
                        stamp = now
                    elif not self._paced:
                        stamp = min(stamp, now)
                if stamp <= self._last_stamp:
                    self._count(out_of_order_frames=1)
                    continue
                if self._same_fps_slot(stamp):
                    self._count(skipped_frames=1)
                    continue
                rgb = self._frame_rgb(frame, self.max_size)
                if rgb is None:
                    continue
                if self._paced and self._sleep_until(stamp):
                    return
                self._last_stamp, self._last_end = stamp, stamp + frame_s
                self._emit(video_chunk(rgb, stamp, frame_s, rate, self.clock.now()))

    def _same_fps_slot(self, stamp: float) -> bool:
        """True if `max_fps` already let a frame through in this 1/max_fps slot."""
        if not self.max_fps or math.isinf(self._last_stamp):
            return False
        return math.floor(stamp * self.max_fps) == math.floor(self._last_stamp * self.max_fps)
