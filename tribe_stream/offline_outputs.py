"""Writing offline predictions in the formats researchers read, by the output's extension.

| extension | what is written |
|---|---|
| `.npy` | `(T, 20484)` float32, and `NAME.json` beside it (metadata) |
| `.h5` / `.hdf5` | a recording in the recorder's layout (float32), so `render`, `movie` and `read_recording` read it; metadata in its attributes |
| `.func.gii` | one GIfTI time series per hemisphere: `NAME.lh.func.gii`, `NAME.rh.func.gii` (one data array per second, `TimeStep` 1000 ms), metadata in the file |
| `.mgh` / `.mgz` | one FreeSurfer volume per hemisphere, `(10242, 1, 1, T)`, TR 1000 ms in the header: `NAME.lh.mgz`, `NAME.rh.mgz`, and `NAME.json` (metadata) |

Beside every output, `NAME.words.tsv` holds the words its text features came from (the official
word TSV layout: `--transcript` reads it back to the same predictions; the header alone when no
word was used); the metadata's `words` says where they came from (a transcript, or the speech
recogniser with its model and settings). It is written before the output's own files, and is
one of the files (`file_names`) that mark an output finished.

Contributions (`predict --contributions`: each modality alone) go beside the main output in its
format, the modality before the extension: `clip.text.npy`, `clip.audio.lh.func.gii`, ...; their
metadata say which modality (`contribution`).

Every file records its TR (1 s, or the scan's after `predict --tr`: `scan_timing.py`, with each
row's acquisition time), the 5 s hemodynamic offset, the model and the stimulus, and is written
atomically (a temporary name in the same folder, then a rename): no half-written file is ever
left under its final name. BIDS names (`bids_output`: `sub-01_task-x_hemi-L_space-fsaverage5_
desc-tribe_bold.func.gii`, ...) add a JSON sidecar in every format (`bids_fields`).
`read_prediction_file` reads every one of them back, and recordings (docs/OUTPUTS.md).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from tribe_stream import HEMODYNAMIC_OFFSET_S, N_VERTICES, N_VERTICES_HEMI
from tribe_stream.errors import InputError
from tribe_stream.outputs import atomic_write, check_output

if TYPE_CHECKING:
    from tribe_stream.prediction import Predictions

FORMATS = {"npy": ".npy", "h5": ".h5", "gii": ".func.gii", "mgh": ".mgh", "mgz": ".mgz"}
"""`--format` names for a folder of outputs, and the extension each gives."""
SUFFIXES = (".npy", ".h5", ".hdf5", ".func.gii", ".mgh", ".mgz", ".dtseries.nii", ".nii.gz", ".nii")
"""`.dtseries.nii` (CIFTI-2: the cortex, and the subcortical voxels), `.nii(.gz)` (a volume: the
subcortical model): `volume_outputs.py`; a longer name ending in .nii goes before `.nii`."""
HEMIS = (
    ("lh", "CortexLeft", slice(0, N_VERTICES_HEMI)),
    ("rh", "CortexRight", slice(N_VERTICES_HEMI, N_VERTICES)),
)


def output_suffix(path: str | os.PathLike) -> str:
    """The format an output path asks for (one line when it asks for none we write)."""
    name = str(path).lower()
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return suffix
    raise InputError(
        f"output {path}: unknown format; name a .npy, .h5, .func.gii, .mgh or .mgz file"
    )


def output_stem(path: Path) -> Path:
    """`out/clip.func.gii` -> `out/clip` (the name hemisphere files and sidecars build on)."""
    suffix = output_suffix(path)
    return path.with_name(path.name[: -len(suffix)])


def output_files(path: str | os.PathLike, *, words: bool = True) -> list[Path]:
    """Every file `save_predictions(preds, path)` writes, checked as outputs (before any work)."""
    files = file_names(path, words=words)
    for f in files:
        check_output(f, (f.suffix,) if not f.name.endswith(".func.gii") else (".gii",))
    return files


def words_path(path: str | os.PathLike) -> Path:
    """The words file beside the output `path`: `out/clip.func.gii` -> `out/clip.words.tsv`."""
    p = Path(path).expanduser()
    stem = output_stem(p)
    return stem.with_name(stem.name + ".words.tsv")


def file_names(path: str | os.PathLike, *, words: bool = True) -> list[Path]:
    """The files one prediction output `path` consists of (hemisphere files, sidecars, then its
    words file unless `words` is False, as for a contribution)."""
    p = Path(path).expanduser()
    suffix = output_suffix(p)
    stem = output_stem(p)
    return _data_files(p, suffix, stem) + ([words_path(p)] if words else [])


def _data_files(p: Path, suffix: str, stem: Path) -> list[Path]:
    if suffix in (".dtseries.nii", ".nii.gz", ".nii"):  # with its JSON: volume_outputs.py
        return [p, stem.with_name(stem.name + ".json")]
    bids = _BIDS_STEM.fullmatch(stem.name) is not None  # BIDS names: a JSON sidecar always
    if suffix in (".func.gii", ".mgh", ".mgz"):
        files = [_hemi_file(stem, h, suffix) for h, _, _ in HEMIS]
    else:
        files = [p]
    if suffix in (".npy", ".mgh", ".mgz") or bids:
        files.append(stem.with_name(stem.name + ".json"))
    return files


BIDS_TAIL = "_space-fsaverage5_desc-tribe_bold"
"""What `--bids-name ENTITIES` is followed by: `ENTITIES_space-fsaverage5_desc-tribe_bold.EXT`
(hemisphere files: `ENTITIES_hemi-L_space-...`)."""
_BIDS_ENTITIES = re.compile(r"sub-[A-Za-z0-9]+(?:_(?!hemi-|space-|desc-)[a-z]+-[A-Za-z0-9]+)*")
_BIDS_STEM = re.compile(
    r"(?P<head>sub-[A-Za-z0-9]+(?:_[a-z]+-[A-Za-z0-9]+)*?)_(?P<tail>space-.+_bold)"
)
_BIDS_HEMI = re.compile(
    r"(?P<head>sub-.+?)_hemi-[LR]_(?P<tail>space-.+_bold)(?P<ext>\.func\.gii|\.mgh|\.mgz)"
)


def bids_output(folder: str | os.PathLike, entities: str, fmt: str = "gii") -> Path:
    """The output `predict --bids-name ENTITIES` writes into `folder` in format `fmt`:
    `folder/ENTITIES_space-fsaverage5_desc-tribe_bold.func.gii` (its hemisphere files
    `..._hemi-L_space-...`, and a JSON sidecar beside them). One line for a malformed name."""
    if not _BIDS_ENTITIES.fullmatch(entities or ""):
        raise InputError(
            f"--bids-name {entities!r}: give BIDS entities like sub-01_task-movie_run-1 (sub- "
            "first, key-value pairs of letters and digits joined by _; hemi, space, desc added)"
        )
    return Path(folder).expanduser() / f"{entities}{BIDS_TAIL}{FORMATS[fmt]}"


def _hemi_file(stem: Path, hemi: str, suffix: str) -> Path:
    """A hemisphere's file of a pair: `clip.lh.func.gii`, or BIDS `sub-01_hemi-L_...func.gii`."""
    if m := _BIDS_STEM.fullmatch(stem.name):
        side = "L" if hemi == "lh" else "R"
        return stem.with_name(f"{m['head']}_hemi-{side}_{m['tail']}{suffix}")
    return stem.with_name(f"{stem.name}.{hemi}{suffix}")


def pair_name(path: str | os.PathLike) -> Path:
    """Either hemisphere's file of a pair -> the pair's common name (`clip.lh.func.gii` ->
    `clip.func.gii`, `sub-01_hemi-L_space-fsaverage5_bold.mgz` -> `sub-01_space-..._bold.mgz`);
    any other name as it is."""
    p = Path(path).expanduser()
    if m := _BIDS_HEMI.fullmatch(p.name):
        return p.with_name(f"{m['head']}_{m['tail']}{m['ext']}")
    for h, _, _ in HEMIS:
        for suffix in (".func.gii", ".mgh", ".mgz"):
            if p.name.endswith(f".{h}{suffix}"):
                return p.with_name(p.name[: -len(f".{h}{suffix}")] + suffix)
    return p


def contribution_path(path: str | os.PathLike, modality: str) -> Path:
    """Where `modality`'s contribution to the output `path` goes: `out/clip.h5` ->
    `out/clip.audio.h5` (the same format; hemisphere files and sidecars build on it)."""
    p = Path(path).expanduser()
    suffix = output_suffix(p)
    return p.with_name(output_stem(p).name + f".{modality}" + p.name[-len(suffix) :])


def contribution_files(path: str | os.PathLike) -> list[Path]:
    """Every file the contributions of each modality to `path` could take (checked before work)."""
    from tribe_stream.types import MODALITIES

    return [f for m in MODALITIES for f in output_files(contribution_path(path, m), words=False)]


def find_contributions(path: str | os.PathLike) -> dict[str, Path]:
    """The contribution files written beside the output `path` (or beside the output one of
    them belongs to), `{modality: path}`; absent modalities have none."""
    from tribe_stream.types import MODALITIES

    p = pair_name(path)
    suffix = output_suffix(p)
    stem = output_stem(p)
    for m in MODALITIES:  # given a contribution: its siblings are those of the main output
        if stem.name.endswith(f".{m}"):
            p = p.with_name(stem.name[: -len(m) - 1] + p.name[-len(suffix) :])
    found = {m: contribution_path(p, m) for m in MODALITIES}
    return {m: f for m, f in found.items() if all(x.is_file() for x in file_names(f, words=False))}


def _metadata(preds: Predictions) -> dict:
    meta = dict(preds.metadata)
    meta.setdefault("tr_s", 1.0)
    meta.setdefault("hemodynamic_offset_s", HEMODYNAMIC_OFFSET_S)
    meta["n_seconds"] = len(preds)
    if "times_s" not in meta:  # a resampled file's rows are its volumes, at `times_s`
        meta["first_second"] = int(preds.seconds[0]) if len(preds) else 0
    return meta


def _json(preds: Predictions, name: str = "") -> str:
    meta = _metadata(preds)
    return json.dumps(bids_fields(meta, name) | meta, indent=2, default=str) + "\n"


def bids_fields(meta: dict, name: str = "") -> dict:
    """The BIDS sidecar fields of a prediction's metadata (every JSON sidecar holds them):
    `RepetitionTime` (s between rows), `StartTime` (the first row's predicted-BOLD time, s after
    the stimulus's start: 5 s, the hemodynamic offset, at 1 Hz), `HemodynamicOffset` (5 s),
    `TaskName` (from the file `name`'s task entity), `Sources`, and the untrained label when
    the weights are untrained."""
    from tribe_stream.untrained import UNTRAINED_LABEL, is_untrained

    offset = _number(meta.get("hemodynamic_offset_s"), HEMODYNAMIC_OFFSET_S)
    times = meta.get("times_s")
    first = times[0] if isinstance(times, list) and times else meta.get("first_second", 0) + offset
    fields = {
        "RepetitionTime": _number(meta.get("tr_s"), 1.0),
        "StartTime": first,
        "HemodynamicOffset": offset,
        "Description": "fMRI predicted by TRIBE v2 (tribe-stream) on fsaverage5, per-run z-scores",
    }
    if task := re.search(r"(?:^|_)task-([A-Za-z0-9]+)", name):
        fields["TaskName"] = task.group(1)
    if meta.get("stimulus"):
        fields["Sources"] = [str(meta["stimulus"])]
    if is_untrained(meta):
        fields["Untrained"] = UNTRAINED_LABEL
    return fields


def save_predictions(
    preds: Predictions, path: str | os.PathLike, *, words: bool = True
) -> list[Path]:
    """Write `preds` in the format `path`'s extension names, its words file beside it (unless
    `words` is False: a contribution shares its output's words) and its contributions
    (`contribution_path`); returns the files written. The contributions and the words are
    written first, so the output's own files, renamed into place last, mark the whole set
    finished (a batch's `--resume` skips an input only when they are all there)."""
    from tribe_stream.transcripts import write_official_transcript
    from tribe_stream.volume_outputs import is_volume, save_volume

    if is_volume(preds, path):  # the subcortical model's voxels: NIfTI (volume_outputs.py)
        return save_volume(preds, path, words_path(path) if words else None)
    files = output_files(path, words=words)
    suffix = output_suffix(path)
    values = np.ascontiguousarray(preds.values, dtype=np.float32)
    if values.ndim != 2 or values.shape[1] != N_VERTICES:
        raise InputError(f"predictions of shape {values.shape}; expected (T, {N_VERTICES})")
    parts = [
        save_predictions(part, contribution_path(path, m), words=False)
        for m, part in preds.contributions.items()
    ]
    files_data = files[:-1] if words else files
    if words:  # before the output's own files: their last rename marks the set finished
        write_official_transcript(files[-1], preds.words or [])
    data = [f for f in files_data if f.suffix != ".json"]
    for f in files_data:
        if f.suffix == ".json":
            atomic_write(f, lambda tmp, f=f: tmp.write_text(_json(preds, f.name)))
    if suffix == ".npy":
        atomic_write(data[0], lambda tmp: np.save(tmp, values))
    elif suffix in (".h5", ".hdf5"):
        atomic_write(data[0], lambda tmp: _write_h5(tmp, preds, values))
    elif suffix == ".func.gii":
        for f, (_, structure, rows) in zip(data, HEMIS, strict=True):
            atomic_write(
                f, lambda tmp, s=structure, r=rows: _write_gifti(tmp, preds, values[:, r], s)
            )
    else:
        tr = _number(preds.metadata.get("tr_s"), 1.0)
        for f, (_, _, rows) in zip(data, HEMIS, strict=True):
            atomic_write(f, lambda tmp, r=rows: _write_mgh(tmp, values[:, r], tr))
    return files + [f for written in parts for f in written]


def _write_h5(tmp: Path, preds: Predictions, values: np.ndarray) -> None:
    import time

    from tribe_stream.protocol import PredictionEncoder, decode, stream_metadata
    from tribe_stream.recording import RecordingWriter
    from tribe_stream.types import Prediction

    tmp.unlink()  # the writer refuses an existing file
    meta = _metadata(preds)
    stream_id = Path(str(meta.get("stimulus", "offline"))).name or "offline"
    model = meta.get("model") or {}
    header = stream_metadata(
        stream_id=stream_id, dtype="float32", model=model, extra={"offline": meta}
    )
    encoder = PredictionEncoder(
        stream_id=stream_id, session="offline", dtype="float32", model=model
    )
    writer = RecordingWriter(tmp, header, source_url="offline")
    offset, tr = meta["hemodynamic_offset_s"], float(meta["tr_s"])
    rows = meta.get("volumes") or [int(k) for k in preds.seconds.tolist()]  # volumes: resampled
    try:
        for i, (k, s) in enumerate(zip(rows, preds.seconds.tolist(), strict=True)):
            p = Prediction(int(k), values[i], (float(s), float(s) + tr), float(s) + offset)
            msg = decode(encoder.encode(p, seq=i, publish_wall=time.time()))
            msg.received = time.time()
            writer.add_prediction(msg)
    finally:
        writer.close()


def _write_gifti(tmp: Path, preds: Predictions, rows: np.ndarray, structure: str) -> None:
    import nibabel as nib
    from nibabel.gifti import GiftiDataArray, GiftiImage, GiftiMetaData

    meta = {
        k: (v if isinstance(v, str) else json.dumps(v, default=str))
        for k, v in _metadata(preds).items()
    }
    meta["AnatomicalStructurePrimary"] = structure
    step = f"{1000.0 * _number(preds.metadata.get('tr_s'), 1.0):.6f}"
    darrays = [
        GiftiDataArray(
            row.astype(np.float32),
            intent="NIFTI_INTENT_TIME_SERIES",
            datatype="NIFTI_TYPE_FLOAT32",
            meta=GiftiMetaData({"TimeStep": step}),
        )
        for row in rows
    ]
    img = GiftiImage(meta=GiftiMetaData(meta), darrays=darrays)
    nib.save(img, str(tmp))


def _write_mgh(tmp: Path, rows: np.ndarray, tr: float) -> None:
    import nibabel as nib

    data = np.ascontiguousarray(rows.T, dtype=np.float32)[:, None, None, :]  # (10242, 1, 1, T)
    img = nib.MGHImage(data, np.eye(4))
    img.header["tr"] = 1000.0 * tr  # milliseconds
    nib.save(img, str(tmp))


def _parse(text: str):
    """GIfTI metadata are strings: numbers and structures were written as JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text


class PredictionFile(NamedTuple):
    """A prediction file read back (`read_prediction_file`): unpacks as `values, seconds, meta`.

    Row i holds the predicted BOLD at `times[i]` = `seconds[i]` + the hemodynamic offset (5 s),
    on the stimulus clock (0 = the stimulus's start). At 1 Hz `seconds` are the stimulus seconds
    (int); a file resampled to a scan (`predict --tr`) has each volume's acquisition time in its
    metadata (`times_s`), and `seconds` = those times - 5 s (docs/OUTPUTS.md)."""

    values: np.ndarray
    seconds: np.ndarray
    metadata: dict

    @property
    def offset(self) -> float:
        """The hemodynamic offset the rows were predicted with (5 s)."""
        return _number(self.metadata.get("hemodynamic_offset_s"), HEMODYNAMIC_OFFSET_S)

    @property
    def times(self) -> np.ndarray:
        """Each row's predicted-BOLD (acquisition) time, seconds on the stimulus clock."""
        return np.asarray(self.seconds, np.float64) + self.offset

    @property
    def tr(self) -> float:
        """Seconds between rows (1 at 1 Hz; the scan's TR after `predict --tr`)."""
        return _number(self.metadata.get("tr_s"), 1.0)


def _number(value, default: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
    return float(value) if ok else default


def read_prediction_file(path: str | os.PathLike) -> PredictionFile:
    """Any prediction file `predict` or `record` writes, with its metadata: `.npy` (`(T, 20484)`
    or one `(20484,)` map) and its JSON beside it, `.h5` (`predict`'s or a recording), a GIfTI or
    MGH pair named by either hemisphere's file or by their common name (`clip.func.gii`,
    `clip.lh.func.gii`, `sub-01_hemi-L_..._bold.func.gii`). Metadata `{}` where there are none
    (a bare `.npy`). Anything missing, damaged or foreign: one line (InputError)."""
    from tribe_stream.volume_outputs import read_volume, volume_suffix

    if volume_suffix(path):  # a volume (the subcortical model's): volume_outputs.py
        values, meta = read_volume(path)
        return PredictionFile(values, _row_seconds(meta, len(values), None), meta)
    p = pair_name(path)
    try:
        suffix, stem = output_suffix(p), output_stem(p)
    except InputError:
        raise InputError(
            f"{path}: not a prediction file; give a .npy, .h5, .func.gii, .mgh or .mgz file"
        ) from None
    files = [f for f in _data_files(p, suffix, stem) if f.suffix != ".json"]  # sidecars optional
    for f in files:
        if not f.is_file():
            pair = f" (a pair: {files[0].name} and {files[1].name})" if len(files) == 2 else ""
            raise InputError(f"{f} does not exist{pair}")
    sidecar = _sidecar(stem.with_name(stem.name + ".json"))
    try:
        if suffix in (".h5", ".hdf5"):  # read_recording checks its values, one line if damaged
            from tribe_stream.recording import read_recording

            rec = read_recording(p, dtype="float32")
            offline = rec.metadata.get("offline")
            meta = {k: v for k, v in rec.metadata.items() if k != "offline"}
            meta.update(offline if isinstance(offline, dict) else {})
            values, seconds = rec.values, np.asarray(rec.seconds)
        elif suffix == ".npy":
            values, meta, seconds = np.load(p, allow_pickle=False), sidecar, None
        else:
            import nibabel as nib

            images = [nib.load(str(f)) for f in files]
            if suffix == ".func.gii":
                parts = [np.stack([d.data for d in i.darrays]) for i in images]
                meta = {k: _parse(v) for k, v in dict(images[-1].meta).items()} | sidecar
                step = dict(images[-1].darrays[0].meta).get("TimeStep")  # ms, as fMRIPrep's
            else:
                parts = [np.asarray(i.dataobj)[:, 0, 0, :].T for i in images]
                meta, step = sidecar, images[-1].header.get_zooms()[3:4]  # the MGH TR, ms
                step = step[0] if step and step[0] > 0 else None
            if "tr_s" not in meta and step is not None:  # a foreign file: the TR it records
                meta["tr_s"] = _number(_parse(str(step)), 1000.0) / 1000.0
            rows = [len(x) for x in parts]
            if rows[0] != rows[1]:
                raise ValueError(f"its hemispheres have {rows[0]} and {rows[1]} rows")
            values, seconds = np.concatenate(parts, 1), None
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises: one line
        why = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        if suffix == ".npy" and "pickle" in why:
            why = "not a plain numpy array (it holds Python objects)"
        raise InputError(f"cannot read predictions from {path}: {why}") from None
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.number):
        raise InputError(f"{path} holds {values.dtype} data, not a plain numpy array of numbers")
    values = values.astype(np.float32, copy=False)
    if values.ndim == 1:
        values = values[None]
    if values.ndim != 2 or values.shape[1] != N_VERTICES:
        raise InputError(
            f"{path} holds an array of shape {values.shape}; expected (T, {N_VERTICES})"
        )
    meta = meta if isinstance(meta, dict) else {}
    return PredictionFile(values, _row_seconds(meta, len(values), seconds), meta)


def _row_seconds(meta: dict, n: int, stored: np.ndarray | None) -> np.ndarray:
    """Each row's stimulus second: from the acquisition times a resampled file records
    (`times_s` - offset), else the seconds stored (a recording), else `first_second` onwards."""
    times = meta.get("times_s")
    if isinstance(times, list) and len(times) == n:
        try:
            t = np.asarray(times, np.float64)
        except (TypeError, ValueError):
            t = None
        if t is not None and t.ndim == 1 and np.isfinite(t).all():
            return t - _number(meta.get("hemodynamic_offset_s"), HEMODYNAMIC_OFFSET_S)
    if stored is not None:
        return stored
    first = meta.get("first_second", 0)
    first = first if isinstance(first, int) and not isinstance(first, bool) else 0
    return np.arange(first, first + n)


def _sidecar(path: Path) -> dict:
    """A `.npy`'s JSON metadata beside it; {} when there is none or it is not ours."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}
