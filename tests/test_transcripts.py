"""Transcripts read from the files a user has: our TSV, the official word TSV, SRT and VTT."""

from __future__ import annotations

import pytest

from tribe_stream.errors import InputError
from tribe_stream.extractors.offline import read_words, write_words
from tribe_stream.transcripts import read_transcript, write_transcript
from tribe_stream.types import Word


def words_of(path) -> list[tuple[str, float, float]]:
    return [(w.text, w.onset, w.duration) for w in read_transcript(path)]


def expect(got, want):
    assert [w[0] for w in got] == [w[0] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g[1:] == pytest.approx(w[1:], abs=1e-9), g


def test_our_tsv_round_trip(tmp_path):
    out = tmp_path / "words.tsv"
    given = [Word("world.", 0.6, 0.45), Word("Hello,", 0.25, 0.3), Word("new\tline\nword", 2, 0)]
    assert write_transcript(out, given) == out
    assert out.read_text().splitlines() == [
        "onset\tduration\ttext",
        "0.600\t0.450\tworld.",
        "0.250\t0.300\tHello,",
        "2.000\t0.000\tnew line word",  # one word a line, whatever its text held
    ]
    assert read_transcript(out) == [
        Word("Hello,", 0.25, 0.3),  # sorted by onset
        Word("world.", 0.6, 0.45),
        Word("new line word", 2.0, 0.0),
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["words.tsv"]  # written atomically
    # the names `extract` imports from offline.py are these
    assert read_words is read_transcript and write_words is write_transcript
    # columns in any order, extra columns ignored, a quote in a word kept
    other = tmp_path / "other.tsv"
    other.write_text('text\tspeaker\tduration\tonset\n"say ""hi"""\tA\t0.5\t1.25\n\n')
    assert read_transcript(other) == [Word('say "hi"', 1.25, 0.5)]


def test_official_word_tsv(tmp_path):
    sentence = " Here's an AI tool that finds the exact GPS coordinates, without any metadata."
    path = tmp_path / "clip.tsv"
    path.write_text(
        "text\tstart\tduration\tsequence_id\tsentence\n"
        f"Here's\t0.051\t0.12000000000000002\t0\t{sentence}\n"
        f"an\t0.211\t0.060000000000000026\t0\t{sentence}\n"
        f"coordinates,\t2.012\t0.3999999999999999\t0\t{sentence}\n"
        "Just\t5.914\t0.14000000000000057\t1\tJust upload the image.\n"
        "image.\t6.515\t0.22000000000000064\t1\tJust upload the image.\n"
    )
    assert read_transcript(path) == [
        Word("Here's", 0.051, 0.12000000000000002),
        Word("an", 0.211, 0.060000000000000026),
        Word("coordinates,", 2.012, 0.3999999999999999),
        Word("Just", 5.914, 0.14000000000000057),
        Word("image.", 6.515, 0.22000000000000064),
    ]


SRT = (
    "\ufeff1\r\n"
    "00:00:01,000 --> 00:00:03,000\r\n"
    "{\\an8}<i>Hello there,</i>\r\n"
    "\r\n"
    "2\r\n"
    "00:00:04,500 --> 00:00:06,500 X1:100 X2:200 Y1:10 Y2:20\r\n"
    '- <font color="#ffff00">Yes.</font>\r\n'
    "- No way!\r\n"
    "\r\n"
    "3\r\n"
    "00:01:00,000 --> 00:01:02,000\r\n"
    "[door\r\n"
    "slams]\r\n"
    "JOHN: Who's there?\r\n"
    "\r\n"
    "4\r\n"
    "01:02:03,250 --> 01:02:04,250\r\n"
    "(laughs) Bye ♪\r\n"
    "\r\n"
    "5\r\n"
    "00:00:00,200 --> 00:00:00,700\r\n"
    "Hi\r\n"
)
SRT_WORDS = [
    ("Hi", 0.2, 0.5),  # the last cue comes first: sorted by onset
    ("Hello", 1.0, 1.0),  # 5 letters each over 2 s: "there," counts its letters only
    ("there,", 1.0 + 2 * 5 / 10, 2 * 5 / 10),
    ("Yes.", 4.5, 0.75),  # 3, 2 and 3 letters over 2 s
    ("No", 5.25, 0.5),
    ("way!", 5.75, 0.75),
    ("Who's", 60.0, 2 * 4 / 9),  # the sound description and the speaker label are not words
    ("there?", 60.0 + 2 * 4 / 9, 2 * 5 / 9),
    ("Bye", 3723.25, 1.0),
]


def test_srt_with_markup(tmp_path):
    path = tmp_path / "film.srt"
    path.write_bytes(SRT.encode("utf-8"))
    expect(words_of(path), SRT_WORDS)
    # the same subtitles saved as UTF-16 (with its byte-order mark), as some editors do
    path.write_bytes(SRT.encode("utf-16"))
    expect(words_of(path), SRT_WORDS)


VTT = """WEBVTT - Test captions
Kind: captions
Language: en

NOTE
a comment holding 00:00:01.000 --> 00:00:02.000 is no cue

STYLE
::cue(.yellow) { color: yellow; }

REGION
id:fred width:40%

intro
00:01.000 --> 00:03.000 align:start position:10% line:0%
<v Roger Bingham>We are in
<c.yellow>New York</c> &amp; more

00:00:05.000 --> 00:00:07.000
<00:00:05.000>Karaoke <00:00:06.000><c>style</c>

3
00:00:08.000 --> 00:00:09.000
<i>caf&eacute;</i> <ruby>漢<rt>kan</rt></ruby>
"""


def test_vtt_with_markup(tmp_path):
    path = tmp_path / "film.vtt"
    path.write_text(VTT, encoding="utf-8")
    # We(2) are(3) in(2) New(3) York(4) more(4): 18 letters over 2 s, so 1/9 s a letter
    first = [("We", 0, 2), ("are", 2, 3), ("in", 5, 2), ("New", 7, 3), ("York", 10, 4)]
    first += [("more", 14, 4)]
    want = [(t, 1.0 + c / 9, n / 9) for t, c, n in first]
    want += [("Karaoke", 5.0, 1.0), ("style", 6.0, 1.0)]  # inline time stamps split the cue
    want += [("café", 8.0, 0.8), ("漢", 8.8, 0.2)]  # the ruby annotation is not spoken
    expect(words_of(path), want)


def test_format_follows_the_header(tmp_path):
    named = tmp_path / "captions.txt"
    named.write_text("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nhello\n")
    assert read_transcript(named) == [Word("hello", 1.0, 1.0)]
    named.write_text("onset\tduration\ttext\n0.5\t0.25\thello\n")
    assert read_transcript(named) == [Word("hello", 0.5, 0.25)]
    srt = tmp_path / "subs.srt"  # an .srt holding our TSV is read as TSV
    srt.write_text("onset\tduration\ttext\n0.5\t0.25\thello\n")
    assert read_transcript(srt) == [Word("hello", 0.5, 0.25)]


TSV_HEAD = "onset\tduration\ttext\n"
OFFICIAL_HEAD = "text\tstart\tduration\tsequence_id\tsentence\n"


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("w.tsv", TSV_HEAD + "0.5\t0.2\tok\nabc\t0.2\tno\n", "line 3: onset 'abc' is not a number"),
        ("w.tsv", OFFICIAL_HEAD + "hi\t\t0.2\t0\thi\n", "line 2: start '' is not a number"),
        ("w.tsv", TSV_HEAD + "-0.5\t0.2\tno\n", "line 2: onset -0.5 is negative"),
        ("w.tsv", TSV_HEAD + "0.5\t-1\tno\n", "line 2: duration -1 is negative"),
        ("w.tsv", TSV_HEAD + "nan\t0.2\tno\n", "line 2: onset is nan; times must be finite"),
        ("w.tsv", TSV_HEAD + "1\tinf\tno\n", "line 2: duration is inf; times must be finite"),
        ("w.tsv", TSV_HEAD + "1\t0.5\n", "line 2 has 2 tab-separated fields, the header has 3"),
        ("w.tsv", "onset,duration,text\n1,2,a\n", "needs a tab-separated header row onset"),
        ("w.tsv", "", "is empty: an empty transcript has no words"),
        ("w.tsv", " \n\n", "is empty: an empty transcript has no words"),
        ("w.tsv", TSV_HEAD, "holds no words: an empty transcript"),
        ("w.tsv", OFFICIAL_HEAD + " \t1\t1\t0\t\n", "holds no words: an empty transcript"),
        ("w.srt", "1\n00:00:01,000 --> 00:00:02,000\n[music]\n", "holds no words"),
        ("w.vtt", "WEBVTT\n\nNOTE nothing here\n", "holds no words"),
        ("w.srt", "just some text\n", "has no subtitle cues"),
        ("w.srt", "1\n00:00:01 --> soon\nhi\n", "line 2: cannot read the cue times"),
        ("w.srt", "1\n00:00:03,000 --> 00:00:02,000\nhi\n", "line 2: the cue ends (2 s) before"),
        ("w.srt", "1\n00:00:75,000 --> 00:00:76,000\nhi\n", "minutes and seconds of a cue time"),
        ("w.vtt", "1\n00:00:01.000 --> 00:00:02.000\nhi\n", "its first line must be WEBVTT"),
        ("w.vtt", "WEBVTT\n\n00:00:01.000 --> 00:00:0x.000\nhi\n", "line 3: cannot read the cue"),
        ("w.tsv", TSV_HEAD + '1\t1\t"' + "a" * 200_000, "line 2: field larger than field limit"),
        ("w.srt", f"1\n{'9' * 400}:00:00,000 --> 00:00:01,000\nhi\n", "cue time too large"),
        ("w.json", '{"words": []}', "unknown transcript format; pass a .tsv"),
        ("story.txt", "Once upon a time.\n", "unknown transcript format"),
    ],
)
def test_bad_transcripts_are_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match="^" + str(path).replace("\\", "\\\\")) as info:
        read_transcript(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unreadable_files_are_one_line(tmp_path):
    cases = {
        tmp_path / "absent.tsv": "does not exist; pass a transcript",
        tmp_path: "is a folder; pass a transcript file",
    }
    binary = tmp_path / "movie.srt"
    binary.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)))
    cases[binary] = "is a binary file, not a transcript"
    latin = tmp_path / "latin.srt"
    latin.write_bytes("1\n00:00:01,000 --> 00:00:02,000\ncafé\n".encode("latin-1"))
    cases[latin] = "is not UTF-8 text (byte 35); re-save it as UTF-8, e.g. iconv"
    for path, message in cases.items():
        with pytest.raises(InputError) as info:
            read_transcript(path)
        assert message in str(info.value) and "\n" not in str(info.value), path


def test_writing_refuses_what_it_cannot_read_back(tmp_path):
    with pytest.raises(InputError, match=r"written as \.tsv, not words\.srt"):
        write_transcript(tmp_path / "words.srt", [Word("a", 0, 1)])
    with pytest.raises(InputError, match=r"word 1 \('b'\) has onset nan"):
        write_transcript(tmp_path / "words.tsv", [Word("a", 0, 1), Word("b", float("nan"), 1)])
    with pytest.raises(InputError, match="folder .* does not exist|cannot write"):
        write_transcript(tmp_path / "missing" / "words.tsv", [Word("a", 0, 1)])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".srt", ".vtt"])
@pytest.mark.parametrize("unit", ["[", "(", "<a", "<rt>", "<rt", "{\\", "<00:01"])
def test_unclosed_markup_reads_in_linear_time(tmp_path, unit, suffix):
    """A cue of unclosed `[` (or `(`, `<a`, `<rt>`) took 12 s at 100 KB and over a minute at
    1 MB: each pattern scanned from every opener to the end of the cue."""
    import time

    head = "WEBVTT\n" if suffix == ".vtt" else "1"
    path = tmp_path / f"w{suffix}"
    cue = f"hi {unit * (1_000_000 // len(unit))} yo"
    path.write_text(f"{head}\n00:00:01.000 --> 00:00:02.000\n{cue}\n")
    t0 = time.perf_counter()
    words = read_transcript(path)
    assert time.perf_counter() - t0 < 5.0  # about 0.1 s; generous for a loaded machine
    assert words[0].text == "hi" and words[-1].text == "yo"


def test_a_transcript_denser_than_speech_is_refused_before_any_model(tmp_path):
    """A 6 s clip with a 3 s cue of 100,000 `<b ` words read in a second, then kept `predict`
    busy past 120 s (each word a text-model forward over its context)."""
    import time

    path = tmp_path / "w.srt"
    path.write_text("1\n00:00:00,000 --> 00:00:03,000\n" + "<b " * 100_000 + "\n")
    t0 = time.perf_counter()
    with pytest.raises(InputError, match=r"100000 words within 10 s .* faster than any speech"):
        read_transcript(path)
    assert time.perf_counter() - t0 < 10.0
    fast = "".join(f"{i / 25:.2f}\t0.04\tw{i}\n" for i in range(250))  # 25 words a second
    (tmp_path / "fast.tsv").write_text(TSV_HEAD + fast)
    assert len(read_transcript(tmp_path / "fast.tsv")) == 250


TEXTS = {
    "w.tsv": TSV_HEAD + "0.5\t0.25\thello\n1\t0.5\twörld\n",
    "o.tsv": OFFICIAL_HEAD + "hello\t0.5\t0.25\t0\thello wörld\nwörld\t1\t0.5\t0\thello wörld\n",
    "w.srt": "1\n00:00:00,500 --> 00:00:01,500\nhello wörld\n",
    "w.vtt": "WEBVTT\n\n00:00.500 --> 00:01.500\nhello wörld\n",
}


@pytest.mark.parametrize("name", TEXTS)
@pytest.mark.parametrize(
    "encode",
    [
        lambda t: t.encode("utf-8"),
        lambda t: t.encode("utf-8-sig"),
        lambda t: t.encode("utf-16"),
        lambda t: b"\xfe\xff" + t.encode("utf-16-be"),
        lambda t: ("\ufeff" + t).encode("utf-16"),  # a writer that adds its own mark too
        lambda t: ("\ufeff" + t).encode("utf-8-sig"),
    ],
    ids=["utf8", "utf8-bom", "utf16", "utf16-be", "utf16-two-marks", "utf8-two-marks"],
)
def test_one_decoding_rule_for_every_format(tmp_path, name, encode):
    """A UTF-16 TSV with its mark written twice was refused ("its first line is \\ufeffonset")
    while the same SRT was read: every format reads the same words from every encoding."""
    path = tmp_path / name
    path.write_bytes(encode(TEXTS[name]))
    path.with_name("plain" + path.suffix).write_text(TEXTS[name], encoding="utf-8")
    want = read_transcript(path.with_name("plain" + path.suffix))
    assert [w.text for w in want] == ["hello", "wörld"]
    assert read_transcript(path) == want


def test_words_after_the_media_ends_are_one_warning(tmp_path):
    """A transcript of a longer recording (or in milliseconds) was taken silently: its words
    past the end get no bin. `predict` says how many, in one line, and still predicts."""
    import av
    import numpy as np
    from conftest import run_cli

    media = tmp_path / "a.wav"
    with av.open(str(media), "w") as out:  # 4 s of a tone, written by FFmpeg
        stream = out.add_stream("pcm_s16le", rate=16000, layout="mono")
        tone = (3000 * np.sin(np.arange(64000) / 16000 * 2 * np.pi * 220)).astype("<i2")
        frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for p in stream.encode(frame) + stream.encode():
            out.mux(p)
    words = tmp_path / "w.tsv"
    write_transcript(words, [Word("in", 1, 0.5), Word("late", 600, 0.5), Word("later", 900, 1)])
    out = tmp_path / "p.npy"
    args = ("predict", str(media), "--out", str(out), "--transcript", str(words), "--no-cache")
    r = run_cli(*args, "--checkpoint", "demo")
    assert r.returncode == 0, r.stderr
    late = [line for line in r.stderr.splitlines() if "start after" in line]
    assert len(late) == 1, r.stderr
    assert "2 of 3 words start after" in late[0] and "the first at 600.00 s" in late[0]
    assert np.load(out).shape == (4, 20484)
