"""Media sources: camera, microphone and file replay, each yielding `Chunk`s on the stream clock.

Usage::

    clock = StreamClock()
    with open_camera("lavfi:testsrc=size=320x240:rate=25", clock=clock, max_size=292) as cam, \\
            MicrophoneSource(clock=clock) as mic:
        while running:
            for chunk in cam.poll() + mic.poll():   # non-blocking, oldest first
                ...                                  # chunk.kind, chunk.start, chunk.data
            publish(cam.counters, mic.counters)      # drops, errors, reconnects

The contract every source keeps (`base.Source`):

- `start()` opens the input in the caller's thread (a missing device, file or library raises
  `SourceError` with the fix), then captures in the source's own thread; `stop()` ends it (both
  also as a context manager). `poll()` returns every queued chunk without blocking, `get(timeout)`
  one chunk, iterating yields chunks until the source has ended, `join(timeout)` waits for it.
- Chunks, times in seconds of the shared `StreamClock`: video `data` uint8 `(1, H, W, 3)` RGB,
  one frame per chunk, `end` = start + one frame, `rate` = nominal frame rate (or None); audio
  `data` float32 `(n,)` mono at 16 kHz, consecutive chunks contiguous; `capture_time` = when the
  chunk was queued.
- Stamps: live sources stamp capture times; file replay stamps exact media times (`offset +
  pts`) at either pace, so offline and live runs fill the same 0.5 s bins.
- Backpressure: capture never waits for compute; a full queue drops its OLDEST chunk, counted
  (only offline replay, `realtime=False`, blocks its reader instead and loses nothing).
- Faults never end a stream: bad packets and frames are skipped and counted, an input that ends
  or drops out is reopened with backoff when `reconnect=True`; `ended` says the capture thread
  has finished and `error` holds the `SourceError` that ended it, if any.
- `counters`: every key of `COUNTER_KEYS` plus `queue_depth`; the consumer has received
  `chunks - dropped_chunks - queue_depth`.

Sources: `open_camera(spec)` / `CameraSource` (`/dev/video0`, `lavfi:<graph>`, URLs, files),
`MicrophoneSource` (PortAudio; `list_input_devices()`), `FileReplay(path, realtime=...)` (a
file's video and/or sound; `kinds()` says which before it starts), and `make_clip` (the
synthetic demo clip; `read_frame_index`, `clip_tone_hz` check what came out). All decode and
resample through `tribe_stream.media`, as offline extraction does.
"""

from tribe_stream.sources.base import COUNTER_KEYS, Source
from tribe_stream.sources.camera import CameraSource, CameraSpec, open_camera, parse_camera_spec
from tribe_stream.sources.clip import clip_tone_hz, make_clip, read_frame_index
from tribe_stream.sources.microphone import MicrophoneSource, list_input_devices
from tribe_stream.sources.replay import FileReplay

__all__ = [
    "COUNTER_KEYS",
    "CameraSource",
    "CameraSpec",
    "FileReplay",
    "MicrophoneSource",
    "Source",
    "clip_tone_hz",
    "list_input_devices",
    "make_clip",
    "open_camera",
    "parse_camera_spec",
    "read_frame_index",
]
