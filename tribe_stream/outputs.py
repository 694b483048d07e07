"""Output files: check the path before any work starts, then write atomically.

`check_output(path, suffixes)` refuses, in one line, a path that cannot be written as asked (a
folder, a wrong suffix, a missing or read-only parent folder) so that a command fails before it
loads a model. `atomic_write(path, writer)` has `writer` fill a temporary file in the same folder,
then renames it over `path` (`os.replace`), so a crash or a full disk never leaves a half-written
file behind. `save_npy` / `save_npz` are the NumPy cases; each returns the path written.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tribe_stream.errors import InputError

FILE_SUFFIXES = frozenset(
    ".npy .npz .h5 .hdf5 .json .csv .tsv .txt .png .html .gii .mgh .mgz .nii .gz .mp4".split()
)
"""Endings of file names: a folder asked for by one of these names is taken for a typo."""


def check_output_folder(path: str | os.PathLike, what: str, make: bool = True) -> Path:
    """`path` as the folder `what` go in (made now if its parent exists and `make`; else by the
    writer), or an InputError naming the fix: a file there, a missing parent, or a new name that
    ends like a file's (`--out x.npy` where a folder is wanted: it would become a folder x.npy)."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise InputError(f"--out {path} is a file; {what} go in a folder: name one")
    if not p.exists():
        if p.suffix.lower() in FILE_SUFFIXES:
            raise InputError(
                f"--out {path} names a file, but {what} go in a folder: name a folder "
                f"(for instance {p.with_suffix('')})"
            )
        if not p.parent.is_dir():
            raise InputError(f"--out folder {p.parent} does not exist; create it first")
        if make:
            p.mkdir()
    return p


def check_output(
    path: str | os.PathLike, suffixes: str | Sequence[str] = (".npy",), *, what: str = "output"
) -> Path:
    """`path` as a `Path` if a file can be written there; else an InputError naming the fix.

    The suffix must be one of `suffixes` (nothing is appended, so the file written is the one
    named), the path must not be a folder, and its parent folder must exist and be writable.
    """
    if isinstance(suffixes, str):
        suffixes = (suffixes,)
    p = Path(path).expanduser()
    names = " or ".join(suffixes)
    if str(path).endswith(os.sep) or p.is_dir():
        raise InputError(
            f"{what} {path} is a folder; name a file in it, e.g. {p / ('out' + suffixes[0])}"
        )
    if p.suffix.lower() not in {s.lower() for s in suffixes}:
        raise InputError(f"{what} {path} must end in {names}, e.g. {p.with_suffix(suffixes[0])}")
    parent = p.parent
    if not parent.exists():
        raise InputError(f"{what} folder {parent} does not exist; create it first (mkdir -p)")
    if not parent.is_dir():
        raise InputError(f"{what} {path}: {parent} is not a folder")
    probe = parent / f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}.probe"
    try:  # a real file, as the write will make: access() says yes to root on read-only mounts
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise InputError(
            f"{what} folder {parent} is not writable ({exc.strerror or exc}); choose another folder"
        ) from None
    if p.exists() and not p.is_file():
        raise InputError(f"{what} {path} exists and is not a regular file; choose another name")
    return p


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], object]) -> Path:
    """Call `writer(tmp)` to write a temporary file beside `path` (same suffix), then rename it to
    `path`. On any failure the temporary file is removed and `path` is left as it was; an OSError
    (disk full, permission) becomes one InputError line."""
    p = Path(path).expanduser()
    tmp = p.with_name(f".{p.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp{p.suffix}")
    try:
        # created here (mode 0666 less the umask, as a plain open would), then filled by `writer`
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise InputError(
            f"cannot write {p}: {exc.strerror or exc}; choose another folder"
        ) from None
    try:
        writer(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as exc:
        raise InputError(f"cannot write {p}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return p


def save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """`np.save` to exactly `path` (checked, atomic); returns the path written."""
    p = check_output(path, (".npy",))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, np.asarray(array), allow_pickle=False)

    return atomic_write(p, write)


def save_npz(path: str | os.PathLike, *, compressed: bool = False, **arrays: np.ndarray) -> Path:
    """`np.savez` (or `savez_compressed`) to exactly `path` (checked, atomic); returns the path."""
    p = check_output(path, (".npz",))
    save = np.savez_compressed if compressed else np.savez

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            save(f, allow_pickle=False, **arrays)

    return atomic_write(p, write)
