"""Lab Streaming Layer bridge: predictions from a publisher, re-published as LSL outlets.

The data outlet: one float32 channel per fsaverage5 vertex (`L_00000`..`L_10241`, then
`R_00000`..`R_10241`: left hemisphere first, as the payload) or per region (`--topic roi`,
labelled with the atlas's region names), 1 Hz, in arbitrary units (the scale of the per-run
z-scored fMRI the model learned from; no physical unit). Each sample is stamped on LSL's clock,
through StreamClock and the stream's `t0_wall`, at the time it describes: its stimulus second's
start (lining up with EEG recorded on the same stimulus) or, `stamp="bold"`, the predicted-BOLD
time; without `t0_wall` (a replay), its arrival.

Beside it a marker outlet (type Markers, irregular rate, one string channel; `markers=False`
leaves it out): each word the stream took in, `word/TEXT`, stamped at the word's onset, and
stream events, `event/NAME[/COUNT]` (`stream-start` at stream time 0, `stream-end`, and the rise
of every drop or error counter, `event/dropped_seconds/2`, `event/missed_predictions/1`, ...)
stamped when the bridge learns of them. Markers are stamped at what they describe, so they
are not always pushed in time order.
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
from tribe_stream.untrained import UNTRAINED_LABEL, is_untrained

log = logging.getLogger(__name__)

_STAMP_TEXT = {
    "stimulus": "start of the stimulus second",
    "bold": "predicted-BOLD time",
    "arrival": "arrival at the bridge",
}
STAMPS = tuple(_STAMP_TEXT)

UNIT = "a.u."
"""Every channel's unit: predicted BOLD has no physical unit (see UNITS)."""
UNITS = (
    "predicted BOLD in arbitrary units (a.u.): the scale of the per-run z-scored fMRI the model "
    "was trained on, not a physical unit"
)
CHANNEL_TYPE = "BOLD"
"""Every channel's type (MNE has no BOLD type: MNE-LSL reads it as misc)."""
MARKERS_TEXT = (
    "word/TEXT: a word the stream took in, stamped at its onset; event/NAME[/COUNT]: "
    "stream-start (stamped at stream time 0), stream-end, or a drop or error counter's rise "
    "by COUNT (e.g. dropped_seconds, missed_predictions, engine_errors), stamped on arrival"
)


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
    """(label, hemisphere, vertex) per channel, in payload order: `L_00000`.. then `R_00000`.."""
    hemis = (mesh or FSAVERAGE5).get("hemispheres", FSAVERAGE5["hemispheres"])
    out: list[tuple[str, str, int]] = []
    for hemi in ("left", "right"):
        start, stop = hemis[hemi]
        out.extend((f"{hemi[0].upper()}_{i:05d}", hemi, i) for i in range(stop - start))
    return out


def _describe(desc, metadata: Mapping[str, Any], **values: str):
    """The `tribe_stream` child every outlet of a stream has: where it comes from, the model
    (and whether its weights are untrained), then `values`."""
    model = metadata.get("model") or {}
    acq = desc.append_child("acquisition")
    acq.append_child_value("manufacturer", "tribe-stream")
    name = str(model.get("name") or model.get("source") or "unknown")
    acq.append_child_value("model", name)
    ts = desc.append_child("tribe_stream")
    ts.append_child_value("protocol_version", str(PROTOCOL_VERSION))
    ts.append_child_value("stream_id", str(metadata.get("stream_id", "tribe-stream")))
    if "session" in metadata:
        ts.append_child_value("session", str(metadata["session"]))
    m = ts.append_child("model")
    m.append_child_value("name", name)
    m.append_child_value("checkpoint", str(model.get("source") or model.get("name") or "unknown"))
    m.append_child_value("untrained", "true" if is_untrained(metadata) else "false")
    if is_untrained(metadata):
        m.append_child_value("note", UNTRAINED_LABEL)
    m.append_child_value("json", json.dumps(model))
    ts.append_child_value("hemodynamic_offset_s",
                          str(metadata.get("hemodynamic_offset_s", HEMODYNAMIC_OFFSET_S)))  # fmt: skip
    for key, value in values.items():
        ts.append_child_value(key, value)
    return ts


def stream_info(
    metadata: Mapping[str, Any],
    *,
    name: str = "tribe-stream",
    stype: str = "fMRI",
    source_id: str | None = None,
    stamp: str = "stimulus",
    labels: bool = True,
    regions: bool | str = False,
):
    """A pylsl.StreamInfo describing the stream: channels (label, type, unit, hemisphere,
    vertex), and in `tribe_stream` the mesh, hemisphere order, units, what the stamps mean, the
    hemodynamic offset, the model (untrained or not) and the source stream's id.

    `regions=True`: one channel per region of the metadata's `regions` (the `tribe.roi` topic),
    labelled with the region names, instead of one per vertex; `regions="structures"`: the
    subcortical head's Harvard-Oxford structure means (`tribe.structures`)."""
    pylsl = _pylsl()
    stream_id = str(metadata.get("stream_id", "tribe-stream"))
    if regions == "structures":
        metadata = {**metadata, "regions": structure_regions(metadata)}
    names = region_names(metadata) if regions else None
    n_channels = len(names) if names is not None else N_VERTICES
    suffix = f":{regions}" if isinstance(regions, str) else ":roi" if regions else ""
    source_id = source_id or f"tribe-stream:{stream_id}{suffix}"
    info = pylsl.StreamInfo(name, stype, n_channels, 1.0, pylsl.cf_float32, source_id)
    desc = info.desc()
    mesh = metadata.get("mesh") or FSAVERAGE5
    reg = metadata.get("regions") or {}
    units = UNITS if names is None else f"{UNITS}; {reg.get('units') or 'region means'}"
    ts = _describe(desc, metadata, mesh=str(mesh.get("name", "fsaverage5")), units=units,
                   timestamps=_STAMP_TEXT.get(stamp, _STAMP_TEXT["arrival"]))  # fmt: skip
    if names is not None:
        ts.append_child_value("hemisphere_order", "left (lh.) then right (rh.) regions")
        ts.append_child_value("atlas", str(reg.get("name") or reg.get("atlas", "")))
        ts.append_child_value("atlas_id", str(reg.get("atlas", "")))
    else:
        hemis = mesh.get("hemispheres", FSAVERAGE5["hemispheres"])
        ts.append_child_value(
            "hemisphere_order",
            f"left then right: channels {hemis['left'][0]}-{hemis['left'][1] - 1} left (L_), "
            f"{hemis['right'][0]}-{hemis['right'][1] - 1} right (R_)",
        )
    if labels:
        if names is None:
            rows = channel_labels(mesh)
        else:  # a region's hemisphere: its name's; no vertex index
            rows = [(n, _hemisphere(n), None) for n in names]
        chans = desc.append_child("channels")
        for label, hemi, vertex in rows:
            ch = chans.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("type", CHANNEL_TYPE)
            ch.append_child_value("unit", UNIT)
            ch.append_child_value("hemisphere", hemi)
            if vertex is not None:
                ch.append_child_value("vertex", str(vertex))
    return info


def marker_info(metadata: Mapping[str, Any], *, name: str = "tribe-stream", source_id: str):
    """The marker outlet's pylsl.StreamInfo: one string channel, irregular rate, type Markers."""
    pylsl = _pylsl()
    info = pylsl.StreamInfo(f"{name}-markers", "Markers", 1, pylsl.IRREGULAR_RATE,
                            pylsl.cf_string, source_id)  # fmt: skip
    desc = info.desc()
    _describe(desc, metadata, markers=MARKERS_TEXT)
    ch = desc.append_child("channels").append_child("channel")
    ch.append_child_value("label", "marker")
    ch.append_child_value("type", "Markers")
    return info


def _hemisphere(name: str) -> str:
    """A region's hemisphere from its name (`lh.V1`, `Left Thalamus`)."""
    low = name.lower()
    if low.startswith(("lh.", "left")):
        return "left"
    return "right" if low.startswith(("rh.", "right")) else "both"


def structure_regions(metadata: Mapping[str, Any]) -> Mapping[str, Any]:
    """The subcortical head's structure names (`spaces.subcortical.regions`), or one line."""
    regions = ((metadata.get("spaces") or {}).get("subcortical") or {}).get("regions")
    if not isinstance(regions, Mapping):
        raise InputError(
            "the stream publishes no subcortical structure means (tribe.structures): run the "
            "subcortical model beside the cortical one, or bridge --topic prediction"
        )
    return regions


def region_names(metadata: Mapping[str, Any]) -> list[str]:
    """The region names a stream's metadata announces (its `regions`), in payload order."""
    regions = metadata.get("regions")
    if not isinstance(regions, Mapping) or not regions.get("names"):
        raise InputError(
            "the stream publishes no region means: start it with --roi ATLAS (or --roi LH RH), "
            "or give the bridge one: lsl URL --atlas NAME"
        )
    return [str(n) for n in regions["names"]]


def lsl_time(t0_wall: Any, t: float) -> float | None:
    """The LSL-clock time of stream time `t` of a stream whose time 0 was Unix time `t0_wall`,
    or None when `t0_wall` is unknown (a replay)."""
    if not isinstance(t0_wall, int | float) or isinstance(t0_wall, bool):
        return None
    now_wall, now_mono = time.time(), time.monotonic()
    # The publisher's stream clock, rebuilt here from its wall-clock origin.
    clock = StreamClock(t0_monotonic=now_mono - (now_wall - t0_wall), t0_wall=t0_wall)
    return clock.lsl(t)


def lsl_timestamp(header: Mapping[str, Any], stamp: str = "stimulus") -> float | None:
    """The LSL-clock time a prediction describes, or None if the stream has no `t0_wall`."""
    if stamp == "arrival":
        return None
    t = float(header["stimulus"][0]) if stamp == "stimulus" else float(header["bold_time"])
    return lsl_time(header.get("t0_wall"), t)


class LslBridge:
    """An LSL outlet fed with protocol messages: `push(msg)` per prediction."""

    def __init__(
        self, metadata: Mapping[str, Any], *, stamp: str = "stimulus", max_buffered: int = 360,
        atlas: Any = None, **info: Any,
    ):  # fmt: skip
        """`info`: `stream_info`'s `name`, `stype`, `source_id`, `labels` and `regions`.
        `atlas` (a `regions.Atlas`): region means made here from each vertex prediction, one
        channel per region (for a stream that publishes no `tribe.roi` topic)."""
        if stamp not in STAMPS:
            raise InputError(f"stamp {stamp!r} is not one of {STAMPS}")
        pylsl = _pylsl()
        self.stamp = stamp
        self.atlas = atlas
        if atlas is not None:
            here = {"names": list(atlas.names), "name": atlas.name, "atlas": atlas.name,
                    "units": "means over each region's vertices, made by the LSL bridge"}  # fmt: skip
            metadata, info = {**metadata, "regions": here}, {**info, "regions": True}
        self.info = stream_info(metadata, stamp=stamp, **info)
        self.outlet = pylsl.StreamOutlet(self.info, chunk_size=1, max_buffered=max_buffered)
        self.pushed = 0
        self.topic = "roi" if info.get("regions") and atlas is None else "prediction"
        if info.get("regions") == "structures":
            self.topic = "structures"
        self._row = np.empty((1, self.info.channel_count()), np.float32)

    def push(self, msg: Message) -> float:
        """Send one prediction (or its region means); returns the LSL timestamp it carries."""
        values = msg.values if self.atlas is None else self.atlas.means(msg.values)
        if len(values) != self._row.shape[1]:
            raise InputError(
                f"a message of {len(values)} values for an outlet of {self._row.shape[1]}"
            )
        ts = lsl_timestamp(msg.header, self.stamp)
        if ts is None:
            ts = _pylsl().local_clock()
        self._row[0] = values  # float16 -> float32, LSL has no half floats
        self.outlet.push_chunk(self._row, ts)
        self.pushed += 1
        return ts

    def have_consumers(self) -> bool:
        return bool(self.outlet.have_consumers())

    def close(self) -> None:
        self.outlet = None


def _watched(counters: Any) -> dict[str, float]:
    """The drop and error counters of a header's `counters` (names with `drop` or `error`)."""
    if not isinstance(counters, Mapping):
        return {}
    return {k: float(v) for k, v in counters.items()
            if v is not None and ("drop" in k.lower() or "error" in k.lower())}  # fmt: skip


class MarkerOutlet:
    """The marker outlet beside the predictions: `take(msg)` for every prediction and status
    message of the stream; it pushes the words and events they tell of (module docs)."""

    def __init__(self, metadata: Mapping[str, Any], *, name: str = "tribe-stream",
                 source_id: str):  # fmt: skip
        pylsl = _pylsl()
        self.info = marker_info(metadata, name=name, source_id=source_id)
        self.outlet = pylsl.StreamOutlet(self.info)
        self.words = self.events = 0
        self._session: str | None = None
        self._started = False
        self._seen: dict[str, float] = {}

    def push(self, marker: str, ts: float | None = None) -> None:
        """One marker at LSL time `ts` (now when None)."""
        self.outlet.push_sample([marker], _pylsl().local_clock() if ts is None else ts)

    def _event(self, name: str, ts: float | None = None) -> None:
        self.push(f"event/{name}", ts)
        self.events += 1

    def take(self, msg: Message) -> None:
        h = msg.header
        prediction = msg.topic == "prediction"
        if h.get("session") != self._session:  # a publisher (re)started: its counters anew
            self._session, self._started = h.get("session"), False
            fresh = h.get("seq") == 0 if prediction else h.get("next_seq") == 0
            self._seen = {} if fresh else _watched(h.get("counters"))  # joined late: from here
        t0_wall = h.get("t0_wall")
        if prediction and not self._started:
            self._started = True
            self._event("stream-start", lsl_time(t0_wall, 0.0))
        if msg.missed_before:
            self._event(f"missed_predictions/{msg.missed_before}")
        for key, value in _watched(h.get("counters")).items():
            if value > self._seen.get(key, 0.0):
                self._event(f"{key}/{value - self._seen.get(key, 0.0):g}")
            self._seen[key] = value
        for text, onset, _ in h.get("words", ()) if prediction else ():
            self.push(f"word/{text}", lsl_time(t0_wall, onset))
            self.words += 1
        if h.get("ended") is True:
            self._event("stream-end")
            self._session = None

    def have_consumers(self) -> bool:
        return bool(self.outlet.have_consumers())


def run_bridge(
    url: str,
    *,
    stop: threading.Event | None = None,
    count: int | None = None,
    metadata_wait: float = 3.0,
    linger_s: float = 1.0,
    markers: bool = True,
    stream_id: str | None = None,
    bridge_kwargs: Mapping[str, Any] | None = None,
    **subscriber_kwargs: Any,
) -> dict[str, Any]:
    """Subscribe to `url` and feed an LSL outlet (and, `markers`, the marker outlet) until
    `stop` or `count` predictions (a stream that ends and starts again is followed on). One
    stream: `stream_id`, or the first whose metadata comes (a publisher may carry several).

    The outlets are made when the stream metadata arrives (or from the first prediction's header
    if none comes within `metadata_wait` s), since their description cannot change later.
    On the way out the outlets stay up `linger_s` more, so inlets get the last samples.
    """
    from tribe_stream.client import Subscriber

    stop = stop or threading.Event()
    kwargs = dict(bridge_kwargs or {})
    bridge: LslBridge | None = None
    marks: MarkerOutlet | None = None
    waiting: list[Message] = []
    regions = bool(kwargs.get("regions")) and kwargs.get("atlas") is None  # the publisher's
    topic = "roi" if regions else "prediction"
    if kwargs.get("regions") == "structures":  # the subcortical head's structure means
        topic = "structures"
    topics = {topic, "metadata"} | ({"prediction", "status"} if markers else set())
    with Subscriber(url, topics=topics, **subscriber_kwargs) as sub:
        while not stop.is_set():
            msg = sub.recv(timeout=0.2)
            if msg is not None and msg.topic != "metadata":
                waiting.append(msg)
            if bridge is None:
                del waiting[:-600]  # until the metadata comes
                meta = sub.metadata
                if meta is not None and stream_id not in (None, meta.get("stream_id")):
                    meta = None  # another stream's
                ours = (m for m in waiting if m.topic == topic and stream_id in (None, m.stream_id))
                first = next(ours, None)
                late = first is not None and time.time() - first.received >= metadata_wait
                if meta is None and not regions and late:  # region names: only in metadata
                    meta = first.header
                if meta is None:
                    continue
                bridge = LslBridge(meta, **kwargs)
                stream_id = str(meta.get("stream_id"))
                info = bridge.info
                log.info("LSL outlet %r (type %s, source_id %s) with %d channels", info.name(),
                         info.type(), info.source_id(), info.channel_count())  # fmt: skip
                if markers:
                    marks = MarkerOutlet(meta, name=info.name(),
                                         source_id=f"{info.source_id()}:markers")  # fmt: skip
            for m in waiting:
                if m.stream_id != stream_id:
                    continue
                if m.topic == topic:
                    bridge.push(m)
                if marks is not None and m.topic in ("prediction", "status"):
                    marks.take(m)
            waiting.clear()
            if count is not None and bridge.pushed >= count:
                break
        stats = sub.stats
    outlets = [o for o in (bridge, marks) if o is not None]
    if any(o.have_consumers() for o in outlets):
        time.sleep(linger_s)  # liblsl drops what is still in flight when an outlet goes
    out = {"pushed": bridge.pushed if bridge else 0, **stats}
    out.update(words=marks.words if marks else 0, events=marks.events if marks else 0)
    return out
