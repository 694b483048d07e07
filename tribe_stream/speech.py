"""Text to speech, offline: a story as text becomes a WAV file that the model can hear.

`tribe-stream predict story.txt` needs speech: where the official code calls a network service,
espeak-ng (a local program) speaks the text here, read from a file (`-f`, any length; line breaks
inside a paragraph read as spaces) into a WAV written atomically. The words and their times then
come from speech recognition of that WAV, as for any recording.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tribe_stream.errors import InputError

ESPEAK = "espeak-ng"
INSTALL_HINT = "install espeak-ng (apt-get install espeak-ng, or brew install espeak-ng)"
TEXT_SUFFIXES = (".txt", ".text")
MAX_TEXT_BYTES = 16 << 20


def read_text(path: str | os.PathLike) -> str:
    """A text file's content (UTF-8); missing, binary, non-UTF-8 and empty files refused."""
    from tribe_stream.transcripts import read_text_file

    p = Path(path).expanduser()
    text = read_text_file(
        p,
        what="text",
        accepted="a UTF-8 text file (.txt) to speak",
        max_bytes=MAX_TEXT_BYTES,
        too_large="split it into smaller files",
    )
    if not text.strip():
        raise InputError(f"{p} is empty: there is no text to speak; write the story in it")
    return text


def _is_path(text_or_path: str | os.PathLike) -> bool:
    if isinstance(text_or_path, os.PathLike):
        return True
    s = str(text_or_path)
    if "\n" in s or len(s) > 4096:
        return False
    return s.lower().endswith(TEXT_SUFFIXES) or Path(s).expanduser().is_file()


def speak_text(
    text_or_path: str | os.PathLike,
    out_wav: str | os.PathLike,
    *,
    voice: str | None = None,
    words_per_minute: int = 160,
) -> Path:
    """Speak a text (a `.txt` file, or the text itself) with espeak-ng into `out_wav`; its path.

    A `Path`, or a string that names an existing file or ends in `.txt`, is read as a UTF-8 file;
    any other string is the text. `voice` is an espeak-ng voice (`espeak-ng --voices`; default its
    own), `words_per_minute` its speaking rate (80 to 450).
    """
    from tribe_stream.outputs import atomic_write

    if _is_path(text_or_path):
        text = read_text(text_or_path)
        what = str(text_or_path)
    else:
        text = str(text_or_path)
        what = "the text"
        if not text.strip():
            raise InputError("the text to speak is empty; pass a .txt file or some words")
    out = Path(out_wav).expanduser()
    if out.suffix.lower() != ".wav":
        raise InputError(
            f"speech is written as .wav, not {out.name}: use {out.with_suffix('.wav')}"
        )
    if not 80 <= int(words_per_minute) <= 450:
        raise InputError(f"words_per_minute {words_per_minute} is outside 80..450; use e.g. 160")
    exe = shutil.which(ESPEAK)
    if exe is None:
        raise InputError(f"speaking {what} needs {ESPEAK}, which is not installed; {INSTALL_HINT}")

    def write(tmp: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="tribe-speak-") as folder:
            source = Path(folder) / "text.txt"
            source.write_text(text, encoding="utf-8")
            cmd = [exe, "-b", "1", "-s", str(int(words_per_minute)), "-w", str(tmp)]
            cmd += ["-v", voice] if voice else []
            cmd += ["-f", str(source)]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
            except OSError as exc:
                raise InputError(
                    f"cannot run {exe}: {exc.strerror or exc}; {INSTALL_HINT}"
                ) from None
        said = " ".join((done.stderr or "").split())[-300:]
        if done.returncode != 0:
            raise InputError(
                f"{ESPEAK} failed on {what} (exit {done.returncode}: {said or 'no message'}); "
                + ("check the voice name (espeak-ng --voices)" if voice else INSTALL_HINT)
            )
        if tmp.stat().st_size <= 44:  # a WAV header and no sound
            raise InputError(f"{ESPEAK} made no sound from {what} ({said or 'no message'})")

    return atomic_write(out, write)
