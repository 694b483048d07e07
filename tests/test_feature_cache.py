"""The feature cache trusts an entry only when it fits its input (issue 31, #5, #6, #10): another
input's entry, a changed or damaged one is made again, said in one line, never a traceback or a
wrong map; an unreadable input fails alone, named."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from test_media import mono_float_wav

from tribe_stream.prediction import Predictor


def _wav(path: Path, seconds: float, freq: float) -> Path:
    t = np.arange(int(16000 * seconds)) / 16000
    mono_float_wav(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), 16000)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("cache")
    a5, a7 = _wav(d / "a5.wav", 5.0, 440.0), _wav(d / "a7.wav", 7.0, 660.0)
    cache = d / "c"
    pred = Predictor(checkpoint="demo", device="cpu", asr=False, cache=str(cache))
    first = pred.predict(a5)
    (key5,) = {p.stem for p in cache.glob("*.npz")}
    pred.predict(a7)
    (key7,) = {p.stem for p in cache.glob("*.npz")} - {key5}
    return pred, a5, cache, key5, key7, first.values


def _damage(cache: Path, key: str, how: str, other: str) -> None:
    npz, meta = cache / f"{key}.npz", cache / f"{key}.json"
    if how == "another input's entry":
        shutil.copy(cache / f"{other}.npz", npz)
        shutil.copy(cache / f"{other}.json", meta)
    elif how == "another input's features":
        shutil.copy(cache / f"{other}.npz", npz)
    elif how in ("T doubled", "x 1e6", "NaN"):
        with np.load(npz) as z:
            feats = {k: z[k] for k in z.files}
        for k, v in feats.items():
            feats[k] = {"T doubled": np.concatenate([v, v], -1), "x 1e6": v * 1e6,
                        "NaN": np.where(v == v.max(), np.nan, v)}[how]  # fmt: skip
        np.savez(npz, **feats)
    elif how == "truncated":
        data = npz.read_bytes()
        npz.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        npz.write_bytes(b"")
    elif how == "a JSON list":
        meta.write_text(json.dumps([1, 2, 3]))


@pytest.mark.parametrize(
    "how",
    ["another input's entry", "another input's features", "T doubled", "x 1e6", "NaN",
     "truncated", "empty", "a JSON list"],
)  # fmt: skip
def test_an_entry_that_does_not_fit_its_input_is_made_again(setup, how, caplog):
    pred, a5, cache, key5, key7, want = setup
    _damage(cache, key5, how, key7)
    with caplog.at_level(logging.WARNING, logger="tribe_stream.predict"):
        got = pred.predict(a5)
    assert got.timings["cached"] == 0.0  # made again, not trusted
    assert got.values.shape == want.shape == (5, got.values.shape[1])
    np.testing.assert_allclose(got.values, want, rtol=1e-5, atol=1e-6)
    assert any(f"feature cache entry {key5}" in r.message for r in caplog.records), how
    assert pred.predict(a5).timings["cached"] == 1.0  # and the entry is good again


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs /proc/self/mem")
def test_an_unreadable_input_fails_alone_and_is_named(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    _wav(lib / "a.wav", 2.0, 440.0)
    _wav(lib / "c.wav", 2.0, 550.0)
    (lib / "b.wav").symlink_to("/proc/self/mem")  # opens, then every read is an I/O error
    out = tmp_path / "out"
    r = run_cli("predict", str(lib), "--out", str(out), "--no-asr", "--cache", str(tmp_path / "c"))
    assert r.returncode == 1, r.stderr
    assert sorted(p.name for p in out.glob("*.npy")) == ["a.npy", "c.npy"]
    assert "b.wav" in r.stderr + r.stdout and "Traceback" not in r.stderr
