"""Make `tests/fixtures/official/contexts.json`: the word contexts the official TRIBE v2 pipeline
builds for a few transcripts (run by hand in the official environment, see docs/PARITY.md).

    /path/to/official-venv/bin/python tools/make_official_fixtures_text.py tests/fixtures/official

Each transcript's words (with onsets, as a word TSV holds them) go through the transforms the
official `get_audio_and_text_events` runs: neuralset's `AddText`, `AddSentenceToWords(
max_unmatched_ratio=0.05)` and `AddContextToWords(sentence_only=False, max_context_len=N,
split_field="")`. spaCy's large English model cannot be downloaded here, so neuralset is given
spaCy's blank English pipeline with the rule-based `sentencizer` (the harness does the same).
Nothing of the official code is copied: it is imported and called.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TRANSCRIPTS = {
    "punctuation": (
        'Hello there. How are you? I met Mr. Smith yesterday! He said: "the U.S. is big." '
        "Did you know it costs 3.5 dollars... or more? Dr. Brown, e.g. the vet, agreed. "
        "(See below.) Well, that's all, folks. Wow!! Really?! yes. The end."
    ),
    "no_final_stop": "so this is how it ends? maybe not. we will see",
}
WINDOWS = {"punctuation": [1024, 5], "no_final_stop": [1024, 3]}


def main() -> None:
    import neuralset.utils as ns_utils
    import pandas as pd
    import spacy
    from neuralset.events.transforms import AddContextToWords, AddSentenceToWords, AddText
    from neuralset.events.utils import standardize_events

    def blank_english(*args, **kwargs):
        nlp = spacy.blank("en")
        nlp.add_pipe("sentencizer")
        return nlp

    ns_utils.get_spacy_model = blank_english  # no download: the rule-based sentencizer
    import neuralset.events.transforms.utils as tutils

    tutils._ns_utils.get_spacy_model = blank_english
    tutils.parse_text.cache_clear()

    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    cases = []
    for name, transcript in TRANSCRIPTS.items():
        words = transcript.split()
        for window in WINDOWS[name]:
            rows = [
                {
                    "type": "Word", "text": w, "start": 0.4 * i, "duration": 0.3,
                    "timeline": "t", "subject": "s", "language": "english",
                }
                for i, w in enumerate(words)
            ]  # fmt: skip
            events = standardize_events(pd.DataFrame(rows))
            for transform in (
                AddText(),
                AddSentenceToWords(max_unmatched_ratio=0.05),
                AddContextToWords(sentence_only=False, max_context_len=window, split_field=""),
            ):
                events = transform(events)
            got = events[events.type == "Word"].sort_values("start")
            cases.append(
                {
                    "name": name,
                    "max_context_words": window,
                    "words": words,
                    "text": events[events.type == "Text"].text.iloc[0],
                    "contexts": got.context.tolist(),
                }
            )
    (out / "contexts.json").write_text(json.dumps({"cases": cases}, indent=1) + "\n")
    print(f"wrote {out / 'contexts.json'}: {len(cases)} cases")


if __name__ == "__main__":
    try:
        import neuralset  # noqa: F401  (the official pipeline's packages)
    except ImportError:
        print(
            f"{sys.argv[0]}: run this with the official pipeline's venv ({'neuralset, spacy'}), e.g. one made "
            "by `tools/parity_official.py --setup-only --venv VENV`",
            file=sys.stderr,
        )
        sys.exit(2)
    if len(sys.argv) != 2:
        print(f"usage: OFFICIAL_VENV/bin/python {sys.argv[0]} OUT_FOLDER", file=sys.stderr)
        sys.exit(2)
    main()
