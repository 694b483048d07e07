"""Shared test helpers: the official-code fixture and the CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pulse_device import pulse  # noqa: F401 - a real PortAudio device, for any test that asks

FIXTURE = Path(__file__).parent / "fixtures" / "tribev2-small"
CASES = [
    "full_T200",
    "full_T200_tokens",
    "partial_T37_tokens",
    "no_audio_T200",
    "text_only_T64_tokens",
]

os.environ.setdefault("TRIBE_STREAM_CACHE", str(Path(__file__).parent / ".cache"))


def load_case(name: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Inputs `(L, D, T)` per present modality and the expected output, time-major `(T_out, n_outputs)`."""
    with np.load(FIXTURE / "cases.npz") as z:
        feats = {
            m: z[f"{name}/{m}"] for m in ("text", "audio", "video") if f"{name}/{m}" in z.files
        }
        return feats, z[f"{name}/expected"].T


def run_cli(
    *args: str, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run `tribe-stream ARGS` as a user would (a fresh process) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "tribe_stream.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="session")
def small_model():
    from tribe_stream.model.loading import load_brain_model

    return load_brain_model(FIXTURE)
