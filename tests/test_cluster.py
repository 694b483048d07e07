"""Stimulus libraries: manifests, resumable batches, and a real two-node Ray cluster on loopback
(a head and a second node, each started with `ray start`) whose outputs are byte for byte the
in-process run's, with and without a worker SIGKILLed mid-file."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from tribe_stream.cluster import plan_jobs, read_manifest
from tribe_stream.cluster.batch import finished, remove_temporaries
from tribe_stream.errors import InputError

LENGTHS = {"a": 2.0, "b": 2.5, "long": 9.0, "c": 3.0, "d": 2.0, "e": 3.5}
"""Six clips; the kill test kills the worker that holds `long` (the longest in flight)."""


# ----- manifests and plans (no Ray) -----


def test_manifests_name_files_relative_to_their_folder(tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    (lib / "sub").mkdir(parents=True)
    for name in ("x.wav", "sub/y.mp4"):
        (lib / name).write_bytes(b"media")
    (lib / "list.list").write_text("# my clips\nx.wav\n\n  sub/y.mp4  \n")
    (lib / "table.csv").write_text(f"label,path\none,x.wav\ntwo,{lib / 'sub/y.mp4'}\n")
    monkeypatch.chdir(tmp_path)  # relative to the manifest, not to the working directory
    want = [lib / "x.wav", lib / "sub" / "y.mp4"]
    assert read_manifest("lib/list.list") == want
    assert read_manifest(lib / "table.csv") == want


@pytest.mark.parametrize(
    "name,text,message",
    [
        ("m.csv", "file\nx.wav\n", "`path` column"),
        ("m.list", "# nothing\n", "names no files"),
        ("m.list", "x.wav\nmissing.mp4\nnotes.md\n", "2 of 3 entries unusable: line 2: "),
    ],
)
def test_a_bad_manifest_is_one_line_naming_the_entries(tmp_path, name, text, message):
    (tmp_path / "x.wav").write_bytes(b"media")
    (tmp_path / "notes.md").write_text("not media")
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=message) as exc:
        read_manifest(tmp_path / name)
    assert "\n" not in str(exc.value)
    if "unusable" in message:
        assert "missing.mp4 (not found)" in str(exc.value) and "notes.md (not a media" in str(
            exc.value
        )


def test_resume_skips_finished_outputs_and_redoes_partial_ones(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for n in ("p", "q", "r"):
        (src / f"{n}.wav").write_bytes(b"media")
    out = tmp_path / "out"
    todo, done = plan_jobs([src], out)
    assert [Path(j.target).name for j in todo] == ["p.npy", "q.npy", "r.npy"] and not done
    (out / "p.words.tsv").write_text("text\tstart\tduration\tsequence_id\tsentence\n")
    (out / "p.npy").write_bytes(b"x")
    (out / "p.json").write_text("{}")  # p finished: its three files under their final names
    (out / "q.words.tsv").write_text("text\tstart\tduration\tsequence_id\tsentence\n")
    (out / "q.npy").write_bytes(b"x")  # q partial: its writer died before the .json
    (out / "r.npy").write_bytes(b"x")  # r from before words files: redone too
    (out / "r.json").write_text("{}")
    (out / ".q.4242.0123abcd.tmp.json").write_text("half")  # what the dead writer left
    (out / ".other.1.0123abcd.tmp.npy").write_text("not ours")
    with pytest.raises(
        InputError, match=r"p.npy exists; pass --overwrite to replace it \(or --resume"
    ):
        plan_jobs([src], out)
    todo, done = plan_jobs([src], out, resume=True)
    assert [Path(j.target).name for j in todo] == ["q.npy", "r.npy"]
    assert [Path(j.target).name for j in done] == ["p.npy"] and finished(done[0])
    assert not (out / ".q.4242.0123abcd.tmp.json").exists()  # swept by the plan
    assert remove_temporaries(todo) == 0
    assert (out / ".other.1.0123abcd.tmp.npy").exists()  # another output's: left alone
    todo, done = plan_jobs([src], out, overwrite=True, resume=True)
    assert len(todo) == 3 and not done


def test_resume_without_ray_sweeps_a_killed_writers_temporary(tmp_path):
    """Before: only the Ray path swept them; `predict --resume` in-process redid the output and
    left the killed writer's 0-byte temporary beside it."""
    from tribe_stream.sources.clip import make_clip

    clip = make_clip(tmp_path / "clip.mp4", 2.0, width=64, height=48)
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.words.tsv").write_text("text\tstart\tduration\tsequence_id\tsentence\n")
    stale = out / ".clip.4242.0123abcd.tmp.npy"  # killed between its words and its .npy
    stale.write_bytes(b"")
    r = run_cli("predict", str(clip), "--out", str(out / "clip.npy"), "--checkpoint", "demo",
                "--no-asr", "--resume")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["clip.json", "clip.npy", "clip.words.tsv"]


LISTENING = """
import psutil
import ray  # imported before the cluster starts (a user's code may have)
from tribe_stream.cluster.ray_pool import connect

connect("local")  # as `predict --ray` starts one

@ray.remote
class Echo:
    def pid(self):
        return psutil.Process().pid

actors = [Echo.remote() for _ in range(2)]
ray.get([a.pid.remote() for a in actors])  # workers up, as the predict actors would be
pids = {psutil.Process().pid} | {p.pid for p in psutil.Process().children(recursive=True)}
for c in psutil.net_connections(kind="inet"):
    if c.status == psutil.CONN_LISTEN and c.pid in pids:
        print(c.laddr.ip, c.laddr.port, psutil.Process(c.pid).name())
ray.shutdown()
"""


def test_a_local_ray_cluster_listens_on_loopback_only():
    """Before: GCS, raylet, workers and the driver listened on every interface, the runtime-env
    agent on the LAN address: anyone on the network could reach a `predict --ray` cluster."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("needs Ray: pip install ray")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    r = subprocess.run([sys.executable, "-c", LISTENING], capture_output=True, text=True,
                       timeout=300, env={**env, "RAY_USAGE_STATS_ENABLED": "0"})  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    sockets = [line.split() for line in r.stdout.splitlines()]
    names = {name for _, _, name in sockets}
    assert {"gcs_server", "raylet"} <= names and len(sockets) >= 5, r.stdout
    outside = [s for s in sockets if s[0] not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")]
    assert not outside, outside


# ----- a real cluster -----


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """End a `ray start --block` and everything it started (its own process group)."""
    for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)
            return


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a second node on 127.0.0.1, one CPU each, token authentication on; this
    process is connected to it. Yields the head's address."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("the cluster tests need Ray: pip install ray")
    ray_bin = Path(sys.executable).with_name("ray")
    logs = tmp_path_factory.mktemp("ray-logs")
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must fit
    env = {
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # before Ray is imported: it reads them once
    import ray

    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    procs = []

    def start(name: str, *args: str) -> None:
        log = open(logs / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        procs.append(
            subprocess.Popen(
                [str(ray_bin), "start", "--block", *args, *common],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    try:
        start(
            "head", "--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", temp
        )
        deadline = time.monotonic() + 90
        while True:  # the second node needs the head's GCS
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            assert time.monotonic() < deadline, (logs / "head.log").read_text()[-2000:]
            time.sleep(0.3)
        start("node", "--address", address)
        ray.init(address=address, logging_level="warning", log_to_driver=False)
        while sum(n["Alive"] for n in ray.nodes()) < 2:
            assert time.monotonic() < deadline, (logs / "node.log").read_text()[-2000:]
            time.sleep(0.3)
        yield address
    finally:
        ray.shutdown()
        for proc in reversed(procs):  # the node first: a node whose head is gone waits for it
            _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Six short clips, a manifest naming them (relative paths), and the plain in-process
    `predict` of them (one thread, as each one-CPU worker has) started in the background, so it
    runs while the cluster starts: `(manifest, its outputs folder, the process)`."""
    from tribe_stream.sources.clip import make_clip

    root = tmp_path_factory.mktemp("library")
    (root / "clips").mkdir()
    for name, seconds in LENGTHS.items():
        make_clip(root / "clips" / f"{name}.mp4", seconds, width=64, height=48)
    manifest = root / "library.csv"
    manifest.write_text("path,condition\n" + "".join(f"clips/{n}.mp4,x\n" for n in LENGTHS))
    ref = root / "in-process"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tribe_stream.cli", "predict", str(manifest), "--out", str(ref),
         "--no-asr", "--no-cache"],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    yield manifest, ref, proc
    proc.kill()


@pytest.fixture(scope="module")
def reference(library) -> dict[str, bytes]:
    """The in-process run's files, by name."""
    _, ref, proc = library
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    outputs = {p.name: p.read_bytes() for p in ref.iterdir()}
    assert sorted(outputs) == sorted(
        f"{n}.{x}" for n in LENGTHS for x in ("npy", "json", "words.tsv")
    )
    return outputs


def _outputs(out: Path) -> dict[str, bytes]:
    """Every file in `out` but the feature cache: leftovers and duplicates would show here."""
    return {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".tribe-cache"}


def test_ray_run_writes_the_in_process_bytes_and_reports_bad_files(
    library, cluster, reference, tmp_path
):
    manifest = library[0]
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00 not a video " * 100)
    with_bad = tmp_path / "with-bad.list"
    with_bad.write_text("".join(f"{p}\n" for p in [*read_manifest(manifest), bad]))
    out = tmp_path / "out"
    r = run_cli("predict", str(with_bad), "--out", str(out), "--no-asr", "--ray", cluster,
                "--workers", "2", timeout=240)  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr  # one bad file: the rest written, exit 1
    assert "broken.mp4: " in r.stderr and "cannot read" in r.stderr
    assert "Traceback" not in r.stderr
    assert "6 of 7 files" in r.stderr and "1 failed" in r.stderr
    assert _outputs(out) == reference  # byte for byte, nothing else
    assert any((out / ".tribe-cache").glob("*.npz"))  # the cache went to the shared folder


def test_a_worker_killed_mid_file_is_retried_elsewhere(library, cluster, reference, tmp_path):
    from tribe_stream.cluster import predict_files

    manifest = library[0]
    killed: list[int] = []
    long_clip = str(manifest.parent / "clips" / "long.mp4")

    def watch(progress) -> None:
        for media, pid in progress.running.values():
            if media == long_clip and pid and not killed:
                # the file was just handed out (9 s of clip: about a second of work): SIGKILL
                # its worker 0.2 s later, while the file is surely still in flight
                killed.append(pid)
                threading.Timer(0.2, os.kill, (pid, signal.SIGKILL)).start()

    out = tmp_path / "out"
    report = predict_files(manifest, out, cluster=cluster, workers=2, asr=False, on_progress=watch)
    assert killed, "the long clip was never seen in flight"
    assert not report.failed, [r.error for r in report.failed]
    assert _outputs(out) == reference  # every output present, equal, none twice, no leftovers
    assert len(report.results) == len(LENGTHS)
    (long_result,) = [r for r in report.results if r.job.media == long_clip]
    assert long_result.tries == 2  # killed once, then done
    (victim,) = [w for w in report.workers if w.retried]
    assert victim.retried == 1 and victim.pid == killed[0]
    assert long_result.worker != victim.index  # redone elsewhere, while Ray restarts the victim
    assert sum(w.files for w in report.workers) == len(LENGTHS)
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = predict_files(manifest, out, cluster=cluster, resume=True, asr=False)
    assert again.results == [] and len(again.skipped) == len(LENGTHS) and again.workers == []
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes  # no work done
    r = run_cli("predict", str(manifest), "--out", str(out), "--no-asr", "--resume",
                "--ray", cluster, timeout=60)  # fmt: skip
    assert r.returncode == 0 and "6 finished outputs skipped" in r.stderr, r.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == mtimes
    assert np.load(out / "long.npy").shape == (9, 20484)
