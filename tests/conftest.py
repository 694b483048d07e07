"""Shared test helpers: the official-code fixture and the CLI runner."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

# Every test process (each pytest-xdist worker too) gets a default stream port of its own, set
# before tribe_stream is imported here or in any CLI run, so `run`/`demo` (which publish on the
# default address) never fight over 5556 with each other or with anything else on the machine.
with socket.socket() as _s:
    _s.bind(("127.0.0.1", 0))
    os.environ["TRIBE_STREAM_URL"] = f"tcp://127.0.0.1:{_s.getsockname()[1]}"

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


def demo_models(device: str, modalities: tuple[str, ...] = ("text", "audio", "video")):
    """A server's models on `device`: the demo brain model's torch engine and the demo
    extractors of `modalities` (`Extractors`)."""
    from tribe_stream.engines import make_engine
    from tribe_stream.extractors.demo import load_demo_extractors
    from tribe_stream.models import Extractors, load_brain_model

    ex = load_demo_extractors(device=device, modalities=modalities)
    engine = make_engine("torch", load_brain_model("demo"), device=device)
    return engine, Extractors(**{m: ex[m] for m in modalities})


def replay_streams(clip, models, n: int, more=lambda i: []) -> tuple[list, object]:
    """`n` streams (ids s0, s1, ...) of `clip` replayed as fast as it decodes, on `models`
    (`demo_models`) and one clock, each with the sources `more(i)` beside its file: the
    pipelines and their clock, for a `Server`."""
    from tribe_stream.clock import StreamClock
    from tribe_stream.sources.replay import FileReplay
    from tribe_stream.stream.pipeline import Pipeline, PipelineConfig

    engine, ex = models
    clock = StreamClock()
    pipes = [
        Pipeline(
            [FileReplay(clip, clock=clock, realtime=False), *more(i)],
            engine,
            ex.for_stream(),
            config=PipelineConfig(live=False),
            clock=clock,
            stream_id=f"s{i}",
        )
        for i in range(n)
    ]
    return pipes, clock


def copy_fixture(tmp_path: Path) -> Path:
    """A writable copy of the official-layout fixture checkpoint, to break on purpose."""
    import shutil

    d = tmp_path / "ckpt"
    shutil.copytree(FIXTURE, d)
    for p in d.iterdir():
        p.chmod(0o644)
    return d


def measured_call(code: str, path: Path, timeout: float = 60) -> tuple[list[str], float, int]:
    """Run `code` (which reads sys.argv[1] and prints lines, its last one `SECONDS MAXRSS_KIB`) in
    a fresh interpreter on `path`: its other lines, its seconds and its peak memory (KiB)."""
    r = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=timeout
    )
    assert r.returncode == 0, r.stderr
    *lines, last = r.stdout.strip().splitlines()
    seconds, kib = last.split()
    return lines, float(seconds), int(kib)


@contextlib.contextmanager
def collecting(url: str, n: int, timeout: float = 60.0):
    """A real Subscriber on `url` that collects the first `n` predictions in its own thread:
    yields `(subscriber, got)`, `got` filling with `(header, float32 values)`; on leaving, waits
    for the thread (up to 30 s)."""
    from tribe_stream.client import Subscriber

    got: list[tuple[dict, np.ndarray]] = []
    with Subscriber(url) as sub:

        def listen():
            while len(got) < n:
                msg = sub.recv(timeout=timeout)
                if msg is None:
                    return
                got.append((dict(msg.header), np.array(msg.values, dtype=np.float32)))

        t = threading.Thread(target=listen, daemon=True)
        t.start()
        yield sub, got
        t.join(30)


@pytest.fixture(scope="session")
def small_model():
    from tribe_stream.model.loading import load_brain_model

    return load_brain_model(FIXTURE)


@pytest.fixture(scope="module")
def offscreen():
    """Offscreen OpenGL for the vispy renderer (render, movie, report), else the test skips."""
    from tribe_stream.viewer.backend import DisplayError, use_offscreen_backend

    try:
        use_offscreen_backend()
        from vispy import app

        app.Canvas(show=False).close()
    except (DisplayError, RuntimeError, OSError) as exc:
        pytest.skip(f"no headless OpenGL here ({exc}); apt-get install libegl1 libgl1-mesa-dri")
