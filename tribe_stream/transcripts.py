"""Transcripts: the words of a recording with their times, read from and written to files.

`read_transcript(path)` reads words (`types.Word`: text, onset and duration in seconds from the
media's start, sorted by onset) from

- our TSV: tab-separated, a header row with `onset`, `duration`, `text` (`write_transcript`);
- the official TRIBE v2 word TSV: columns `text`, `start`, `duration`, `sequence_id`,
  `sentence` (only the first three are read);
- SubRip `.srt` and WebVTT `.vtt` subtitles. Each word of a cue gets a share of the cue's
  interval in proportion to its count of letters and digits, without gaps; where a VTT cue has
  inline time stamps (`<00:00:01.500>`, karaoke-style), each stretch between two stamps is
  shared out instead. Markup is removed: tags (`<i>`, `<font …>`, `<v Speaker>`, `<c.class>`),
  ruby text (`<rt>…</rt>`), SSA overrides (`{\\an8}`), HTML entities, speaker dashes (`- `,
  `>>`) and upper-case labels (`JOHN:`), sound descriptions (`[music]`, `(laughs)`) and tokens
  without a letter or digit (`♪`, `--`). VTT headers, `NOTE`, `STYLE` and `REGION` blocks, cue
  identifiers and cue settings are skipped.

The format is chosen by the file's header (`WEBVTT`, a TSV header row), else by its extension.
Anything that cannot be read as asked is one `InputError` line naming the problem and the fix.
`write_transcript` writes our TSV (times to the millisecond), `write_official_transcript` the
official one (times exact: read back, the same floats), as `predict` writes beside each output.
"""

from __future__ import annotations

import csv
import html
import io
import logging
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from tribe_stream.errors import InputError
from tribe_stream.types import Word

log = logging.getLogger(__name__)

TRANSCRIPT_SUFFIXES = (".tsv", ".srt", ".vtt")
FORMATS = (
    "a .tsv with a header row onset, duration, text (ours) or text, start, duration (the official "
    "word TSV), an .srt or a .vtt subtitle file"
)
MAX_TRANSCRIPT_BYTES = 64 << 20
OURS = ("onset", "duration", "text")
OFFICIAL = ("text", "start", "duration")
OFFICIAL_COLUMNS = (*OFFICIAL, "sequence_id", "sentence")
"""The official word TSV's columns (tribev2's `ExtractWordsFromAudio`)."""

_TIME = r"(?:(\d+):)?(\d+):(\d+)(?:[.,](\d+))?"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}(?:\s.*)?$")
_INLINE_TIME = re.compile(r"<\s*(?:\d+:)?\d+:\d+(?:[.,]\d+)?\s*>")
# Linear in the text's length: what a match may span excludes the character that opens the
# next match (a run of unclosed `[`, `<a`, `<rt>` scans to the next opener, never to the end).
_RUBY_TEXT = re.compile(r"<rt\b[^<>]*>[^<]*(?:<(?!/?rt\b)[^<]*)*</rt\s*>", re.I)
_TAG = re.compile(r"</?[A-Za-z][^<>]*>|</?\s*>")
_SSA = re.compile(r"\{\\[^{}]*\}")
_SOUND = re.compile(r"\[[^\[\]]*\]|\([^()]*\)")
_SPEAKER = re.compile(
    r"^\s*(?:>>+\s*|[-\u2013\u2014](?![-\d])\s*)?(?:[A-Z][A-Z0-9 .'\-]+:(?=\s|$))?\s*"
)
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060\ufeff]")


def read_transcript(path: str | os.PathLike) -> list[Word]:
    """The words of a transcript file, sorted by onset (see the module docstring for formats)."""
    p = Path(path).expanduser()
    text = _read_text(p)
    lines = text.splitlines()
    first = next((line.strip() for line in lines if line.strip()), "")
    suffix = p.suffix.lower()
    header = [c.strip().lower() for c in first.split("\t")] if "\t" in first else []
    if not first:
        raise InputError(f"{p} is empty: an empty transcript has no words; {_fix(suffix)}")
    if re.match(r"WEBVTT(?:\s|$)", first):
        words = _read_vtt(p, lines)
    elif set(OURS) <= set(header) or set(OFFICIAL) <= set(header):
        words = _read_tsv(p, text)
    elif suffix == ".vtt":
        raise InputError(f"{p} is not a WebVTT file: its first line must be WEBVTT")
    elif suffix == ".tsv":
        found = ", ".join(header) if header else repr(first[:60])
        raise InputError(
            f"{p} needs a tab-separated header row onset, duration, text (or the official "
            f"text, start, duration); its first line is {found}"
        )
    elif suffix == ".srt" or any(_TIMING.match(line) for line in lines[:5]):
        words = _read_srt(p, lines)
    else:
        raise InputError(f"{p}: unknown transcript format; pass {FORMATS}")
    if not words:
        raise InputError(f"{p} holds no words: an empty transcript; {_fix(suffix)}")
    words.sort(key=lambda w: w.onset)
    _check_density(p, words)
    return words


DENSEST_WORDS = 300
"""At most this many words in any 10 s of a transcript: 30 a second, three times the fastest
speech. Beyond it the file is not a transcript of speech (a cue of a million characters, times
not in seconds), and each word would cost the text model a forward over its whole context."""


def _check_density(p: Path, words: Sequence[Word]) -> None:
    onsets = [w.onset for w in words]  # sorted
    j = 0
    for i, t in enumerate(onsets):  # two pointers: linear in the number of words
        while j < len(onsets) and onsets[j] < t + 10.0:
            j += 1
        if j - i > DENSEST_WORDS:
            raise InputError(
                f"{p} has {j - i} words within 10 s (from {t:.2f} s), more than "
                f"{DENSEST_WORDS // 10} a second: faster than any speech; is it this media's "
                "transcript, with times in seconds?"
            )


def warn_words_past_end(words: Sequence[Word] | None, duration: float, media) -> int:
    """Warn in one line how many words start after the media ends (they get no feature bin: a
    transcript of another or a longer recording, or times not in seconds); returns that count."""
    late = [w.onset for w in words or () if w.onset >= duration]
    if late:
        log.warning(
            "%d of %d words start after %s ends (%.2f s; the first at %.2f s) and are left out; "
            "is the transcript this media's, with times in seconds?",
            len(late), len(words), media, duration, min(late),
        )  # fmt: skip
    return len(late)


def _checked(path: str | os.PathLike, words: Sequence[Word]) -> Path:
    """Where `words` are written: a `.tsv`, once every word's onset and duration are finite and
    not negative (one line naming the fix otherwise)."""
    p = Path(path).expanduser()
    if p.suffix.lower() != ".tsv":
        raise InputError(
            f"a transcript is written as .tsv, not {p.name}: use {p.with_suffix('.tsv')}"
        )
    for i, word in enumerate(words):
        onset, duration = float(word.onset), float(word.duration)
        if not (math.isfinite(onset) and math.isfinite(duration)) or onset < 0 or duration < 0:
            raise InputError(
                f"word {i} ({word.text!r}) has onset {onset} and duration {duration}: times must "
                "be finite and not negative"
            )
    return p


def _write_rows(p: Path, header: Sequence[str], rows: Iterable[list]) -> Path:
    """`header`, then `rows`, tab-separated, written atomically."""
    from tribe_stream.outputs import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t", lineterminator="\n")
            w.writerow(header)
            w.writerows(rows)

    return atomic_write(p, write)


def write_transcript(path: str | os.PathLike, words: Sequence[Word]) -> Path:
    """Words as our TSV (header onset, duration, text; one word a line), written atomically.

    Whitespace inside a word's text (a tab, a line break) becomes one space, so every word stays
    on its line; times are written to the millisecond. Returns the path written."""
    p = _checked(path, words)
    rows = [[f"{w.onset:.3f}", f"{w.duration:.3f}", " ".join(str(w.text).split())] for w in words]
    return _write_rows(p, OURS, rows)


def write_official_transcript(path: str | os.PathLike, words: Sequence[Word]) -> Path:
    """Words as the official word TSV (`text start duration sequence_id sentence`), written
    atomically; no words give the header alone.

    Times are written as Python writes floats (the shortest text that reads back as the same
    number), so `read_transcript` gives back exactly these words. `sequence_id` numbers the
    sentences (`extractors.contexts.split_sentences` over the words joined by spaces) and
    `sentence` is that sentence's words joined by spaces."""
    from tribe_stream.extractors.contexts import punctuated, split_sentences

    p = _checked(path, words)
    texts = [" ".join(str(w.text).split()) for w in words]
    sentence_of = punctuated(texts, split_sentences)[2] if texts else []
    sentences: dict[int, list[str]] = {}
    for text, k in zip(texts, sentence_of, strict=True):
        sentences.setdefault(k, []).append(text)
    rows = [
        [text, repr(float(w.onset)), repr(float(w.duration)), k, " ".join(sentences[k])]
        for w, text, k in zip(words, texts, sentence_of, strict=True)
    ]
    return _write_rows(p, OFFICIAL_COLUMNS, rows)


# --- reading ---------------------------------------------------------------------------------


def _fix(suffix: str) -> str:
    if suffix in (".srt", ".vtt"):
        return "give it cues with text, or leave the transcript out to recognise the speech"
    return "write one word a row under the header onset, duration, text"


def read_text_file(
    path: str | os.PathLike, *, what: str, accepted: str, max_bytes: int, too_large: str
) -> str:
    """A user's text file as a string (UTF-8, or UTF-16 with its byte-order mark; byte-order
    marks at the start removed, however many, whatever the format read next): a folder, a
    missing, oversized (`too_large` says what to do), binary or non-UTF-8 file is one line.
    `what` names the file's role ("a transcript"), `accepted` what to pass instead."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise InputError(f"{p} is a folder; pass {accepted}")
    if not p.exists():
        raise InputError(f"{p} does not exist; pass {accepted}")
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise InputError(
                f"{p} is {size:,} bytes, too large for {what} (at most {max_bytes:,}); {too_large}"
            )
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {p}: {exc.strerror or exc}") from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):  # UTF-16 with its byte-order mark
        try:
            return raw.decode("utf-16").lstrip("\ufeff")  # a mark written twice: both go
        except UnicodeDecodeError:
            pass
    if b"\0" in raw[:8192]:
        raise InputError(f"{p} is a binary file, not {what}; pass {accepted}")
    try:
        return raw.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{p} is not UTF-8 text (byte {exc.start}); re-save it as UTF-8, e.g. "
            f"iconv -f cp1252 -t utf-8 {p.name} > fixed{p.suffix}"
        ) from None


def _read_text(p: Path) -> str:
    return read_text_file(
        p,
        what="a transcript",
        accepted=f"a transcript file ({FORMATS})" if p.is_dir() else f"a transcript: {FORMATS}",
        max_bytes=MAX_TRANSCRIPT_BYTES,
        too_large="is it a media file? pass it as the media instead",
    )


def _time(p: Path, line: int, name: str, value: str) -> float:
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{p} line {line}: {name} {value!r} is not a number (seconds)") from None
    if not math.isfinite(t):
        raise InputError(f"{p} line {line}: {name} is {value.strip()}; times must be finite")
    if t < 0:
        raise InputError(
            f"{p} line {line}: {name} {t:g} is negative; times are seconds from the media's start"
        )
    return t


def _read_tsv(p: Path, text: str) -> list[Word]:
    reader = csv.reader(io.StringIO(text), delimiter="\t")
    header: list[str] | None = None
    words = []
    for row in _rows(p, reader):
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [c.strip().lower() for c in row]
            onset_col = "onset" if set(OURS) <= set(header) else "start"
            i_text, i_onset, i_dur = (header.index(c) for c in ("text", onset_col, "duration"))
            continue
        line = reader.line_num
        if len(row) != len(header):
            raise InputError(
                f"{p} line {line} has {len(row)} tab-separated fields, the header has "
                f"{len(header)}; separate the columns with one tab each"
            )
        onset = _time(p, line, onset_col, row[i_onset])
        duration = _time(p, line, "duration", row[i_dur])
        word = row[i_text].strip()
        if word:  # a row without text carries no word
            words.append(Word(text=word, onset=onset, duration=duration))
    return words


def _rows(p: Path, reader):
    """The TSV's rows; a field the csv module refuses (a quote left open runs on past its
    limit) is one line."""
    try:
        yield from reader
    except csv.Error as exc:
        raise InputError(
            f'{p} line {reader.line_num}: {exc}; a field that starts with a quote (") runs to '
            "the next quote: close it, or leave the quote out"
        ) from None


def _clock(p: Path, line: int, h: str | None, m: str, s: str, frac: str | None) -> float:
    if float(m) >= 60 or float(s) >= 60:
        raise InputError(
            f"{p} line {line}: minutes and seconds of a cue time must be below 60 "
            "(write hours:minutes:seconds, e.g. 01:02:03,500)"
        )
    t = float(h or 0) * 3600 + float(m) * 60 + float(s) + (float("0." + frac) if frac else 0.0)
    if not math.isfinite(t):
        raise InputError(f"{p} line {line}: a cue time too large to be a time; fix its hours")
    return t


def _timing(p: Path, line: int, text: str) -> tuple[float, float]:
    m = _TIMING.match(text)
    if m is None:
        raise InputError(
            f"{p} line {line}: cannot read the cue times {text.strip()!r}; write them as "
            "00:01:02,500 --> 00:01:04,000"
        )
    g = m.groups()
    start, end = _clock(p, line, *g[:4]), _clock(p, line, *g[4:])
    if end < start:
        raise InputError(
            f"{p} line {line}: the cue ends ({end:g} s) before it starts ({start:g} s); "
            "swap or fix its times"
        )
    return start, end


def _blocks(lines: list[str]) -> list[tuple[int, list[str]]]:
    """Blank-line-separated blocks: (1-based number of the block's first line, its lines)."""
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] = []
    for i, line in enumerate(lines, start=1):
        if line.strip():
            if not current:
                blocks.append((i, current))
            current.append(line)
        else:
            current = []
    return blocks


def _read_srt(p: Path, lines: list[str]) -> list[Word]:
    cues: list[tuple[float, float, list[str]]] = []
    for first, block in _blocks(lines):
        k = next((j for j, line in enumerate(block) if "-->" in line), None)
        if k is None:  # a blank line inside a cue's text: the text goes on
            if cues and not all(line.strip().isdigit() for line in block):
                cues[-1][2].extend(block)
            continue
        start, end = _timing(p, first + k, block[k])
        cues.append((start, end, block[k + 1 :]))
    if not cues:
        raise InputError(
            f"{p} has no subtitle cues (a line like 00:00:01,000 --> 00:00:02,500 before each "
            "cue's text); pass an .srt file"
        )
    return [w for start, end, text in cues for w in _cue_words(text, start, end)]


def _read_vtt(p: Path, lines: list[str]) -> list[Word]:
    words = []
    for n, (first, block) in enumerate(_blocks(lines)):
        head = block[0].strip()
        if n == 0 or re.match(r"(NOTE|STYLE|REGION)(?:\s|$)", head):
            continue  # the header, comments, style sheets and regions hold no cue
        k = 0 if "-->" in block[0] else 1  # an optional cue identifier comes first
        if k >= len(block) or "-->" not in block[k]:
            continue  # not a cue: a WebVTT parser skips it
        start, end = _timing(p, first + k, block[k])
        words += _cue_words(block[k + 1 :], start, end, vtt=True)
    return words


def _inline_stamp(stamp: str) -> float:
    parts = stamp.strip("<> \t").replace(",", ".").split(":")
    return sum(float(x) * 60**i for i, x in enumerate(reversed(parts)))


def _cue_words(text: list[str], start: float, end: float, vtt: bool = False) -> list[Word]:
    """A cue's words, markup removed, sharing out [start, end] in proportion to their length."""
    lines = [_RUBY_TEXT.sub("", line) for line in text]
    lines = [_SPEAKER.sub("", _TAG.sub("", _SSA.sub("", line)), count=1) for line in lines]
    joined = "\n".join(lines)  # a sound description may run over two lines
    pieces = _INLINE_TIME.split(joined) if vtt else [joined]
    stamps = [_inline_stamp(m.group(0)) for m in _INLINE_TIME.finditer(joined)] if vtt else []
    # stretches of tokens between inline stamps, each stretch from its stamp to the next one
    stretches: list[tuple[float, list[str]]] = []
    for j, piece in enumerate(pieces):
        t0 = start if j == 0 else min(max(stamps[j - 1], stretches[-1][0]), end)
        piece = _INVISIBLE.sub("", _SOUND.sub(" ", html.unescape(piece)))
        stretches.append((t0, [t for t in piece.split() if re.search(r"\w", t)]))
    words = []
    for i, (t0, tokens) in enumerate(stretches):
        t1 = stretches[i + 1][0] if i + 1 < len(stretches) else end
        weights = [max(1, len(re.findall(r"\w", t))) for t in tokens]
        total, done = sum(weights), 0
        for token, w in zip(tokens, weights, strict=True):
            words.append(Word(token, t0 + (t1 - t0) * done / total, (t1 - t0) * w / total))
            done += w
    return words
