"""`tribe-stream predict`'s output: results on stdout (what was written, the table, the
summary), progress and diagnostics on stderr; the summary's real-time factors with and
without the start-up."""

from __future__ import annotations

import re

import pytest
from conftest import run_cli

from tribe_stream.commands.predict import summary_line


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from tribe_stream.sources.clip import make_clip

    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", 3.0, width=96, height=64)


def test_results_on_stdout_diagnostics_on_stderr(clip, tmp_path):
    """Before: everything, the summary included, went to stderr, and the real-time factor
    left out the start-up (~27 s of loading on a CPU)."""
    out = tmp_path / "clip.npy"
    r = run_cli("predict", str(clip), "--checkpoint", "demo", "--no-asr", "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{clip} -> {out}" in r.stdout and "tribe-stream predict: 1 of 1 files" in r.stdout
    m = re.search(
        r"3 s of stimulus predicted in ([\d.]+) s \(([\d.]+)x real time\); ([\d.]+) s with the "
        r"([\d.]+) s start-up of loading the models \(([\d.]+)x real time\); 0 failed",
        r.stdout,
    )
    assert m, r.stdout
    wall, _, total, startup, _ = map(float, m.groups())
    assert startup > 0 and total == pytest.approx(wall + startup, abs=0.11)
    assert "UNTRAINED demo weights" in r.stderr  # a diagnostic, not a result
    assert "real time" not in r.stderr and " -> " not in r.stderr


def test_summary_line_says_both_factors():
    line = summary_line(60, wall=6.0, startup=24.0, failed=1)
    assert line == (
        "60 s of stimulus predicted in 6.0 s (10.0x real time); 30.0 s with the 24.0 s "
        "start-up of loading the models (2.0x real time); 1 failed"
    )
