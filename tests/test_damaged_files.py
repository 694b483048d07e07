"""Files we write on a disk that fills up, and the files that leaves (issue 31, a fault probe):
the writers end in one line, never a crash; every reader of a damaged file refuses it in one
line, in bounded time, never a traceback or a hang; a file cut while it is replayed is said; a
secret key is never readable by others, not even for a moment."""

from __future__ import annotations

import os
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


# -- 6: a replayed file cut mid-run, a secret key's first moments ---------------------------------


def test_a_replayed_file_cut_mid_run_is_said_in_one_line(tmp_path, caplog):
    """Before: the stream (`serve`, `run` of a file) just ended at the cut, no word of it."""
    from tribe_stream.sources.clip import make_clip
    from tribe_stream.sources.replay import FileReplay

    whole = make_clip(tmp_path / "whole.mp4", 6.0, width=64, height=48)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes())
    for path in (whole, cut):
        caplog.clear()
        with caplog.at_level("WARNING", logger="tribe_stream.sources"):
            with FileReplay(path, realtime=False, queue_size=2) as src:
                for n, _ in enumerate(src):
                    if n == 5 and path == cut:  # the file is cut while it is being read
                        os.truncate(path, path.stat().st_size // 2)
        said = [r.getMessage() for r in caplog.records if "cut short" in r.getMessage()]
        if path == whole:
            assert not said, said
        else:
            assert len(said) == 1 and "cut.mp4" in said[0], said
            assert "of the 6.0 s it declares" in said[0], said


def test_keys_makes_the_secret_key_private_from_its_first_byte(tmp_path):
    """Before: zmq wrote the secret key with the umask's mode (0644) and `keys` chmodded it
    after: a window in which others could read it (and, with --overwrite, an old file's mode).
    Every file operation of the command is watched (audit hooks): the new secret key's file is
    never seen with any mode but 0600."""
    watch = (
        "import os, sys\n"
        "secret, modes = sys.argv[1], set()\n"
        "def hook(event, args):\n"
        "    if event in ('open', 'os.chmod', 'os.rename', 'os.remove') and os.path.exists(secret):\n"
        "        st = os.stat(secret)\n"
        "        modes.add((st.st_ino, oct(st.st_mode & 0o777)))\n"
        "sys.addaudithook(hook)\n"
        "os.umask(0o022)\n"
        "from tribe_stream.cli import main\n"
        "rc = main(['keys', os.path.dirname(secret), '--name', 'server', *sys.argv[2:]])\n"
        "final = os.stat(secret)\n"
        "modes.add((final.st_ino, oct(final.st_mode & 0o777)))\n"
        "print(rc, sorted(m for ino, m in modes if ino == final.st_ino))\n"
    )
    secret = tmp_path / "keys" / "server.key_secret"
    for extra in ([], ["--overwrite"]):
        if extra:
            secret.chmod(0o644)  # as an older tribe-stream (or a copy) may have left it
            os.link(secret, tmp_path / "old")  # its inode lives on: a new file gets another
        r = subprocess.run([sys.executable, "-c", watch, str(secret), *extra],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[-1] == "0 ['0o600']", (extra, r.stdout)
        assert oct((tmp_path / "keys" / "server.key").stat().st_mode & 0o777) == "0o644"
