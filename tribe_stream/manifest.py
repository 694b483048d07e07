"""Which files to predict: media kinds by extension, folders of them, and manifests (a
stimulus library named in one file, for `predict` with or without Ray).

A manifest is either

- `NAME.csv`: a CSV table with a header row that has a `path` column (other columns are kept
  for the user and ignored here), one stimulus per row; or
- `NAME.list`: one path per line; blank lines and lines starting with `#` are skipped.

Relative paths are taken against the manifest's own folder (not the working directory), so a
manifest kept beside its clips works from anywhere and on every node of a cluster that mounts the
folder at the same place. Every path must name an existing media file; the first few that do not
are listed in one line before any model loads.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

from tribe_stream.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm")
AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".m4a")
TEXT_SUFFIXES = (".txt",)
MEDIA_SUFFIXES = VIDEO_SUFFIXES + AUDIO_SUFFIXES + TEXT_SUFFIXES
MANIFEST_SUFFIXES = (".csv", ".list")
MAX_MANIFEST_BYTES = 256 << 20
"""About two million paths: far past a day of video (170,000 clips)."""


def is_manifest(path: str | os.PathLike) -> bool:
    """Whether `path` names a manifest (by its extension)."""
    return Path(path).suffix.lower() in MANIFEST_SUFFIXES


def _rows(p: Path, text: str) -> list[tuple[int, str]]:
    """(line number, path) for every entry."""
    if p.suffix.lower() == ".list":
        return [
            (n, s)
            for n, line in enumerate(text.splitlines(), 1)
            if (s := line.strip()) and not s.startswith("#")
        ]
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "path" not in [f.strip() for f in reader.fieldnames]:
        raise InputError(
            f"manifest {p}: its first row must be a header with a `path` column "
            f"(found {reader.fieldnames or 'nothing'})"
        )
    column = next(f for f in reader.fieldnames if f.strip() == "path")
    return [(reader.line_num, s) for row in reader if (s := (row.get(column) or "").strip())]


def read_manifest(path: str | os.PathLike) -> list[Path]:
    """The media files a manifest names, in its order, as absolute paths (relative entries taken
    against the manifest's folder); a missing or unreadable entry is one line."""
    from tribe_stream.transcripts import read_text_file

    p = Path(path).expanduser().absolute()
    text = read_text_file(
        p,
        what="a manifest",
        accepted="a .csv with a path column or a .list of paths",
        max_bytes=MAX_MANIFEST_BYTES,
        too_large="split it into several manifests",
    )
    entries = _rows(p, text)
    if not entries:
        raise InputError(f"manifest {p} names no files")
    files, bad = [], []
    for line, entry in entries:
        f = Path(entry).expanduser()
        f = f if f.is_absolute() else p.parent / f
        if not f.is_file():
            bad.append(f"line {line}: {entry} ({'a folder' if f.is_dir() else 'not found'})")
        elif f.suffix.lower() not in MEDIA_SUFFIXES:
            bad.append(f"line {line}: {entry} (not a media file: {' '.join(MEDIA_SUFFIXES)})")
        else:
            files.append(f)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise InputError(
            f"manifest {p}: {len(bad)} of {len(entries)} entries unusable: "
            f"{'; '.join(bad[:3])}{more}; fix or remove them (relative paths are taken "
            f"against {p.parent})"
        )
    return files


def media_kind(path: Path) -> str:
    """video, audio or text, from the file's extension (one line if it is none of them)."""
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in AUDIO_SUFFIXES:
        return "audio"
    if suffix in TEXT_SUFFIXES:
        return "text"
    raise InputError(
        f"{path}: unknown kind of file {suffix or '(no extension)'!r}; give a video "
        f"({' '.join(VIDEO_SUFFIXES)}), an audio file ({' '.join(AUDIO_SUFFIXES)}) or a text (.txt)"
    )


def collect_media(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files to predict: each input file, the media files (by extension) inside each folder,
    sorted, and the files each manifest (`.csv`, `.list`: below)
    names; a missing input is one line."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if is_manifest(p) and not p.is_dir():
            files += read_manifest(p)
        elif p.is_dir():
            found = sorted(
                f for f in p.iterdir() if f.is_file() and f.suffix.lower() in MEDIA_SUFFIXES
            )
            if not found:
                raise InputError(f"{p} holds no media files ({' '.join(MEDIA_SUFFIXES)})")
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise InputError(f"{p} does not exist")
    return files
