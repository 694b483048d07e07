"""A user's first `tribe-stream predict` on a fresh GPU: the sound's features are made in a thread
beside the video (`extractors/offline.py`), and on an empty compile cache both threads compile
their layers while the other calls its own. Before compiled calls took turns
(`accel._COMPILED_CALLS`), this failed 2 of 2 times on fresh H100s with "Detected that you are
using FX to symbolically trace a dynamo-optimized function". A subprocess gives the fresh
process (nothing compiled: `torch._dynamo.reset()`), fresh Inductor and Triton caches give the
fresh machine, and a fresh feature cache makes every extractor run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_cli

from tribe_stream import N_VERTICES
from tribe_stream.offline_outputs import read_prediction_file
from tribe_stream.sources.clip import make_clip
from tribe_stream.transcripts import write_transcript
from tribe_stream.types import Word

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA GPU: `predict` compiles its extractors only on a GPU",
)

SECONDS = 60


def test_first_predict_with_sound_and_video_on_fresh_compile_caches(tmp_path):
    clip = make_clip(tmp_path / "clip.mp4", SECONDS, width=128, height=96, speech=True)
    text = "the quick brown fox jumps over the lazy dog".split()
    words = [Word(text[i % len(text)], 1.0 + 0.4 * i, 0.3) for i in range((SECONDS - 2) * 5 // 2)]
    transcript = write_transcript(tmp_path / "words.tsv", words)
    caches = {name: tmp_path / name for name in ("inductor", "triton", "features")}
    out = tmp_path / "pred.npy"
    r = run_cli(
        "predict", str(clip), "--checkpoint", "demo", "--device", "cuda", "--out", str(out),
        "--transcript", str(transcript), "--cache", str(caches["features"]),
        timeout=540,
        env={
            "TORCHINDUCTOR_CACHE_DIR": str(caches["inductor"]),
            "TRITON_CACHE_DIR": str(caches["triton"]),
            "PYTHONUNBUFFERED": "1",
        },
    )  # fmt: skip
    assert r.returncode == 0, f"predict failed:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    assert "symbolically trace" not in r.stderr
    values, _, meta = read_prediction_file(out)
    assert values.shape == (SECONDS, N_VERTICES) and np.isfinite(values).all()
    assert sorted(meta["modalities"]) == ["audio", "text", "video"] and not meta["missing"]
    # the extractors were compiled here, into the fresh caches (not found in an old one)
    assert any(caches["inductor"].rglob("*.py")), "nothing compiled into the fresh Inductor cache"
