"""Sinks a stream writes to in-process (the ZeroMQ publisher is `tribe_stream.publish`)."""

from __future__ import annotations

import functools
import secrets
import time
from pathlib import Path
from typing import Any

from tribe_stream.protocol import PredictionEncoder, decode, stream_metadata
from tribe_stream.types import Prediction, Sink


class RecorderSink(Sink):
    """Write predictions straight to an HDF5 recording, in the layout `tribe-stream record`
    writes: each goes through the wire format once, so the file holds exactly what a subscriber
    would have recorded, and `render`, `movie` and `read_recording` read it."""

    def __init__(
        self,
        path: str | Path,
        *,
        model: dict[str, Any] | None = None,
        clock=None,
        stream_id: str = "tribe-stream",
        dtype: str = "float32",
    ):
        from tribe_stream.recording import RecordingWriter

        self.clock = clock
        self.stream_id, self.dtype, self.model = stream_id, dtype, model or {}
        self.session = secrets.token_hex(8)
        t0 = clock.t0_wall if clock is not None else None
        meta = stream_metadata(stream_id=stream_id, dtype=dtype, model=self.model, t0_wall=t0)
        self._writer = RecordingWriter(path, meta, source_url="in-process")
        ids = dict(stream_id=stream_id, session=self.session, dtype=dtype, model=self.model)
        self._build = functools.partial(PredictionEncoder, **ids)  # t0_wall=
        self._encoder = self._build(t0_wall=t0)
        self._seq = 0

    def set_metadata(self, metadata: dict[str, Any]) -> None:
        """The pipeline restarts its clock just before the sources start: stamp from there."""
        if "t0_wall" in metadata:
            self._encoder = self._build(t0_wall=metadata["t0_wall"])
            self._writer.add_event("metadata", metadata={"t0_wall": metadata["t0_wall"]})

    def send(self, prediction: Prediction) -> None:
        now = time.time()
        frames = self._encoder.encode(
            prediction,
            seq=self._seq,
            publish_wall=now,
            publish_time=self.clock.now() if self.clock is not None else None,
        )
        self._seq += 1
        msg = decode(frames)
        msg.received = now
        self._writer.add_prediction(msg)

    def close(self) -> None:
        self._writer.close()
