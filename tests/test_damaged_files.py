"""Files we write on a disk that fills up, and the files that leaves (issue 31): the writers end
in one line, never a crash; every reader of a damaged file refuses it in one line, in bounded
time, never a traceback or a hang."""

from __future__ import annotations

import resource
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import run_cli

from tribe_stream import N_VERTICES
from tribe_stream.publish import Publisher
from tribe_stream.types import Prediction

CLI = [sys.executable, "-m", "tribe_stream.cli"]


def file_size_limit(nbytes: int):
    """A child whose files cannot grow past `nbytes` (RLIMIT_FSIZE: writes fail with EFBIG, as
    on a full disk with ENOSPC: the same failed write in HDF5)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return limit


def one_line(r: subprocess.CompletedProcess | tuple[int, str], code: int = 2) -> str:
    rc, stderr = (r.returncode, r.stderr) if hasattr(r, "returncode") else r
    assert rc == code, (rc, stderr[-3000:])
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip() and "UNTRAINED" not in line]
    assert len(lines) == 1, stderr
    return lines[0]


def free_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def pred(k: int) -> Prediction:
    values = np.random.default_rng(k).standard_normal(N_VERTICES).astype(np.float32)
    return Prediction(k, values, (k, k + 1.0), k + 5.0)


def write_recording(path, rows: int = 40, killed: bool = False) -> None:
    """A recording of `rows` predictions, closed; or, `killed`, as a recorder killed after its
    last flush leaves it (written in a child that exits without closing it)."""
    code = (
        "import os, sys\n"
        "import numpy as np\n"
        "from tribe_stream.protocol import decode, encode_prediction\n"
        "from tribe_stream.recording import RecordingWriter\n"
        "from tribe_stream.types import Prediction\n"
        "w = RecordingWriter(sys.argv[1], {'stream_id': 's', 'dtype': 'float16'})\n"
        "for k in range(int(sys.argv[2])):\n"
        "    p = Prediction(k, np.full(20484, k, np.float32), (k, k + 1.0), k + 5.0)\n"
        "    m = decode(encode_prediction(p, stream_id='s', session='x', seq=k, publish_wall=1))\n"
        "    m.received = 1.0\n"
        "    w.add_prediction(m)\n"
        "w.flush()\n"
        "w.close() if sys.argv[3] == 'close' else os._exit(0)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(path), str(rows), "kill" if killed else "close"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from tribe_stream.sources.clip import make_clip

    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", 3.0, width=96, height=64)


# -- 1: HDF5 writers on a full disk ----------------------------------------------------------------


def test_predict_h5_on_a_full_disk_fails_in_one_line(clip, tmp_path):
    """Before: the right line, the temporary removed, then SIGSEGV (139) as h5py's objects were
    closed after their writes had failed."""
    warm = run_cli("predict", str(clip), "--checkpoint", "demo", "--no-asr", "--out",
                   str(tmp_path / "warm.npy"))  # fmt: skip
    assert warm.returncode == 0, warm.stderr  # the caches are written, before the limit
    out = tmp_path / "clip.h5"
    args = ["predict", str(clip), "--checkpoint", "demo", "--no-asr", "--out", str(out)]
    r = subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=600,
        preexec_fn=file_size_limit(200_000),
    )  # fmt: skip
    line = one_line(r, code=1)  # predict's exit status when a file failed
    assert f"cannot write {out}: File too large" in line, line
    assert not out.exists() and not list(tmp_path.glob(".clip*"))  # no temporary left


def test_record_on_a_full_disk_stops_in_one_line(tmp_path):
    """Before: every flush failed and was counted, and closing the file crashed (SIGSEGV)."""
    out = tmp_path / "rec.h5"
    with Publisher("tcp://127.0.0.1:*") as pub:
        proc = subprocess.Popen(
            [*CLI, "record", pub.url, str(out), "--flush-interval", "0.1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=file_size_limit(300_000),
        )  # fmt: skip
        try:
            assert pub.wait_for_subscribers(1, timeout=30), proc.stderr.read()
            deadline = time.monotonic() + 30
            k = 0
            while proc.poll() is None and time.monotonic() < deadline:
                pub.send(pred(k))
                k += 1
                time.sleep(0.02)
            if proc.poll() is None:  # it kept going: stop it as a user would
                proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
        finally:
            proc.kill()
    line = one_line((proc.returncode, stderr))
    assert "File too large" in line and str(out) in line, line


def test_writer_left_by_a_failed_write_never_crashes_the_process(tmp_path):
    """The writer itself, at every size the disk may refuse: from the file's first bytes (HDF5's
    first flush) to a chunk of rows; one OSError, then a clean exit."""
    code = (
        "import sys, numpy as np\n"
        "from tribe_stream.prediction import Predictions\n"
        "from tribe_stream.offline_outputs import save_predictions\n"
        "from tribe_stream.errors import InputError\n"
        "p = Predictions(np.ones((40, 20484), np.float32), np.arange(40), {})\n"
        "try:\n    save_predictions(p, sys.argv[1])\n"
        "except InputError as e:\n    print(e)\n"
    )
    for limit in (3_000, 8_000, 100_000, 1_400_000):
        out = tmp_path / f"x{limit}.h5"
        r = subprocess.run(
            [sys.executable, "-c", code, str(out)], capture_output=True, text=True,
            timeout=120, preexec_fn=file_size_limit(limit),
        )  # fmt: skip
        assert r.returncode == 0, (limit, r.returncode, r.stderr[-2000:])
        assert f"cannot write {out}: File too large" in r.stdout, (limit, r.stdout, r.stderr)


# -- 2: a truncated recording ---------------------------------------------------------------------

READ = (
    "import sys\n"
    "from tribe_stream.errors import InputError\n"
    "from tribe_stream.recording import read_recording\n"
    "try:\n    print('read', len(read_recording(sys.argv[1])))\n"
    "except InputError as e:\n    print('refused', e)\n"
)


def damaged(src, dst, *, cut: bool = False, flip: int | None = None):
    data = bytearray(src.read_bytes())
    if cut:
        data = data[: len(data) // 2]
    if flip is not None:
        data[flip : flip + 4] = bytes(b ^ 0xFF for b in data[flip : flip + 4])
    dst.write_bytes(data)
    return dst


@pytest.mark.parametrize("killed", [False, True], ids=["closed", "killed"])
def test_truncated_recording_is_refused_at_once_by_every_reader(tmp_path, killed):
    """Before: the SWMR open that follows a failed plain open succeeded on half a file, and
    reading it waited for ever (render, movie, roi, replay --fast; SIGTERM did not stop it)."""
    from test_regions import write_annot

    good = tmp_path / "good.h5"
    write_recording(good, killed=killed)
    bad = damaged(good, tmp_path / "trunc.h5", cut=True)
    lh, rh = tmp_path / "lh.annot", tmp_path / "rh.annot"
    write_annot(lh, N_VERTICES // 2, 4, 0)
    write_annot(rh, N_VERTICES // 2, 4, 1)
    commands = [
        ["render", str(bad), "--out", str(tmp_path / "x.png")],
        ["movie", str(bad), "--out", str(tmp_path / "x.mp4")],
        ["roi", str(bad), "--annot", str(lh), str(rh)],
        ["replay", str(bad), "--fast", "--publish", free_url()],
    ]
    for args in commands:
        t0 = time.monotonic()
        line = one_line(run_cli(*args, timeout=120))
        assert str(bad) in line and "truncated" in line, line
        assert time.monotonic() - t0 < 60, args


def test_damaged_killed_recording_is_refused_in_bounded_time(tmp_path):
    """A killed recorder's file opens only for SWMR reading, whose reads retry a failed checksum
    with doubling waits: on damaged metadata, for ever. Now ms, then one line."""
    good = tmp_path / "killed.h5"
    write_recording(good, killed=True)
    for offset in range(900, 2700, 200):  # object headers and chunk indexes
        bad = damaged(good, tmp_path / f"bad{offset}.h5", flip=offset)
        r = subprocess.run(
            [sys.executable, "-c", READ, str(bad)], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0 and r.stdout.startswith(("read", "refused")), r.stderr
        assert "\n" not in r.stdout.strip(), r.stdout


# -- 3: render and movie on damaged recordings ----------------------------------------------------


@pytest.mark.parametrize("damage", ["no_values", "checksum", "100_columns", "byte_strings"])
def test_render_and_movie_refuse_a_damaged_recording_in_one_line(tmp_path, damage):
    """Before: KeyError tracebacks (no `values`, a corrupt checksum); `movie` took `values` of 100
    columns (a vispy traceback) or of byte strings (an mp4, exit 0) that `render` refused."""
    import h5py

    path = tmp_path / "rec.h5"
    write_recording(path, rows=3)
    with h5py.File(path, "r+") as f:
        header = h5py.h5o.get_info(f["values"].id).addr
        if damage != "checksum":
            del f["values"]
        if damage == "100_columns":
            f["values"] = np.ones((3, 100), np.float32)
        elif damage == "byte_strings":
            f["values"] = np.full((3, N_VERTICES), b"1.5", dtype="S3")
    if damage == "checksum":
        damaged(path, path, flip=header + 12)
    for args in (["render", str(path)], ["movie", str(path)]):
        out = tmp_path / ("x.png" if args[0] == "render" else "x.mp4")
        line = one_line(run_cli(*args, "--out", str(out), timeout=300))
        assert str(path) in line, line
        assert not out.exists()
