"""Recordings: a stream written to HDF5 as it arrives, read back for review, replay and movies.

The file is written in HDF5's single-writer/multiple-reader (SWMR) mode and flushed at least once
a second, so a recorder that is killed leaves a readable file missing at most the last second,
and a recording can be read while it grows. Layout (format version 1), N predictions:

- `values` (N, 20484), the wire dtype (float16 by default), left hemisphere first
- `second`, `seq`, `missed_before`: int64 (N,); `session`: ASCII (N,)
- `stimulus` (N, 2), `bold_time`, `publish_wall`, `received_wall`: float64
- `timings`, `header`: UTF-8 JSON strings (N,), the header as received
- `status`, `status_wall`: every heartbeat (JSON); `events`: JSON (recorder start/stop, metadata)
- attributes: `format`, `format_version`, `protocol_version`, `metadata` (JSON), `stream_id`,
  `model` (JSON), `mesh` (JSON), `dtype`, `source_url`, `created_wall`
- a second head the metadata announces (`spaces`: the subcortical model): a group `subcortical/`
  with `values` (M, n_outputs) and `second`, `seq`, `missed_before`, `bold_time`,
  `publish_wall`, `received_wall`, `stimulus`, `header` as above, for its M predictions

`read_recording(path)` returns a `Recording` with these as NumPy arrays and parsed dicts.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tribe_stream import N_VERTICES
from tribe_stream.errors import InputError
from tribe_stream.protocol import DTYPES, HEADS, PROTOCOL_VERSION, Message
from tribe_stream.types import Prediction

log = logging.getLogger(__name__)

FORMAT = "tribe-stream-recording"
FORMAT_VERSION = 1
_ROWS = 16  # rows per HDF5 chunk of `values`
_SCALARS = {
    "second": "<i8",
    "seq": "<i8",
    "missed_before": "<i8",
    "bold_time": "<f8",
    "publish_wall": "<f8",
    "received_wall": "<f8",
}
_PER_MESSAGE = ("v", "kind", "seq", "publish_wall", "next_seq")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _text(value: Any) -> str:
    """`value` as a string HDF5 can store (UTF-8: no lone surrogates)."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


class RecordingWriter:
    """Append predictions, heartbeats and events (as `protocol.decode` accepts them) to a new
    HDF5 recording (see module doc). A bad row raises without leaving the columns out of step
    (converted whole first, a failed write undone); `record()` counts them (`write_errors`)."""

    def __init__(
        self,
        path: str | Path,
        metadata: Mapping[str, Any],
        *,
        source_url: str = "",
        flush_interval: float = 1.0,
        overwrite: bool = False,
    ):
        import h5py

        self.path = Path(path)
        _check_output(self.path, overwrite)
        dtype_name = metadata.get("dtype", "float16")
        if not isinstance(dtype_name, str):
            dtype_name = ""  # float32 holds either wire dtype
        self.dtype = DTYPES.get(dtype_name, DTYPES["float32"])
        self.flush_interval = flush_interval
        self.rows = self.status_rows = self.event_rows = 0
        self.head_rows: dict[str, int] = {}
        self._session_meta: dict[str, str] = {}
        self._last_flush = time.monotonic()
        meta = {k: v for k, v in metadata.items() if k not in _PER_MESSAGE}
        try:  # HDF5's first flush must not fail (`_writing`): does the disk take the start?
            self.path.write_bytes(bytes(1 << 16))
        except OSError as exc:
            self.path.unlink(missing_ok=True)
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None
        f = self._file = h5py.File(self.path, "w", libver="latest")
        self._objects = [f]  # what `_writing` leaves open if a write fails
        text = h5py.string_dtype()

        def grow(name, shape, dtype, chunk):
            # numbers carry a Fletcher-32 checksum per chunk: damage is refused when read
            # (flipped bytes in `values` read back as a wrong map before), not drawn
            ds = f.create_dataset(
                name, (0, *shape), maxshape=(None, *shape), dtype=dtype, chunks=(chunk, *shape),
                fletcher32=dtype is not text,
            )  # fmt: skip
            self._objects.append(ds)
            return ds

        self._values = grow("values", (N_VERTICES,), self.dtype, _ROWS)
        self._scalars = {name: grow(name, (), dt, 256) for name, dt in _SCALARS.items()}
        self._stimulus = grow("stimulus", (2,), "<f8", 256)
        self._session = grow("session", (), "S16", 256)
        self._timings = grow("timings", (), text, 256)
        self._header = grow("header", (), text, 256)
        self._heads: dict[str, dict[str, Any]] = {}  # made now: SWMR cannot add datasets later
        spaces = meta.get("spaces") if isinstance(meta.get("spaces"), dict) else {}
        for name, space in spaces.items():
            n = space.get("n_outputs") if isinstance(space, dict) else None
            if name in HEADS and type(n) is int and 0 < n <= N_VERTICES:
                self._heads[name] = {
                    "values": grow(f"{name}/values", (n,), self.dtype, _ROWS),
                    **{k: grow(f"{name}/{k}", (), dt, 256) for k, dt in _SCALARS.items()},
                    "stimulus": grow(f"{name}/stimulus", (2,), "<f8", 256),
                    "header": grow(f"{name}/header", (), text, 256),
                }
                self.head_rows[name] = 0
        self._status = grow("status", (), text, 256)
        self._status_wall = grow("status_wall", (), "<f8", 256)
        self._events = grow("events", (), text, 64)
        f.attrs.update(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            protocol_version=PROTOCOL_VERSION,
            metadata=_dumps(meta),
            stream_id=_text(meta.get("stream_id", "")),
            model=_dumps(meta.get("model", {})),
            mesh=_dumps(meta.get("mesh", {})),
            dtype=self.dtype.name,
            source_url=_text(source_url),
            created_wall=time.time(),
        )
        with self._writing():  # HDF5's first writes
            f.swmr_mode = True  # from here on, the file on disk is always consistent
        self.add_event("start", source_url=source_url, metadata=meta)
        self.flush()

    def _append_row(self, n: int, columns: list[tuple[Any, Any]]) -> None:
        """Write row `n` of each (dataset, value); on failure cut them all back to `n` rows."""
        try:
            with self._writing():
                for ds, value in columns:
                    ds.resize(n + 1, axis=0)
                    ds[n] = value
        except BaseException:
            for ds, _ in columns if self._objects else ():  # never after a failed write
                if ds.shape[0] > n:
                    ds.resize(n, axis=0)
            raise

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Around HDF5 calls that write. After a refused write (full disk), closing or collecting
        HDF5's objects crashes the process (SIGSEGV): they stay open for good, their descriptor
        turned to /dev/null (the file keeps its last flush), and one OSError says why."""
        try:
            yield
        except (OSError, RuntimeError) as exc:
            m = re.search(r"errno = (\d+)", str(exc))
            if m is None or not self._objects:
                raise
            for obj in self._objects:
                ctypes.pythonapi.Py_IncRef(ctypes.py_object(obj.id))
            self._objects.clear()
            if self._file.id.valid:
                null = os.open(os.devnull, os.O_RDWR)
                os.dup2(null, self._file.id.get_vfd_handle())
                os.close(null)
            raise OSError(int(m[1]), os.strerror(int(m[1])), str(self.path)) from None

    def add_message(self, msg: Message) -> None:
        """A decoded message of any topic; metadata is logged (as an event) once per publisher
        session, and again whenever it changes."""
        if msg.topic == "prediction":
            self.add_prediction(msg)
        elif msg.topic in HEADS:
            self.add_head_prediction(msg)
        elif msg.topic == "status":
            self.add_status(msg)
        else:
            meta = {k: v for k, v in msg.header.items() if k not in _PER_MESSAGE}
            text = _dumps(meta)
            session = msg.header["session"]
            if self._session_meta.get(session) != text:
                self.add_event("metadata", metadata=meta)
                self._session_meta[session] = text

    def add_prediction(self, msg: Message) -> None:
        values, stimulus, row = self._row(msg, N_VERTICES)
        h = msg.header
        columns = [
            (self._values, values),
            *((ds, row[name]) for name, ds in self._scalars.items()),
            (self._stimulus, stimulus),
            (self._session, str(h["session"]).encode("ascii", "replace")[:16]),
            (self._timings, _dumps(h.get("timings", {}))),
            (self._header, _dumps(h)),
        ]
        self._append_row(self.rows, columns)
        self.rows += 1
        self.maybe_flush()

    def add_head_prediction(self, msg: Message) -> None:
        """A second head's prediction (`tribe.subcortical`) into its group."""
        ds = self._heads.get(msg.topic)
        if ds is None:
            raise InputError(f"the recording's metadata announced no {msg.topic} space")
        values, stimulus, row = self._row(msg, ds["values"].shape[1])
        columns = [(ds["values"], values), *((ds[k], row[k]) for k in _SCALARS)]
        columns += [(ds["stimulus"], stimulus), (ds["header"], _dumps(msg.header))]
        self._append_row(self.head_rows[msg.topic], columns)
        self.head_rows[msg.topic] += 1
        self.maybe_flush()

    def _row(self, msg: Message, n: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """A prediction message's values (the file's dtype), stimulus and scalar columns."""
        h = msg.header
        values = np.asarray(msg.values)
        if values.shape != (n,):
            raise InputError(f"prediction values have shape {values.shape}, not ({n},)")
        if values.dtype != self.dtype:
            with np.errstate(over="ignore"):  # float32 beyond float16's range: +-inf, as sent
                values = values.astype(self.dtype)
        stimulus = np.array(h["stimulus"], dtype="<f8")
        if stimulus.shape != (2,):
            raise InputError(f"stimulus {h['stimulus']!r:.40} is not [start, end]")
        row = {  # converted here, so a value that does not fit raises before anything is written
            "second": np.int64(h["second"]),
            "seq": np.int64(h["seq"]),
            "missed_before": np.int64(msg.missed_before),
            "bold_time": np.float64(h["bold_time"]),
            "publish_wall": np.float64(h["publish_wall"]),
            "received_wall": np.float64(msg.received),
        }
        return values, stimulus, row

    def add_status(self, msg: Message) -> None:
        columns = [
            (self._status_wall, np.float64(msg.header["publish_wall"])),
            (self._status, _dumps(msg.header)),
        ]
        self._append_row(self.status_rows, columns)
        self.status_rows += 1
        self.maybe_flush()

    def add_event(self, kind: str, **data: Any) -> None:
        event = _dumps({"kind": kind, "wall": time.time(), **data})
        self._append_row(self.event_rows, [(self._events, event)])
        self.event_rows += 1

    def maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        with self._writing():
            self._file.flush()
        self._last_flush = time.monotonic()

    def close(self, **summary: Any) -> None:
        if self._objects and self._file.id.valid:
            self.add_event("stop", rows=self.rows, **summary)
            self.flush()  # a write that fails does here, before HDF5 closes its objects
            with self._writing():
                self._file.close()


def _check_output(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; pass --overwrite or choose another file")
    if not path.parent.is_dir():
        raise InputError(f"folder {path.parent} does not exist; create it first")


def _metadata_from_header(h: Mapping[str, Any]) -> dict[str, Any]:
    # (a stream that says nothing of its spaces: its heads' predictions are not recorded)
    keys = ("stream_id", "session", "dtype", "shape", "mesh", "model", "t0_wall")
    return {k: h[k] for k in keys if k in h}


def record(
    url: str,
    path: str | Path,
    *,
    count: int | None = None,
    duration: float | None = None,
    overwrite: bool = False,
    flush_interval: float = 1.0,
    metadata_wait: float = 2.0,
    stop: threading.Event | None = None,
    **subscriber_kwargs: Any,
) -> dict[str, Any]:
    """Record `url` into `path` until `count` predictions, `duration` seconds, or `stop` is set.

    The file is created when the stream metadata arrives (a new subscriber gets it at once);
    if predictions arrive without it for `metadata_wait` s, their headers describe the stream.
    Returns a summary (rows, the subscriber's counters, `write_errors`: messages that could not be
    written, counted and skipped); raises InputError if nothing came.
    """
    from tribe_stream.client import Subscriber

    path = Path(path)
    _check_output(path, overwrite)
    stop = stop or threading.Event()
    writer: RecordingWriter | None = None
    pending: list[Message] = []
    first_pending = 0.0
    write_errors = 0
    t_end = None if duration is None else time.monotonic() + duration
    topics = ("prediction", "status", "metadata", *HEADS)
    sub = Subscriber(url, topics=topics, **subscriber_kwargs)
    try:
        while not stop.is_set():
            msg = sub.recv(timeout=0.2)
            now = time.monotonic()
            if msg is not None:
                pending.append(msg)
                first_pending = first_pending or (now if msg.topic == "prediction" else 0.0)
            if writer is None:
                meta = next((m.header for m in pending if m.topic == "metadata"), None)
                if meta is None and first_pending and now - first_pending >= metadata_wait:
                    first = next(m for m in pending if m.topic == "prediction")
                    meta = _metadata_from_header(first.header)
                if meta is not None:
                    writer = RecordingWriter(path, meta, source_url=url,
                                             flush_interval=flush_interval, overwrite=overwrite)  # fmt: skip
            if writer is not None:
                for m in pending:
                    try:
                        writer.add_message(m)
                    except OSError:  # the file failed (a full disk) and is closed: stop
                        raise
                    except Exception as exc:  # defence: count it and keep recording
                        write_errors += 1
                        note = log.warning if write_errors == 1 else log.debug
                        note("%s seq %s not written: %s (further ones are counted: write_errors)",
                             m.topic, m.seq, exc)  # fmt: skip
                pending.clear()
                writer.maybe_flush()
                if count is not None and writer.rows >= count:
                    break
            if t_end is not None and now >= t_end:
                break
    finally:
        stats = {**sub.stats, "write_errors": write_errors}
        sub.close()
        if writer is not None:
            writer.close(**stats, head_rows=writer.head_rows)
    if writer is None:
        raise InputError(
            f"nothing received from {url} (is a publisher running there? CURVE keys right?)"
        )
    summary = {"path": str(path), "rows": writer.rows, "status_rows": writer.status_rows}
    return {**summary, "head_rows": dict(writer.head_rows), **stats}


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass
class HeadRows:
    """A second head's predictions in a recording (`Recording.heads["subcortical"]`): `values`
    (M, n_outputs) in the stored dtype, each row's `seconds`, `seq`, `stimulus`, `bold_time`
    and `headers`; `space` as the metadata announced it (name, kind, n_outputs, grid...)."""

    space: dict[str, Any]
    values: np.ndarray
    seconds: np.ndarray
    seq: np.ndarray
    stimulus: np.ndarray
    bold_time: np.ndarray
    headers: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.seconds)

    def prediction(self, i: int) -> Prediction:
        """Row i as the Prediction that was published (values as float32, `space` its name)."""
        return _row(self, i, space=str(self.space.get("name")))


def _row(rows: HeadRows | Recording, i: int, space: str | None = None) -> Prediction:
    """Row i of recorded rows as the Prediction that was published (values as float32)."""
    h = rows.headers[i]
    return Prediction(
        second=int(rows.seconds[i]),
        values=np.asarray(rows.values[i], dtype=np.float32),
        stimulus=(float(rows.stimulus[i, 0]), float(rows.stimulus[i, 1])),
        bold_time=float(rows.bold_time[i]),
        timings={k: v for k, v in h.get("timings", {}).items() if v is not None},
        counters=dict(h.get("counters", {})),
        space=space,
    )


@dataclass
class Recording:
    """A recording in memory. `values` keeps the stored dtype unless `read_recording(dtype=...)`.

    Row i is the prediction for stimulus second `seconds[i]` ([stimulus[i, 0], stimulus[i, 1])
    s), the predicted BOLD at `bold_time[i]`; `missed_before[i]` predictions were lost in
    transport just before it. `metadata` is the stream metadata at the start of the recording.
    """

    path: Path
    values: np.ndarray
    seconds: np.ndarray
    seq: np.ndarray
    sessions: list[str]
    stimulus: np.ndarray
    bold_time: np.ndarray
    publish_wall: np.ndarray
    received_wall: np.ndarray
    missed_before: np.ndarray
    headers: list[dict[str, Any]]
    metadata: dict[str, Any]
    attrs: dict[str, Any]
    status: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    heads: dict[str, HeadRows] = field(default_factory=dict)
    """Second heads' predictions (`"subcortical"`), where the stream had any."""

    def __len__(self) -> int:
        return len(self.seconds)

    @property
    def timings(self) -> list[dict[str, Any]]:
        return [h.get("timings", {}) for h in self.headers]

    def prediction(self, i: int) -> Prediction:
        """Row i as the Prediction that was published (values as float32)."""
        return _row(self, i)

    def __iter__(self) -> Iterator[Prediction]:
        return (self.prediction(i) for i in range(len(self)))


def _open_h5(path: Path):
    import h5py

    if not path.is_file():
        raise InputError(f"recording {path} does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        if "already open for write" not in str(exc):  # truncated, not HDF5, ...: refused now (a
            raise InputError(f"{path} is not a readable HDF5 recording: {exc}") from None
    try:  # being written, or its recorder was killed: SWMR read access works for both. It
        # retries a read that fails its checksum (the writer's may be under way), by default
        # 100 times, the waits doubling from 1 ns: for ever, on a damaged file. 24: 17 ms.
        fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
        if attempts := getattr(ctypes.CDLL(h5py.h5p.__file__), "H5Pset_metadata_read_attempts", 0):
            attempts(ctypes.c_int64(fapl.id), ctypes.c_uint(24))  # (HDF5 >= 1.10, via h5py's)
        mode = h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ
        return h5py.File(h5py.h5f.open(os.fsencode(path), mode, fapl=fapl))
    except OSError as exc:
        raise InputError(f"{path} is not a readable HDF5 recording: {exc}") from None


def read_recording(path: str | Path, *, dtype: str | None = None) -> Recording:
    """Load a recording made by `tribe-stream record` (also one being written, or interrupted).

    Rows are cut to the shortest column, so a recorder killed mid-row leaves no half row.
    `dtype="float32"` converts `values` (stored as the wire dtype, float16 by default).
    Anything else, a damaged or foreign file, is refused in one line (InputError).
    """
    path = Path(path)
    with _open_h5(path) as f:
        try:
            if f.attrs.get("format") != FORMAT:
                raise InputError(f"{path} is not a tribe-stream recording (no format={FORMAT!r})")
            if int(f.attrs.get("format_version", 0)) > FORMAT_VERSION:
                raise InputError(f"{path} is a newer recording format; upgrade tribe-stream")
            names = ["values", "stimulus", "session", "header", *_SCALARS]
            n = min(f[name].shape[0] for name in names)
            for name in ["values", "stimulus", *_SCALARS]:
                if f[name].dtype.kind not in "iuf":
                    raise ValueError(f"`{name}` holds {f[name].dtype} data, not numbers")
            if f["values"].shape[1:] != (N_VERTICES,) or f["stimulus"].shape[1:] != (2,):
                shapes = f"`values` {f['values'].shape}, `stimulus` {f['stimulus'].shape}"
                raise ValueError(f"{shapes}: not (N, {N_VERTICES}) and (N, 2)")
            values = f["values"][:n]
            if dtype is not None:
                values = values.astype(DTYPES[dtype] if dtype in DTYPES else dtype)
            headers = [json.loads(s) for s in f["header"].asstr()[:n]]
            n_status = min(f["status"].shape[0], f["status_wall"].shape[0])
            attrs = {
                k: (v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v)
                for k, v in f.attrs.items()
            }
            columns = {name: f[name][:n] for name in _SCALARS}  # `second` is `seconds`
            return Recording(
                path=path,
                values=values,
                seconds=columns.pop("second"),
                sessions=[s.decode("ascii", "replace") for s in f["session"][:n]],
                stimulus=f["stimulus"][:n],
                **columns,
                headers=headers,
                metadata=json.loads(attrs.get("metadata", "{}")),
                attrs=attrs,
                status=[json.loads(s) for s in f["status"].asstr()[:n_status]],
                events=[json.loads(s) for s in f["events"].asstr()[:]],
                heads={
                    name: _read_head(f[name], name, attrs, dtype) for name in HEADS if name in f
                },
            )
        except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError) as exc:
            why = (str(exc).strip("'\"") or type(exc).__name__).splitlines()[0]
            raise InputError(f"{path} is a damaged recording: {why}") from None


def _read_head(group: Any, name: str, attrs: dict[str, Any], dtype: str | None) -> HeadRows:
    """A head's group, cut to its shortest column (as the main rows)."""
    names = ["values", "stimulus", "header", *_SCALARS]
    n = min(group[k].shape[0] for k in names)
    for k in ["values", "stimulus", *_SCALARS]:
        if group[k].dtype.kind not in "iuf":
            raise ValueError(f"`{name}/{k}` holds {group[k].dtype} data, not numbers")
    values = group["values"][:n]
    if dtype is not None:
        values = values.astype(DTYPES[dtype] if dtype in DTYPES else dtype)
    space = json.loads(attrs.get("metadata", "{}")).get("spaces", {}).get(name, {"name": name})
    return HeadRows(
        space=space,
        values=values,
        seconds=group["second"][:n],
        seq=group["seq"][:n],
        stimulus=group["stimulus"][:n],
        bold_time=group["bold_time"][:n],
        headers=[json.loads(s) for s in group["header"].asstr()[:n]],
    )


# ---------------------------------------------------------------------------------------------
# Replay


def replay(
    path: str | Path,
    url: str,
    *,
    speed: float = 1.0,
    loop: bool = False,
    wait_subscribers: float = 0.0,
    stop: threading.Event | None = None,
    on_ready: Callable[[int], None] | None = None,
    **publisher_kwargs: Any,
) -> int:
    """Publish a recording again: at the recorded pace (`speed` 1), `speed` times faster, or as
    fast as possible (`speed` 0). Waits up to `wait_subscribers` s for a first subscriber.
    `on_ready(n)` is called once the recording (n predictions) is read and the socket bound.
    Returns how many predictions were sent. Headers keep the recorded timings; `t0_wall` is
    null (the recording's is in metadata `replay.original_t0_wall`).
    """
    from tribe_stream.publish import Publisher

    if speed < 0:
        raise InputError(f"speed must be >= 0 (0 = as fast as possible), got {speed}")
    rec = read_recording(path)
    if len(rec) == 0:
        raise InputError(f"{path} holds no predictions")
    stop = stop or threading.Event()
    meta = rec.metadata
    publisher_kwargs.setdefault("dtype", rec.attrs.get("dtype", "float16"))
    publisher_kwargs.setdefault("stream_id", meta.get("stream_id"))
    publisher_kwargs.setdefault("model", meta.get("model"))
    sent = 0
    with Publisher(url, **publisher_kwargs) as pub:
        for head in rec.heads.values():
            pub.add_head(head.space, mask=_replay_mask(head.space))
        drop = ("t0_wall", "session", "dtype", "shape", "software", "stream_id", "spaces")
        extra = {k: v for k, v in meta.items() if k not in drop}
        original = meta.get("t0_wall")
        extra["replay"] = {"file": str(path), "speed": speed, "original_t0_wall": original}
        pub.set_metadata(extra)
        if on_ready is not None:
            on_ready(len(rec))
        if wait_subscribers > 0 and not pub.wait_for_subscribers(1, wait_subscribers):
            log.warning("no subscriber after %.1f s; replaying anyway", wait_subscribers)
        rows = [
            (rec.seconds, rec.prediction),
            *((h.seconds, h.prediction) for h in rec.heads.values()),
        ]
        order = sorted(  # by second; within one, the cortex before the heads (as published)
            (int(s), j, i) for j, (secs, _) in enumerate(rows) for i, s in enumerate(secs)
        )
        first = order[0][0]
        last_status = 0.0
        while not stop.is_set():
            start = time.monotonic()
            for second, j, i in order:
                if speed > 0:
                    target = start + (second - first) / speed
                    while not stop.is_set() and (wait := target - time.monotonic()) > 0:
                        stop.wait(min(wait, 0.1))
                if stop.is_set():
                    break
                pub.send(rows[j][1](i))
                sent += j == 0
                if time.monotonic() - last_status >= 1.0:
                    last_status = time.monotonic()
                    pub.status({"replay.sent": sent, "replay.rows": len(rec)})
            if not loop:
                break
            stop.wait(1.0 / speed if speed > 0 else 0.0)  # one second between loops
        pub.status({"replay.sent": sent, "replay.rows": len(rec)})
    return sent


def _replay_mask(space: Mapping[str, Any]) -> Any:
    """The mask of a recorded volume space when the atlas is here (structure means again)."""
    from tribe_stream.spaces import OutputSpace, mask_for

    try:
        n = int(space.get("n_outputs", 0))
        return mask_for(OutputSpace(str(space.get("name")), n, str(space.get("kind"))))
    except (InputError, TypeError, ValueError):
        return None
