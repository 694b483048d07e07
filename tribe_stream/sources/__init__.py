"""Media sources: camera, microphone and file replay, each yielding `Chunk`s on the stream clock.

Usage::

    from tribe_stream.sources import open_camera, MicrophoneSource, FileReplay
    from tribe_stream.clock import StreamClock

    clock = StreamClock()
    with open_camera("lavfi:testsrc=size=320x240:rate=25", clock=clock, max_size=292) as cam, \\
            MicrophoneSource(clock=clock) as mic:
        while running:
            for chunk in cam.poll() + mic.poll():   # non-blocking, oldest first
                ...                                  # chunk.kind, chunk.start, chunk.data
            publish(cam.counters, mic.counters)      # drops, errors, reconnects

The contract every source keeps (`base.Source`):

- `start()` opens the input in the caller's thread (a missing device, file or library raises
  `SourceError` with the fix) and then captures in the source's own thread; `stop()` ends it.
  Both are also the context manager. `poll()` returns every queued chunk without blocking,
  `get(timeout)` one chunk, iterating yields chunks until the source has ended, and
  `join(timeout)` waits for the end.
- Chunks (`tribe_stream.types.Chunk`), all times in stream seconds of the shared `StreamClock`:
  - video: `data` uint8 `(1, H, W, 3)` RGB (one frame per chunk), `times` = `[start]`,
    `end` = start + one frame duration, `rate` = nominal frame rate (or None);
  - audio: `data` float32 `(n,)` mono at `rate` = 16000, `start` = time of the first sample,
    `end` = start + n / 16000, `times` = `[start]`; consecutive chunks are contiguous.
  - `capture_time`: stream time at which the chunk was handed to the queue.
- Stamps: live sources (camera, microphone) stamp capture times (the frame's arrival mapped
  through its pts; the audio block's arrival minus its duration, then counted per sample). File
  replay stamps exact media times: `offset + pts`, with `offset=0` by default, identically at
  real-time pace and as fast as possible, so offline and live runs fill the same 0.5 s bins.
- Backpressure: capture never waits for compute. Each source owns a bounded queue; when it is
  full the OLDEST chunk is dropped and counted (`dropped_chunks`, `dropped_frames`,
  `dropped_samples`). Only offline replay (`realtime=False`) blocks its reader instead, so it
  loses nothing.
- Faults never end a stream: a packet that fails to decode or a frame FFmpeg flags corrupt is
  skipped (`corrupt_frames`); a float frame with NaN/inf is skipped (`nan_frames`); an input that
  ends or drops out is reopened with backoff when `reconnect=True` (`reconnects`,
  `reconnect_failures`, `errors`). `ended` says the capture thread has finished and `error`
  holds the `SourceError` that ended it, if any.
- `counters` is a dict with every key of `COUNTER_KEYS` (always present, ints; see
  `base.COUNTER_KEYS` for each one's meaning) plus `queue_depth`. `chunks` counts what entered
  the queue, so the consumer has received `chunks - dropped_chunks - queue_depth`.

Sources:

- `open_camera(spec, ...)` / `CameraSource`: `/dev/video0` (or `0`), `lavfi:<graph>`, RTSP and
  other URLs, files (played at their pace, looping when `reconnect=True`). `max_size` downscales
  the shortest edge; `max_fps` thins frames.
- `MicrophoneSource(device, rate=..., channels=...)`: PortAudio via sounddevice; mono mix,
  PyAV resampling to 16 kHz; `list_input_devices()` lists what can record.
- `FileReplay(path, realtime=True, video=True, audio=True, loop=False)`: a file's video and/or
  sound; `replay.kinds()` says which chunk kinds it will yield before it starts
  (`tribe_stream.media.probe(path)` says what a file holds). Every source decodes and
  resamples through `tribe_stream.media`, as offline extraction does.
- `make_clip(path, seconds)`: the synthetic demo clip (moving picture, stepped tone), with
  `read_frame_index` and `clip_tone_hz` to check what came out.
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
