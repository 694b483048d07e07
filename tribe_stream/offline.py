"""Whole-recording prediction from features, in windows of at most 200 bins (100 s)."""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tribe_stream import MAX_TOKENS
from tribe_stream.errors import InputError
from tribe_stream.types import MODALITIES

_HOW = "write one with numpy.savez(path, text=..., audio=..., video=...), arrays (L, D, T)"


def _memory_bytes() -> int:
    """Physical memory: no features array may claim more (checked before anything is allocated)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 64 << 30


def feature_length(features: Mapping[str, object], where: str = "features") -> int:
    """T, the number of 0.5 s bins every present modality covers; an InputError naming each
    modality's T when they differ, or when there are no bins or no modality at all."""
    present = {m: x for m, x in features.items() if x is not None}
    if not present:
        raise InputError(f"{where}: no modality given; pass at least one of text, audio, video")
    for m, x in present.items():
        if getattr(x, "ndim", None) != 3:
            shape = tuple(getattr(x, "shape", ()))
            raise InputError(
                f"{where}: {m} features have shape {shape}; expected 3 dimensions (L, D, T)"
            )
    lengths = {m: int(x.shape[-1]) for m, x in present.items()}
    if len(set(lengths.values())) > 1:
        each = ", ".join(f"{m} T={t}" for m, t in lengths.items())
        raise InputError(
            f"{where}: the modalities cover different numbers of 0.5 s bins ({each}); every "
            "modality must cover the same bins: extract them from the same file"
        )
    T = next(iter(lengths.values()))
    if T == 0:
        raise InputError(
            f"{where}: the features hold no time bins (T=0): the recording was shorter than one "
            "0.5 s bin; extract features from a longer file"
        )
    return T


def _not_npz(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(6)
    if not head:
        return "it is empty (0 bytes)"
    if head == b"\x93NUMPY":
        return "it is a single .npy array, not an .npz archive"
    if head[:2] == b"PK":
        return "it is a truncated or corrupt zip archive"
    return "it is not a zip archive"


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, path: Path) -> np.ndarray:
    """One array of the archive, its header checked before any data is read or allocated."""
    stored = info.compress_type == zipfile.ZIP_STORED
    if (stored and info.compress_size != info.file_size) or (
        info.header_offset + info.compress_size > path.stat().st_size
    ):
        raise InputError(f"{path}: {key} is truncated or corrupt; write the file again")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
        data_bytes = info.file_size - f.tell()
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise InputError(
            f"{path}: {key} is an array of {dtype} (objects or records), not numbers; {_HOW}"
        )
    if dtype.kind not in "fiu":
        raise InputError(f"{path}: {key} holds {dtype} values, not real numbers; {_HOW}")
    if len(shape) != 3:
        what = "a 0-d array (a single number)" if not shape else f"shape {shape}"
        raise InputError(f"{path}: {key} is {what}; expected 3 dimensions (L, D, T)")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes != data_bytes:
        raise InputError(
            f"{path}: {key} claims shape {shape} ({nbytes:,} bytes) but holds {data_bytes:,} "
            "bytes; the file is truncated or corrupt: write it again"
        )
    if nbytes > _memory_bytes():
        raise InputError(
            f"{path}: {key} claims shape {shape} ({nbytes / 2**30:,.1f} GiB), more than this "
            "machine's memory; cut the recording into parts"
        )
    with zf.open(info) as f:
        array = np.lib.format.read_array(f, allow_pickle=False)
    return np.asarray(array, dtype=np.float32)


def read_features(path: Path | str) -> dict[str, np.ndarray]:
    """Read an `.npz` with `text`, `audio`, `video` arrays `(L, D, T)`; an absent modality is an
    absent key. Every way the file can be wrong is one InputError line; array headers are checked
    (shape, dtype, size against the archive) before anything is allocated; no pickles."""
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"{path} does not exist; pass an .npz with text/audio/video arrays of shape (L, D, T)"
        )
    if path.is_dir():
        raise InputError(f"{path} is a folder; pass an .npz file ({_HOW})")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise InputError(f"cannot read {path} as .npz: {_not_npz(path)}; {_HOW}") from None
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    feats: dict[str, np.ndarray] = {}
    with zf:
        members = [i for i in zf.infolist() if not i.is_dir()]
        keys = [i.filename.removesuffix(".npy") for i in members]
        unknown = sorted({k for k in keys if k not in MODALITIES})
        if unknown:
            raise InputError(
                f"{path} has unknown arrays {unknown}; use the keys text, audio, video ({_HOW})"
            )
        if len(set(keys)) != len(keys):
            raise InputError(f"{path} holds the same modality twice; write it again")
        for info, key in zip(members, keys, strict=True):
            try:
                feats[key] = _read_member(zf, info, key, path)
            except InputError:
                raise
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise InputError(
                    f"cannot read {key} in {path}: {' '.join(str(exc).split())}; the file is "
                    "truncated or corrupt: write it again"
                ) from None
            except (NotImplementedError, RuntimeError) as exc:  # compression, encryption
                raise InputError(f"cannot read {key} in {path}: {exc}; {_HOW}") from None
    if not feats:
        raise InputError(f"{path} holds no features; it needs at least one of text, audio, video")
    feats = {m: feats[m] for m in MODALITIES if m in feats}
    feature_length(feats, str(path))
    return feats


def predict_windows(
    engine, features: dict[str, np.ndarray], *, tokens: bool = False, pad_last: bool = False
) -> np.ndarray:
    """Predict features of any length `T`, time-major `(T_out, n_outputs)` float32.

    The features are cut into consecutive non-overlapping windows of 200 bins, each run on its
    own, as the official `predict` does. Text features made by `timing.place_words` already hold
    each window's own word bins (a word across a window edge in both windows), for these windows. `pad_last=True` zero-pads the last window to 200 bins as
    the official code does (the padded rows are then cut off); by default a window shorter than
    200 bins runs as it is, which is exact for the bins given. Pooled: one row per second
    (ceil(T/2)); `tokens=True`: one row per bin. Every modality must cover the same T >= 1 bins.
    """
    present = {m: x for m, x in features.items() if x is not None}
    T = feature_length(present)
    rows = []
    for start in range(0, T, MAX_TOKENS):
        stop = min(start + MAX_TOKENS, T)
        window = {m: x[..., start:stop] for m, x in present.items()}
        n = stop - start
        if pad_last and n < MAX_TOKENS:
            window = {
                m: np.pad(x, [(0, 0), (0, 0), (0, MAX_TOKENS - n)]) for m, x in window.items()
            }
        out = engine.run(window, pool=not tokens)
        keep = n if tokens else (n + 1) // 2
        rows.append(out[:keep])
    return np.concatenate(rows, axis=0).astype(np.float32, copy=False)
