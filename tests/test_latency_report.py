"""tools/latency_report.py splits a prediction's latency into its stages from the header stamps."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def _tool():
    path = Path(__file__).parents[1] / "tools" / "latency_report.py"
    spec = importlib.util.spec_from_file_location("latency_report", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stages_add_up_to_end_to_end():
    tool = _tool()
    header = {
        "timings": {
            "window_end": 10.0,
            "bin_closed": 10.01,
            "features_ready": 10.11,
            "model_start": 10.11,
            "model_end": 10.115,
            "publish": 10.116,
        }
    }
    d = tool.stage_delays(header, received_stream_time=10.118)
    assert d["feature extraction"] == pytest.approx(100.0)
    assert d["brain model"] == pytest.approx(5.0)
    parts = [v for k, v in d.items() if not k.startswith("end to end")]
    assert sum(parts) == pytest.approx(d["end to end (data → here)"])


def test_missing_stamps_are_left_out():
    d = _tool().stage_delays({"timings": {"model_start": 1.0, "model_end": 1.002}}, 1.01)
    assert list(d) == ["brain model"]
