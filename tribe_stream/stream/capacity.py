"""How many live streams a serving `Stream` takes by default: what its warm-up measured fits.

Before it takes visitors, a serving stream without `max_streams` runs one stream of its own on
its models, in real time: a webcam-sized clip with speech (640x480, 30 fps; made once into the
cache), heard by a speech recogniser of its own as a visitor's would be (words at a speaker's
rate instead where there is none). Two things bound the streams: the server's loop, one thread
through which every stream's model work passes (its seconds per stream-second: intake, text,
video, audio, brain model, `Server.counters`), and the machine's cores, which every stream's
threads share (decoding, frames, speech recognition: the process's CPU seconds per
stream-second). The probe runs twice and the second counts: a cold machine's first seconds
carry other work. The default is the streams whose cost fits in `LOAD` of the loop and
`CPU_LOAD` of the cores (the rest is headroom for uneven arrivals), and on a GPU in the memory
left (what the probe stream added, each). The probe stream goes as any stream does, giving back
what it held.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

log = logging.getLogger(__name__)

LOAD = 0.7
"""The share of the loop's second the default fills: on a lent H100 (session 17) 9 streams of a
320x240 clip kept real time at 0.79 of the loop, 10 at 0.98 did not."""
CPU_LOAD = 0.6
"""The share of the cores' time it fills: on this project's 2-core CPU 4 demo streams kept real
time at 0.52 of the cores and 5 at 0.65 did not; on the H100 5 webcam-sized streams did at 0.64
and 6 not (their loop at 0.4-0.55: the cores and the GIL bound them there)."""
PROBE_SECONDS = 4.0
MAX_STREAMS = 64
CLIP = {"seconds": PROBE_SECONDS + 1.0, "fps": 30, "width": 640, "height": 480}


@dataclass
class Capacity:
    """What the probe measured, per stream-second: the loop's seconds (`cost_s`) and the
    process's CPU seconds (`cpu_s`, over `cores`); GPU bytes a stream added and free (None on a
    CPU); the streams that fit."""

    cost_s: float
    cpu_s: float
    cores: int
    stream_bytes: int | None
    free_bytes: int | None
    streams: int
    runs: int = 1  # probe runs made (the last counted)

    def line(self) -> str:
        memory = ""
        if self.stream_bytes and self.free_bytes is not None:
            memory = (
                f", {self.stream_bytes / 2**30:.2f} GiB of GPU memory (free "
                f"{self.free_bytes / 2**30:.1f})"
            )
        return (
            f"at most {self.streams} stream{'s' if self.streams > 1 else ''} at once: one took {self.cost_s * 1e3:.0f} ms of the "
            f"loop and {self.cpu_s * 1e3:.0f} ms of CPU ({self.cores} cores) a second when "
            f"warming up{memory} (--max-streams N sets it)"
        )


def fits(
    cost_s: float,
    cpu_s: float = 0.0,
    cores: int = 1,
    stream_bytes: int | None = None,
    free_bytes: int | None = None,
) -> int:
    """Streams whose loop time (`cost_s` a second each) fits in `LOAD` of a second, whose CPU
    time (`cpu_s`) in `CPU_LOAD` of the `cores`' seconds, and whose GPU memory in `free_bytes`;
    1 to `MAX_STREAMS`."""
    n = math.floor(LOAD / max(cost_s, 1e-6) + 1e-9)  # 0.7 / 0.1 is 6.999...
    if cpu_s > 0:
        n = min(n, math.floor(CPU_LOAD * cores / cpu_s + 1e-9))
    if stream_bytes and free_bytes is not None:
        n = min(n, free_bytes // stream_bytes)
    return max(1, min(MAX_STREAMS, int(n)))


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def probe_clip() -> Path:
    """The probe's clip, made once in the cache (`make_clip` depends only on its arguments)."""
    from tribe_stream.outputs import atomic_write
    from tribe_stream.paths import cache_dir
    from tribe_stream.sources.clip import make_clip

    name = f"speech-{CLIP['width']}x{CLIP['height']}-{CLIP['fps']}fps-{CLIP['seconds']:g}s.mp4"
    path = cache_dir("probe", create=True) / name
    if not path.is_file():
        atomic_write(path, lambda tmp: make_clip(tmp, speech=True, **CLIP))
    return path


def probe(extractors, options, models, stream_cls, media_cls):
    """A probe stream (not opened) on `models`: a `stream_cls` (`Stream`) on `extractors`' own
    copy for a stream (its own speech recogniser; else words fed at their times), `options` in
    real time. Each call makes a fresh one."""
    from tribe_stream.extractors.demo import paced_words

    ex = extractors.for_stream()
    words = paced_words(PROBE_SECONDS) if ex.text is not None and ex.asr is None else None
    media = media_cls(file=str(probe_clip()), stream_id="capacity-probe", words=words)
    stream = stream_cls([media], replace(options, realtime=True, seconds=PROBE_SECONDS))
    return stream.use_models(models, ex)


def measure(
    make_probe: Callable[[], object], device: str, stop: threading.Event | None = None
) -> Capacity | None:
    """Run probe streams (`make_probe()`, models set) to their end; what one cost, and what fits.
    The first run warms what the warm-up did not (on a fresh H100 the first serve's probe took
    6.4 s of process CPU a stream-second against 2.0 on the next start); the second counts,
    unless a graph compiled or was captured during it (a shape the warm-up missed: seconds of
    compiling inside a live second), then a third does. None once `stop` is set (the serving
    stream stopped: a Ctrl-C while it starts ends the probe within a second)."""
    added = None
    for run in range(3):
        stream = make_probe()
        before, cpu = _gpu_bytes(device), time.process_time()
        for _ in stream:
            if stop is not None and stop.is_set():
                stream.stop()
        if stop is not None and stop.is_set():
            return None
        cpu = (time.process_time() - cpu) / PROBE_SECONDS
        c = stream.server.counters
        cost = (c["intake_s"] + c["text_s"] + c["work_s"]) / PROBE_SECONDS
        if before is not None:
            import torch

            grew = max(0, torch.cuda.max_memory_allocated(device) - before)
            added = max(added or 0, grew) or None
        if run:  # the first run warms; a later one counts unless it compiled or captured
            if not c["compiles_after_warmup"] and not c["captures_after_warmup"]:
                break
            log.info("the capacity probe compiled or captured a graph; measuring again")
    free = None
    if before is not None:  # free: the device's, and what torch holds unused
        import torch

        held = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        free = torch.cuda.mem_get_info(device)[0] + held
    n = cores()
    return Capacity(cost, cpu, n, added, free, fits(cost, cpu, n, added, free), run + 1)


def _gpu_bytes(device: str) -> int | None:
    """GPU memory allocated now, the peak counter reset (None on a CPU)."""
    if not str(device).startswith("cuda"):
        return None
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)
