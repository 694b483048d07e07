"""Word contexts: the text the language model reads for each word, built as the official pipeline
builds it (neuralset's `AddText`, `AddSentenceToWords` and `AddContextToWords`, docs/PARITY.md).

1. The transcript's words are joined by spaces and split into sentences; each sentence is
   `capitalize()`d (first character upper-case, the rest lower-case), loses its trailing dots, and
   the sentences are joined again by `". "`: after a `?` or `!` sentence the text holds `"?. "`,
   and the transcript's last word loses its `.`.
2. That text is split into sentences again, and each word is found in it (where its letters
   start). A word's *part* is its own characters (as many as the word has, not past its
   sentence); the characters up to the next word go to its part, and at a sentence change the
   rest of the sentence does.
3. A word's context is the parts of up to `max_context_words` words before it, then its own.
   The model's tokens for the word are the context's past those of
   `context[:-len(word)].rstrip()` (at least one).

Sentences are split by spaCy when installed (`en_core_web_lg` when present, else its rule-based
`sentencizer`, as the official code falls back), else by `split_sentences`, which agrees with the
sentencizer on ordinary text: a sentence ends at a word whose trailing punctuation holds `.`, `!`
or `?` (not an abbreviation's or an initial's `.` such as `Mr.`, `U.S.`, nor an ellipsis), and
the next starts at the next word's first letter.
"""

from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate

Span = tuple[int, int, int]
"""A sentence: (first character, end without trailing whitespace, end with it)."""

SENTENCE_PUNCT = frozenset(".!?‼‽⁇⁈⁉。！？｡．﹒﹖﹗")
# Single-token abbreviations of spaCy's English tokenizer exceptions (MIT): their final `.` does
# not end a sentence. Initials (`A.`, `U.S.`) are kept by its suffix rule instead.
ABBREVIATIONS = frozenset(
    "Adm. Ak. Ala. Apr. Ariz. Ark. Aug. Bros. Calif. Co. Colo. Conn. Corp. D.C. Dec. Del. Dr. "
    "E.G. E.g. Feb. Fla. Ga. Gen. Gov. I.E. I.e. Ia. Id. Ill. Inc. Ind. Jan. Jr. Jul. Jun. Kan. "
    "Kans. Ky. La. Ltd. Mar. Mass. Md. Messrs. Mich. Minn. Miss. Mo. Mont. Mr. Mrs. Ms. Mt. N.C. "
    "N.D. N.H. N.J. N.M. N.Y. Neb. Nebr. Nev. Nov. Oct. Okla. Ore. Pa. Ph.D. Prof. Rep. Rev. S.C. "
    "Sen. Sep. Sept. St. Tenn. Va. Wash. Wis. a.m. co. e.g. i.e. p.m. v.s. vs.".split()
)
_INITIALS = re.compile(r"(?:[A-Za-z]\.)|(?:[A-Z]\.)+")
_TRAILING = re.compile(r"[\W_]*$")
_LEADING = re.compile(r"^[\W_]+")
_WORD = re.compile(r"\S+")
_LETTER = re.compile(r"[^\W_]")


def _ends_sentence(word: str) -> bool:
    """Whether a word's trailing punctuation closes a sentence (see the module docstring)."""
    tail = _TRAILING.search(word)
    assert tail is not None
    punct = tail.group()
    if not any(c in SENTENCE_PUNCT for c in punct):
        return False
    body = word[: tail.start()]
    if punct.startswith("."):
        if punct.startswith("..."):  # an ellipsis is one token, not a sentence end
            return any(c in SENTENCE_PUNCT for c in punct[3:].lstrip("."))
        if body + "." in ABBREVIATIONS or _INITIALS.fullmatch(body + "."):
            return any(c in SENTENCE_PUNCT for c in punct[1:])
    return True


def split_sentences(text: str) -> list[Span]:
    """Sentences of `text` by the rule of the module docstring (no spaCy needed)."""
    spans: list[Span] = []
    start, ended, last_end = 0, False, 0
    for m in _WORD.finditer(text):
        letter = _LETTER.search(m.group())
        if ended and letter is not None:
            cut = m.start() + letter.start()
            spans.append((start, len(text[:cut].rstrip()), cut))
            start, ended = cut, False
        last_end = m.end()
        ended = ended or _ends_sentence(m.group())
    if text[start:].strip():
        spans.append((start, last_end, len(text)))
    return spans


@functools.cache
def _spacy_pipeline():
    """The official `en_core_web_lg` when installed, else a blank English pipeline with the
    rule-based sentencizer; None without spaCy."""
    try:
        import spacy
    except ImportError:
        return None
    try:
        return spacy.load("en_core_web_lg")
    except OSError:
        nlp = spacy.blank("en")
        nlp.add_pipe("sentencizer")
        return nlp


def spacy_sentences(text: str) -> list[Span] | None:
    """Sentences of `text` by spaCy (None when spaCy is not installed)."""
    nlp = _spacy_pipeline()
    if nlp is None:
        return None
    return [(s.start_char, s.end_char, s.start_char + len(s.text_with_ws)) for s in nlp(text).sents]


def default_splitter(text: str) -> list[Span]:
    """spaCy's sentences when spaCy is installed, else `split_sentences`."""
    spans = spacy_sentences(text)
    return split_sentences(text) if spans is None else spans


Splitter = Callable[[str], list[Span]]
CONTINUATION = "and"
"""An ordinary word standing for the words still to come in a live transcript."""


def punctuated(texts: Sequence[str], splitter: Splitter) -> tuple[str, list[int], list[int]]:
    """The official re-joined text of a transcript, where each word's letters start in it, and
    the sentence (of the first split) each word is in."""
    raw = " ".join(texts)
    starts = list(accumulate((len(t) + 1 for t in texts), initial=0))[:-1]
    sents = splitter(raw)
    pieces = [raw[s:e].capitalize().rstrip(".") for s, e, _ in sents]
    text = ". ".join(pieces)
    offsets = list(accumulate((len(p) + 2 for p in pieces), initial=0))[:-1]
    where, sentence, k = [], [], 0
    for t, a in zip(texts, starts, strict=True):
        lead = _LEADING.match(t)
        core = a + (lead.end() if lead and lead.end() < len(t) else 0)
        while k + 1 < len(sents) and sents[k + 1][0] <= core:
            k += 1
        sentence.append(k)
        if not sents:
            where.append(0)
            continue
        s = sents[k][0]
        where.append(offsets[k] + min(max(core - s, 0), len(pieces[k])))
    return text, where, sentence


@dataclass
class Parts:
    """Each word's part of the text: `own` as it is when the word comes (its own characters),
    `whole` once the next word has come (with the characters up to it, or its sentence's rest);
    `sentence`: which sentence of the first split the word is in."""

    own: list[str]
    whole: list[str]
    sentence: list[int]


def word_parts(texts: Sequence[str], splitter: Splitter | None = None, final: bool = True) -> Parts:
    """The parts of a transcript's words (see the module docstring).

    `final=False`: more words follow (a live stream): the text is made with one more ordinary
    word after the last, so the last sentence is cut, stripped and joined as it will be then.
    """
    splitter = splitter or default_splitter
    text, where, first_split = punctuated([*texts, *([] if final else [CONTINUATION])], splitter)
    sents = splitter(text)
    own: list[str] = []
    whole: list[str] = []
    k, prev_k, start_char, prev_char, prev_sentence = 0, None, 0, 0, ""
    for word, pos in zip(texts, where[: len(texts)], strict=True):
        while k + 1 < len(sents) and sents[k + 1][0] <= pos:
            k += 1
        s0, _, s1 = sents[k] if sents else (0, 0, len(text))
        sentence = text[s0:s1]
        char = pos - s0
        if prev_k is not None:
            if k != prev_k or char <= prev_char:  # a new sentence: the old one's rest
                whole[-1] += prev_sentence[start_char:]
                start_char = 0
            else:  # the characters up to this word
                whole[-1] += sentence[start_char:char]
                start_char = char
        last = char + len(word)
        new = sentence[start_char:last]
        own.append(new)
        whole.append(new)
        start_char, prev_k, prev_char, prev_sentence = last, k, char, sentence
    return Parts(own, whole, first_split[: len(texts)])


def _context(before: Sequence[str], own: str, word: str) -> tuple[str, str]:
    context = "".join(before) + own
    return context, context[: -len(word)].rstrip()


def word_contexts(
    texts: Sequence[str],
    max_context_words: int = 1024,
    splitter: Splitter | None = None,
    final: bool = True,
) -> list[tuple[str, str]]:
    """`(context, prefix)` of each word (see the module docstring); `prefix` is the context
    without the word (its tokens are not the word's). `final`: as in `word_parts`."""
    p = word_parts(texts, splitter, final)
    return [
        _context(p.whole[max(0, i - max_context_words) : i], p.own[i], w)
        for i, w in enumerate(texts)
    ]


class ContextWindow:
    """Word contexts of a live transcript, one word at a time: `add(text)` gives the newest word's
    `(context, prefix)` as `word_contexts` gives it when more words follow (the transcript's last
    word keeps its `.`; the one divergence from the finished transcript's contexts).

    Only the sentence in progress is split again for each word: earlier sentences' parts no
    longer change, so they are kept (the last `max_context_words`) and a word costs the same
    however long the stream. `overflow="rebase"`: once the context is full, its older half is
    dropped at once (so the language model's cached keys stay valid for longer).
    """

    def __init__(
        self,
        max_context_words: int = 1024,
        overflow: str = "exact",
        splitter: Splitter | None = None,
    ) -> None:
        self.max_words = max_context_words
        self.rebase = overflow == "rebase"
        self.splitter = splitter or default_splitter
        self.reset()

    def reset(self) -> None:
        self.done: deque[str] = deque(maxlen=self.max_words)  # whole parts of earlier sentences
        self.texts: list[str] = []  # the words of the sentence in progress (and its predecessor)
        self.in_context = 0  # rebase: how many words (the newest's included) its context may hold

    def add(self, text: str) -> tuple[str, str]:
        self.texts.append(text)
        parts = word_parts(self.texts, self.splitter, final=False)
        # the words before the newest word's sentence are finished: keep only their parts (from
        # a sentence whose first word has no leading punctuation, which the sentence before holds)
        cut = parts.sentence.index(parts.sentence[-1])
        while cut > 0 and _LEADING.match(self.texts[cut]):
            cut = parts.sentence.index(parts.sentence[cut - 1])
        if cut > 0:
            self.done.extend(parts.whole[:cut])
            del self.texts[:cut]
            parts = Parts(parts.own[cut:], parts.whole[cut:], parts.sentence[cut:])
        n_before = len(self.done) + len(self.texts) - 1
        limit = self.max_words
        if self.rebase:
            self.in_context += 1
            if self.in_context > self.max_words + 1:
                self.in_context = self.max_words // 2 + 1
            limit = min(limit, self.in_context - 1)
        limit = min(limit, n_before)
        from_tail = min(limit, len(self.texts) - 1)
        older = list(self.done)[len(self.done) - (limit - from_tail) :] if limit > from_tail else []
        tail = parts.whole[len(self.texts) - 1 - from_tail : len(self.texts) - 1]
        return _context(older + tail, parts.own[-1], text)
