"""A virtual X display (Xvfb) for headless machines: tests, benchmarks, CI screenshots."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tribe_stream.errors import TribeStreamError


class XvfbError(TribeStreamError):
    """Xvfb is missing or did not start."""


@contextmanager
def virtual_display(size: tuple[int, int] = (1280, 800), timeout: float = 15.0) -> Iterator[str]:
    """Start `Xvfb -screen 0 WxHx24`, point DISPLAY at it, yield ":N", then stop it.

    Xvfb picks a free display number itself and reports it (`-displayfd`) only once it accepts
    connections, so there is no race with other X servers on the machine. `-noreset` keeps it
    from resetting when its last client leaves (a reset would write the number again, into a
    pipe nobody reads, and kill the server).
    """
    exe = shutil.which("Xvfb")
    if exe is None:
        raise XvfbError("Xvfb is not installed: `apt-get install xvfb libgl1-mesa-dri`")
    read_fd, write_fd = os.pipe()
    screen = ["-screen", "0", f"{size[0]}x{size[1]}x24"]
    proc = subprocess.Popen(
        [exe, "-displayfd", str(write_fd), *screen, "-nolisten", "tcp", "-noreset"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(write_fd,),
    )
    os.close(write_fd)
    # Xvfb writes the number and then a newline: read both (closing the pipe between the two
    # writes kills the server), and keep the pipe open while the server runs.
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n") and time.monotonic() < deadline:
        ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(read_fd, 64) if ready else b""
        if not chunk:
            break
        data += chunk
    number = data.decode().strip()
    if not number.isdigit():
        os.close(read_fd)
        proc.kill()
        proc.wait()
        raise XvfbError(f"Xvfb did not start within {timeout:.0f} s (exit code {proc.poll()})")
    name = f":{number}"
    old = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = name
    try:
        yield name
    finally:
        if old is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = old
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(read_fd)
