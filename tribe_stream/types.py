"""The plain data that flows between the parts: chunks, features and predictions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Modality = Literal["text", "audio", "video"]
MODALITIES: tuple[Modality, ...] = ("text", "audio", "video")
"""The brain model's concat order."""


@dataclass
class Chunk:
    """Timestamped media from a source, on the stream clock (seconds since stream start).

    `kind` is "video" (data: uint8 frames `(N, H, W, 3)`, `times`: one stamp per frame),
    "audio" (data: float32 mono samples at `rate` Hz, `times`: start stamp only) or
    "words" (data: list of `Word`).
    """

    kind: Literal["video", "audio", "words"]
    data: object
    start: float
    end: float
    capture_time: float
    times: np.ndarray | None = None
    rate: float | None = None


@dataclass
class Word:
    """A recognised word on the stream clock."""

    text: str
    onset: float
    duration: float


@dataclass
class Features:
    """One 0.5 s bin of one modality: `values` is `(L, D)`; zeros mean 'present but empty'."""

    modality: Modality
    bin_index: int
    values: np.ndarray


@dataclass
class Prediction:
    """The brain model's answer for stimulus second `second` ([second, second+1) s).

    `values` is float32 `(n_vertices,)`; `bold_time` is the predicted-BOLD time (second + 5 s).
    `timings` maps a stage name to a stream-clock or wall time stamp (see docs/PROTOCOL.md);
    `counters` carries the stream's running counts (drops, errors) at the time of this prediction.
    """

    second: int
    values: np.ndarray
    stimulus: tuple[float, float]
    bold_time: float
    timings: dict[str, float] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    stream_id: str | None = None
    """Which stream made it, when one process serves several (`tribe-stream serve`)."""
    words: list[Word] = field(default_factory=list)
    """The words the stream took in since its previous prediction (stream clock; the wire's
    `words`): each word once, whichever second it falls in (one heard late comes later)."""
    space: str | None = None
    """The head that made it: None for the cortex (`(20484,)` fsaverage5), else a second head's
    space name (`"subcortical"`: `(n_voxels,)` in the mask's order; published on its own topic)."""


class Sink:
    """Where predictions go (ZeroMQ publisher, recorder, LSL outlet, a test list).

    `send` and `status` must never block the pipeline: a slow consumer drops, counts and goes on.
    `heads`: whether it takes a second head's predictions (`Prediction.space` set) too.
    """

    heads: bool = False

    def send(self, prediction: Prediction) -> None:
        raise NotImplementedError

    def status(self, counters: dict[str, float]) -> None:
        """A 1 Hz heartbeat with the stream's counters (drops, lag behind real time, queue depths)."""

    def close(self) -> None:
        """Release sockets and files."""
