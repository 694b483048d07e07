"""A real PortAudio input device for tests: a private PulseAudio server with a null sink.

Needs: apt-get install libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins. The fixture
skips, saying why, when any of them is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tribe_stream.errors import SourceError
from tribe_stream.sources.microphone import import_sounddevice, list_input_devices


class PulseServer:
    """A throwaway PulseAudio daemon with one null sink, on a private socket."""

    def __init__(self, runtime: Path) -> None:
        self.runtime = runtime
        self.socket = runtime / "native"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return  # already running
        env = dict(os.environ, PULSE_RUNTIME_PATH=str(self.runtime), HOME=str(self.runtime))
        self.proc = subprocess.Popen(
            [
                "pulseaudio",
                "-n",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--use-pid-file=no",
                "--disable-shm=yes",
                "--log-target=stderr",
                "--log-level=error",
                "-L",
                f"module-native-protocol-unix socket={self.socket} auth-anonymous=1",
                "-L",
                "module-null-sink sink_name=tribe_test rate=48000 channels=1",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"pulseaudio exited with {self.proc.returncode}: {err[-500:]}")
            if self.socket.exists():
                time.sleep(0.1)
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("pulseaudio did not open its socket within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.socket.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def pulse() -> Iterator[PulseServer]:
    try:
        sd = import_sounddevice()
    except SourceError as exc:
        pytest.skip(f"no PortAudio here: {exc}")
    if shutil.which("pulseaudio") is None or shutil.which("pacat") is None:
        pytest.skip(
            "no PulseAudio to make a test device: apt-get install pulseaudio pulseaudio-utils"
        )
    runtime = Path(tempfile.mkdtemp(prefix="tribe-pulse-"))
    server = PulseServer(runtime)
    try:
        server.start()
    except RuntimeError as exc:
        shutil.rmtree(runtime, ignore_errors=True)
        pytest.skip(f"could not start a PulseAudio test server: {exc}")
    old = os.environ.get("PULSE_SERVER")
    os.environ["PULSE_SERVER"] = f"unix:{server.socket}"
    try:
        names = [d["name"] for d in list_input_devices(refresh=True)]
        if "pulse" not in names:
            pytest.skip(
                "PortAudio does not list the ALSA 'pulse' device "
                f"(found {names}): apt-get install libasound2-plugins"
            )
        yield server
    finally:
        server.stop()
        if old is None:
            os.environ.pop("PULSE_SERVER", None)
        else:
            os.environ["PULSE_SERVER"] = old
        shutil.rmtree(runtime, ignore_errors=True)
        sd._terminate()
        sd._initialize()


def play_tone(hz: float, seconds: float, rate: int = 44100, level: float = 0.5) -> None:
    """Play a tone into the null sink with pacat (a separate PulseAudio client)."""
    t = np.arange(round(seconds * rate)) / rate
    pcm = (level * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2").tobytes()
    subprocess.run(
        ["pacat", "--playback", "--format=s16le", f"--rate={rate}", "--channels=1"],
        input=pcm,
        check=True,
        timeout=10,
    )
