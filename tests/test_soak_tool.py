"""`tools/soak.py serve`, run as a user runs it: a minute of demo streams coming and going
through one server, with the product's live options (here `--video-clips 1`) reaching every
stream, one row a minute and the rows as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[1] / "tools" / "soak.py"


def _soak(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SOAK), "serve", *args], capture_output=True, text=True, timeout=timeout
    )


def test_a_minute_of_streams_coming_and_going_with_a_live_option(tmp_path):
    out = tmp_path / "soak.json"
    r = _soak(
        "--minutes", "1.05", "--checkpoint", "demo", "--device", "cpu", "--min-streams", "1",
        "--max-streams", "2", "--arrive-s", "3", "--life-min", "5", "--life-max", "10",
        "--clip-seconds", "20", "--no-text", "--video-clips", "1", "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    # the streams were made with the option: the server's notes say so
    assert "one V-JEPA2 clip a second for both bins (--video-clips 1)" in r.stdout
    report = json.loads(out.read_text())
    assert report["args"]["video_clips"] == 1
    (row,) = report["rows"]
    assert row["minute"] == 1 and row["started"] >= 2 and row["ended"] >= 1
    assert row["received"] > 0 and row["errors"] == 0
    assert "| 1 | " in r.stdout  # the markdown table's row


def test_a_bad_live_option_is_one_line():
    r = _soak("--minutes", "1", "--video-clips", "3", timeout=60)
    assert r.returncode == 2 and "--video-clips" in r.stderr and "Traceback" not in r.stderr
