"""Lab Streaming Layer bridge: predictions from a publisher, re-published as an LSL outlet.

One float32 channel per fsaverage5 vertex (`lh.0`..`lh.10241`, `rh.0`..`rh.10241`; or per
region), 1 Hz. Each sample is stamped on LSL's clock, through StreamClock and the stream's
`t0_wall`, at the time it describes: its stimulus second's start (lining up with EEG recorded
on the same stimulus) or, `stamp="bold"`, the predicted-BOLD time; without `t0_wall` (a
replay), its arrival.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from tribe_stream import HEMODYNAMIC_OFFSET_S, N_VERTICES
from tribe_stream.clock import StreamClock
from tribe_stream.errors import InputError, SourceError
from tribe_stream.protocol import FSAVERAGE5, PROTOCOL_VERSION, Message

log = logging.getLogger(__name__)

_STAMP_TEXT = {
    "stimulus": "start of the stimulus second",
    "bold": "predicted-BOLD time",
    "arrival": "arrival at the bridge",
}
STAMPS = tuple(_STAMP_TEXT)


def _pylsl():
    try:
        import pylsl
    except (ImportError, RuntimeError) as exc:  # RuntimeError: liblsl not found
        raise SourceError(
            f"LSL is not available ({exc}); install it with `pip install pylsl` "
            "(the wheel bundles liblsl)"
        ) from None
    return pylsl


def channel_labels(mesh: Mapping[str, Any] | None = None) -> list[tuple[str, str, int]]:
    """(label, hemisphere, vertex) per channel, in payload order."""
    hemis = (mesh or FSAVERAGE5).get("hemispheres", FSAVERAGE5["hemispheres"])
    out: list[tuple[str, str, int]] = []
    for hemi, short in (("left", "lh"), ("right", "rh")):
        start, stop = hemis[hemi]
        out.extend((f"{short}.{i}", hemi, i) for i in range(stop - start))
    return out


def stream_info(
    metadata: Mapping[str, Any],
    *,
    name: str = "tribe-stream",
    stype: str = "fMRI",
    source_id: str | None = None,
    stamp: str = "stimulus",
    labels: bool = True,
    regions: bool = False,
):
    """A pylsl.StreamInfo describing the stream: channels, mesh, model, what the stamps mean.

    `regions=True`: one channel per region of the metadata's `regions` (the `tribe.roi` topic),
    labelled with the region names, instead of one per vertex."""
    pylsl = _pylsl()
    stream_id = str(metadata.get("stream_id", "tribe-stream"))
    names = region_names(metadata) if regions else None
    n_channels = len(names) if names is not None else N_VERTICES
    source_id = source_id or f"tribe-stream:{stream_id}{':roi' if regions else ''}"
    info = pylsl.StreamInfo(name, stype, n_channels, 1.0, pylsl.cf_float32, source_id)
    desc = info.desc()
    acq = desc.append_child("acquisition")
    acq.append_child_value("manufacturer", "tribe-stream")
    model = metadata.get("model") or {}
    acq.append_child_value("model", str(model.get("name", "unknown")))
    ts = desc.append_child("tribe_stream")
    ts.append_child_value("protocol_version", str(PROTOCOL_VERSION))
    ts.append_child_value("stream_id", stream_id)
    ts.append_child_value("mesh", str((metadata.get("mesh") or FSAVERAGE5).get("name")))
    if names is not None:
        ts.append_child_value("units", metadata["regions"].get("units", "predicted BOLD"))
        ts.append_child_value("atlas", str(metadata["regions"].get("atlas", "")))
    else:
        ts.append_child_value("units", "predicted BOLD, per-run z-score units")
    ts.append_child_value("timestamps", _STAMP_TEXT.get(stamp, _STAMP_TEXT["arrival"]))
    offset = metadata.get("hemodynamic_offset_s", HEMODYNAMIC_OFFSET_S)
    ts.append_child_value("hemodynamic_offset_s", str(offset))
    ts.append_child_value("model_json", json.dumps(model))
    if labels:
        if names is None:
            rows = channel_labels(metadata.get("mesh"))
        else:  # a region's hemisphere: its name's; no vertex index
            rows = [(n, "left" if n.startswith("lh.") else "right", None) for n in names]
        chans = desc.append_child("channels")
        for label, hemi, vertex in rows:
            ch = chans.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("hemisphere", hemi)
            if vertex is not None:
                ch.append_child_value("vertex", str(vertex))
            ch.append_child_value("type", "BOLD")
            ch.append_child_value("unit", "z")
    return info


def region_names(metadata: Mapping[str, Any]) -> list[str]:
    """The region names a stream's metadata announces (its `regions`), in payload order."""
    regions = metadata.get("regions")
    if not isinstance(regions, Mapping) or not regions.get("names"):
        raise InputError(
            "the stream publishes no region means: start it with --roi LH RH (annotations)"
        )
    return [str(n) for n in regions["names"]]


def lsl_timestamp(header: Mapping[str, Any], stamp: str = "stimulus") -> float | None:
    """The LSL-clock time a prediction describes, or None if the stream has no `t0_wall`."""
    t0_wall = header.get("t0_wall")
    if stamp == "arrival" or not isinstance(t0_wall, int | float):
        return None
    t = float(header["stimulus"][0]) if stamp == "stimulus" else float(header["bold_time"])
    now_wall, now_mono = time.time(), time.monotonic()
    # The publisher's stream clock, rebuilt here from its wall-clock origin.
    clock = StreamClock(t0_monotonic=now_mono - (now_wall - t0_wall), t0_wall=t0_wall)
    return clock.lsl(t)


class LslBridge:
    """An LSL outlet fed with protocol messages: `push(msg)` per prediction."""

    def __init__(
        self, metadata: Mapping[str, Any], *, stamp: str = "stimulus", max_buffered: int = 360,
        **info: Any,
    ):  # fmt: skip
        """`info`: `stream_info`'s `name`, `stype`, `source_id`, `labels` and `regions`."""
        if stamp not in STAMPS:
            raise InputError(f"stamp {stamp!r} is not one of {STAMPS}")
        pylsl = _pylsl()
        self.stamp = stamp
        self.info = stream_info(metadata, stamp=stamp, **info)
        self.outlet = pylsl.StreamOutlet(self.info, chunk_size=1, max_buffered=max_buffered)
        self.pushed = 0
        self.topic = "roi" if info.get("regions") else "prediction"
        self._row = np.empty((1, self.info.channel_count()), np.float32)

    def push(self, msg: Message) -> float:
        """Send one prediction (or its region means); returns the LSL timestamp it carries."""
        if len(msg.values) != self._row.shape[1]:
            raise InputError(
                f"a message of {len(msg.values)} values for an outlet of {self._row.shape[1]}"
            )
        ts = lsl_timestamp(msg.header, self.stamp)
        if ts is None:
            ts = _pylsl().local_clock()
        self._row[0] = msg.values  # float16 -> float32, LSL has no half floats
        self.outlet.push_chunk(self._row, ts)
        self.pushed += 1
        return ts

    def have_consumers(self) -> bool:
        return bool(self.outlet.have_consumers())

    def close(self) -> None:
        self.outlet = None


def run_bridge(
    url: str,
    *,
    stop: threading.Event | None = None,
    count: int | None = None,
    metadata_wait: float = 3.0,
    linger_s: float = 1.0,
    bridge_kwargs: Mapping[str, Any] | None = None,
    **subscriber_kwargs: Any,
) -> dict[str, Any]:
    """Subscribe to `url` and feed an LSL outlet until `stop` (or `count` predictions).

    The outlet is made when the stream metadata arrives (or from the first prediction's header
    if none comes within `metadata_wait` s), since its channel description cannot change later.
    On the way out the outlet stays up `linger_s` more, so inlets get the last samples.
    """
    from tribe_stream.client import Subscriber

    stop = stop or threading.Event()
    bridge: LslBridge | None = None
    waiting: list[Message] = []
    regions = bool((bridge_kwargs or {}).get("regions"))
    topic = "roi" if regions else "prediction"
    with Subscriber(url, topics=(topic, "metadata"), **subscriber_kwargs) as sub:
        while not stop.is_set():
            msg = sub.recv(timeout=0.2)
            if msg is not None and msg.topic == topic:
                waiting.append(msg)
            if bridge is None:
                meta = sub.metadata
                late = waiting and time.time() - waiting[0].received >= metadata_wait
                if meta is None and not regions and late:  # region names: only in metadata
                    meta = waiting[0].header
                if meta is None:
                    continue
                bridge = LslBridge(meta, **(bridge_kwargs or {}))
                info = bridge.info
                log.info("LSL outlet %r (type %s, source_id %s) with %d channels", info.name(),
                         info.type(), info.source_id(), info.channel_count())  # fmt: skip
            for m in waiting:
                bridge.push(m)
            waiting.clear()
            if count is not None and bridge.pushed >= count:
                break
        stats = sub.stats
    if bridge is not None and bridge.have_consumers():
        time.sleep(linger_s)  # liblsl drops what is still in flight when the outlet goes
    return {"pushed": bridge.pushed if bridge else 0, **stats}
