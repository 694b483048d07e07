"""Word bins at the official predict's 100 s window edges, against neuralset's own placement.

`tests/fixtures/official/words_window_edges.json` was made by
`tools/make_official_fixtures_video.py` in the official venv: neuralset's `list_segments` (the
100 s windows of the official predict) and `SegmentDataset`, with a static word extractor whose
vectors are one-hot (see `tests/fixtures/official/README.video.md`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tribe_stream.extractors.timing import n_bins_for, place_words

EDGES = json.loads(
    (Path(__file__).parent / "fixtures" / "official" / "words_window_edges.json").read_text()
)
WORDS = EDGES["words"]


def test_words_land_in_the_official_bins():
    """Each 100 s window places its words on its own: a word across the 100 s edge is in bin 199
    and bin 200, one just before the edge in bin 199; a zero-length word exactly on a window
    start is in no window; a long word across the 200 s edge takes 3 bins; a word past the
    recording's last bin is dropped (officially it lies in the last window's padding, not moved
    left onto the last bin). Words away from edges are the controls."""
    assert EDGES["segments"] == [[0.0, 100.0], [100.0, 100.0], [200.0, 100.0]]
    n_bins = n_bins_for(EDGES["seconds"])
    one_hot = np.eye(len(WORDS), dtype=np.float32)[:, None, :]  # word i: (L=1, D) one-hot at i
    feats = place_words(
        one_hot, [w["onset"] for w in WORDS], [w["duration"] for w in WORDS], n_bins
    )
    assert feats.shape == (1, len(WORDS), n_bins)
    counts = feats[0].astype(int)
    ours = {
        w["what"]: [b for b in np.flatnonzero(c) for _ in range(c[b])]
        for w, c in zip(WORDS, counts, strict=True)
    }
    official = {w["what"]: [b for b in w["bins"] if b < n_bins] for w in WORDS}
    assert ours == official


def test_one_window_keeps_the_whole_file_rule():
    """`window=None`: the recording as one window (a word hanging over the end moved left)."""
    feats = place_words(np.ones((1, 1, 1), np.float32), [4.9], [0.5], 10, window=None)
    assert np.flatnonzero(feats[0, 0]).tolist() == [9]
