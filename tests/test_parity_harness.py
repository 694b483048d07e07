"""The official-parity harness's pure parts (tools/parity): error statistics, the verdict, the
report, the Hugging Face cache layout, the word TSV and the experiment config. No official venv."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.parity import stats  # noqa: E402
from tools.parity.clips import write_tsv  # noqa: E402
from tools.parity.hfcache import install_snapshot, repo_folder, snapshot_of  # noqa: E402
from tools.parity.models import AUDIO_ID, TEXT_ID, VIDEO_ID, experiment_config  # noqa: E402


def test_relative_errors_per_row():
    official = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    ours = np.array([[3.0, 4.5], [1.0, 0.0], [0.0, 0.0], [0.0, 1e-9]])
    rel = stats.relative_errors(ours, official)
    np.testing.assert_allclose(rel[:3], [0.1, 0.0, 0.0])
    assert math.isinf(rel[3])  # officially zero, ours not
    with pytest.raises(ValueError, match="shapes differ"):
        stats.relative_errors(ours[:, :1], official)


def test_pearson():
    rng = np.random.default_rng(0)
    x = rng.normal(size=500)
    assert stats.pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert stats.pearson(x, -x) == pytest.approx(-1.0)
    assert math.isnan(stats.pearson(x, np.ones_like(x)))


def test_features_compared_bin_by_bin_over_our_bins():
    rng = np.random.default_rng(1)
    ours = rng.normal(size=(2, 8, 11)).astype(np.float32)
    official = np.zeros((2, 8, 200), np.float32)  # one 100 s segment, zero-padded
    official[..., :11] = ours
    official[:, :, 4] *= 1.01  # one bin 1 % off
    row = stats.compare_features("c", "audio", ours, official)
    assert row.compared == 11 and row.shape_official == (2, 8, 200)
    assert row.rel_max == pytest.approx(0.01 / 1.01, rel=1e-4)
    assert row.rel_median == 0.0 and row.note == ""
    official[..., 20] = 1.0  # official features past our end
    assert "1 non-zero official bins" in stats.compare_features("c", "audio", ours, official).note
    absent = stats.compare_features("c", "video", None, official)
    assert absent.failed and "absent on our side" in absent.note
    assert not stats.compare_features("c", "video", None, None).failed


def test_predictions_matched_by_official_seconds():
    rng = np.random.default_rng(2)
    ours = rng.normal(size=(6, 5))
    official = ours[[0, 1, 2, 3, 4]] * 1.001  # rows for seconds 0..4 only
    row = stats.compare_predictions("c", ours, official, np.array([0.0, 1, 2, 3, 4]), 2.0, 3.0)
    assert row.compared == 5 and "rows: ours 6, official 5" in row.note
    assert row.rel_max == pytest.approx(0.001 / 1.001, rel=1e-6)
    shifted = stats.compare_predictions("c", ours, official, np.array([2.0, 3, 4, 5, 6]))
    assert shifted.compared == 4 and "not in ours: [6]" in shifted.note


def test_judge_tolerance_and_documented_divergences():
    def row(what: str, rel: float, clip: str = "speech44k") -> stats.Row:
        return stats.Row(clip, what, (2, 8, 4), (2, 8, 200), 4, rel / 2, rel, 0.99)

    rows = [row("audio", 5e-5), row("text", 0.3), row("video", 0.3), row("end to end", 0.05)]
    divergences = [
        stats.Divergence("words", "text", 0.5, "word contexts", clips="speech*"),
        stats.Divergence("e2e", "end to end", 0.01, "too small a bound"),
        stats.Divergence("ci-only", "video", 1.0, "only in CI", mode="pypi"),
    ]
    failed = stats.judge(rows, 1e-4, divergences, "full")
    assert [r.what for r in failed] == ["video", "end to end"]
    assert rows[1].divergence == "words" and not rows[1].failed
    assert not rows[0].failed and rows[0].divergence == ""
    table = stats.markdown(rows, 1e-4)
    assert "### speech44k" in table and "divergence `words`" in table and table.count("FAIL") == 2
    assert json.dumps([r.to_json() for r in rows])  # JSON-safe (nan -> null)


def test_divergences_file_is_valid():
    for d in stats.load_divergences():
        assert d.id and d.why and d.max_rel > 0 and d.doc.startswith("docs/PARITY.md")


def test_hf_cache_layout_is_read_by_the_hub_client(tmp_path, monkeypatch):
    from huggingface_hub import snapshot_download

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')
    (model / "sub").mkdir()
    (model / "sub" / "x.txt").write_text("x")
    hf = tmp_path / "hf"
    snap = install_snapshot(hf, "meta-llama/Llama-3.2-3B", model)
    repo = repo_folder(hf, "meta-llama/Llama-3.2-3B")
    assert repo.name == "models--meta-llama--Llama-3.2-3B"
    assert (repo / "refs" / "main").read_text() == snap.name and len(snap.name) == 40
    assert snapshot_of(hf, "meta-llama/Llama-3.2-3B") == snap
    got = snapshot_download("meta-llama/Llama-3.2-3B", cache_dir=hf / "hub", local_files_only=True)
    assert Path(got) == snap and (Path(got) / "sub" / "x.txt").read_text() == "x"
    (model / "config.json").write_text('{"model_type": "llama", "x": 1}')
    again = install_snapshot(hf, "meta-llama/Llama-3.2-3B", model)
    assert again != snap and not snap.exists()  # new content, new revision, the old one gone
    with pytest.raises(ValueError):
        repo_folder(hf, "no-owner")


def test_official_word_tsv_read_by_our_transcript_reader(tmp_path):
    from tribe_stream.transcripts import read_transcript

    rows = [
        {"text": "Mr.", "start": 0.3, "duration": 0.39, "sequence_id": 0, "sentence": "Mr. Smith?"},
        {
            "text": "Smith?",
            "start": 0.75,
            "duration": 0.35,
            "sequence_id": 0,
            "sentence": "Mr. Smith?",
        },
    ]
    path = write_tsv(rows, tmp_path / "clip.tsv")
    assert path.read_text().splitlines()[0].split("\t") == [
        "text",
        "start",
        "duration",
        "sequence_id",
        "sentence",
    ]
    words = read_transcript(path)
    assert [(w.text, w.onset, w.duration) for w in words] == [
        ("Mr.", 0.3, 0.39),
        ("Smith?", 0.75, 0.35),
    ]


def test_experiment_config_names_the_hub_ids_and_released_layers(tmp_path):
    from tribe_stream.extractors.config import from_experiment

    exp = experiment_config(tmp_path / "ckpt", tmp_path / "cache")
    cfg = from_experiment(exp)
    assert (cfg.text.model_name, cfg.audio.model_name, cfg.video.model_name) == (
        TEXT_ID,
        AUDIO_ID,
        VIDEO_ID,
    )
    for m in ("text", "audio", "video"):
        assert cfg[m].fractions == (0.5, 0.75, 1.0)
    assert cfg.text.cache_n_layers == cfg.video.cache_n_layers == 20
    # as the official base config: audio too (whether it thins audio is the extractor's business)
    assert exp["data"]["audio_feature"]["cache_n_layers"] == 20
    # the keys the official from_pretrained pops or reads must be there
    assert exp["infra"]["folder"] and "workdir" in exp["infra"]
    assert "infra_timelines" in exp["data"]["study"] and "infra" in exp["data"]["neuro"]
    assert "infra" in exp["data"]["image_feature"]
    assert exp["brain_model_config"]["encoder"]["depth"] == 8
