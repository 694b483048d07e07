"""Word contexts against the official pipeline's (`tests/fixtures/official/contexts.json`, made by
`tools/make_official_fixtures_text.py` with neuralset 0.0.2's AddText, AddSentenceToWords and
AddContextToWords, spaCy's rule-based sentencizer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tribe_stream.extractors import contexts as ctx
from tribe_stream.extractors.contexts import (
    ContextWindow,
    punctuated,
    spacy_sentences,
    split_sentences,
    word_contexts,
)

CASES = json.loads((Path(__file__).parent / "fixtures" / "official" / "contexts.json").read_text())[
    "cases"
]
SPLITTERS = {"rule": split_sentences}
if spacy_sentences("a. b") is not None:
    SPLITTERS["spacy"] = spacy_sentences


def case_id(case: dict) -> str:
    return f"{case['name']}-{case['max_context_words']}"


@pytest.mark.parametrize("splitter", sorted(SPLITTERS))
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_offline_contexts_equal_the_official(case, splitter):
    """`?. ` after a question, `mr. smith` kept in one sentence and lower-cased, the last word
    without its `.`, the window's oldest word without its leading space: as the official."""
    split = SPLITTERS[splitter]
    text = punctuated(case["words"], split)[0]
    assert text == case["text"]
    got = [c for c, _ in word_contexts(case["words"], case["max_context_words"], split)]
    assert got == case["contexts"]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_live_contexts_equal_the_official_but_for_the_last_word(case):
    """Live, a word's context is made when it arrives: the same, except that the stream's last
    word keeps its `.` (nobody knows it is the last)."""
    window = ContextWindow(case["max_context_words"], splitter=split_sentences)
    live = [window.add(w)[0] for w in case["words"]]
    assert live[:-1] == case["contexts"][:-1]
    last = case["words"][-1]
    assert live[-1] == case["contexts"][-1] + (last[-1] if last.endswith(".") else "")


def test_prefix_is_the_context_without_the_word_as_the_official_cuts_it():
    pairs = word_contexts(["Hello", "there.", "Fine."])
    assert pairs[1] == ("Hello there.", "Hello")
    # the last word lost its `.`: cutting len("Fine.") characters takes the space too
    assert pairs[2] == ("Hello there. Fine", "Hello there.")


def test_rule_splitter_agrees_with_the_sentencizer_on_ordinary_text():
    text = (
        'I met Mr. Smith. He said "go." Then left! Why? Plan A. Then the U.S. and e.g. cats. '
        "It costs 3.5 dollars... or more. (See below.) Done"
    )
    starts = [text[s:e] for s, e, _ in split_sentences(text)]
    assert starts == [
        "I met Mr. Smith.", 'He said "go."', "Then left!", "Why?",
        "Plan A. Then the U.S. and e.g. cats.", "It costs 3.5 dollars... or more. (",
        "See below.)", "Done",
    ]  # fmt: skip
    if "spacy" in SPLITTERS:
        assert split_sentences(text) == spacy_sentences(text)


def test_a_long_live_transcript_keeps_a_bounded_history():
    """The window drops words before a sentence start no context needs; contexts stay exact."""
    words = ("one two three four. " * 200).split()
    window = ContextWindow(16, splitter=split_sentences)
    live = [window.add(w)[0] for w in words]
    offline = [c for c, _ in word_contexts(words, 16, split_sentences)]
    assert live[:-1] == offline[:-1]
    assert len(window.texts) <= 2 * 16 + 64 + 8


def test_rebase_contexts_hold_half_to_all_of_the_window():
    window = ContextWindow(8, overflow="rebase", splitter=split_sentences)
    sizes = [len(window.add(f"w{i}")[0].split()) for i in range(40)]
    assert max(sizes) == 9 and min(sizes[10:]) >= 5  # the word + 4..8 before it


def test_without_spacy_the_rule_splits(monkeypatch):
    monkeypatch.setattr(ctx, "spacy_sentences", lambda text: None)
    assert ctx.default_splitter("Hi there. Bye") == [(0, 9, 10), (10, 13, 13)]
