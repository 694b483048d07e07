"""Long-running commands end cleanly: exit 0 at the media's end, 130 on Ctrl-C, 143 on SIGTERM
after writing what they have; options and outputs are checked before any model loads; broken
media and missing packages are one clear line."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from tribe_stream import N_VERTICES


def start(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tribe_stream.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_for(proc: subprocess.Popen, prefix: str, timeout: float = 240) -> list[str]:
    """Read the command's output until a line starts with `prefix`."""
    lines = []
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(prefix) or time.monotonic() > deadline:
            return lines
    raise AssertionError("the command ended early:\n" + "".join(lines))


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_demo_stops_on_a_signal_writes_its_output_and_cleans_up(tmp_path, sig, code):
    """Before: SIGTERM killed `demo` at once (exit 143, no --out, the clip left in /tmp), and with
    speech recognition running Ctrl-C aborted it (`terminate called without an active
    exception`, exit 134: the recogniser thread was never joined)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = tmp_path / "demo.npy"
    proc = start("demo", "--seconds", "30", "--publish", "none", "--out", str(out),
                 env={"TMPDIR": str(tmp)})  # fmt: skip
    try:
        lines = wait_for(proc, "second 3/")
        assert any(line.startswith("modalities: text, audio, video") for line in lines), lines
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    output = "".join(lines) + rest
    assert proc.returncode == code, output
    assert "terminate called" not in output and "Traceback" not in output
    assert f"stopped by {sig.name}" in output
    values = np.load(out)
    assert 3 <= values.shape[0] < 30 and values.shape[1] == N_VERTICES
    assert [p for p in tmp.iterdir() if p.name.startswith("tribe-stream")] == []  # clip gone


def test_demo_with_speech_recognition_ends_cleanly(tmp_path):
    """At the normal end the recogniser thread is joined: exit 0, no abort (was 3 of 4 runs)."""
    r = run_cli("demo", "--seconds", "6", "--publish", "none", "--out", str(tmp_path / "d.npy"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "terminate called" not in r.stderr
    assert "still busy" not in r.stderr  # a normal end is no warning (was: every demo)
    assert "modalities: text, audio, video" in r.stdout
    assert np.load(tmp_path / "d.npy").shape == (6, N_VERTICES)


@pytest.mark.parametrize(
    "args,message",
    [
        (["demo", "--lag", "0.3"], "multiple of 0.5"),
        (["demo", "--lag", "-1"], "must be at least 0"),
        (["demo", "--seconds", "nan"], "finite"),
        (["demo", "--seconds", "inf"], "finite"),
        (["demo", "--seconds", "0"], "above 0"),
        (
            ["run", "--checkpoint", "demo", "--camera", "lavfi:testsrc", "--seconds", "-1"],
            "above 0",
        ),
        (["demo", "--publish", "tcp://127.0.0.1:99999"], "1 to 65535"),
        (["demo", "--out", "/nonexistent-folder/x.npy"], "does not exist"),
        (["demo", "--out", "/tmp"], "is a folder"),
        (["demo", "--out", "demo.txt"], "must end in .npy"),
        (["record", "tcp://127.0.0.1:5999", "r.h5", "--duration", "-1"], "must be above 0"),
        (["record", "tcp://127.0.0.1:5999", "r.h5", "--count", "0"], "at least 1"),
        (["record", "tcp://127.0.0.1:99999", "r.h5"], "1 to 65535"),
        (["lsl", "tcp://127.0.0.1:99999"], "1 to 65535"),
        (["view", "--max-fps", "0"], "must be above 0"),
        (["replay", "x.h5", "--speed", "nan"], "not a finite number"),
        (["movie", "x.h5", "--out", "x.mp4", "--threshold-pct", "101"], "at most 100"),
        (["keys", "/proc/nope/keys"], "No such file or directory"),
    ],
)
def test_bad_options_are_one_line_before_any_model_loads(args, message):
    t = time.perf_counter()
    r = run_cli(*args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "modalities:" not in r.stdout  # nothing was loaded
    assert time.perf_counter() - t < 30


def test_replay_of_a_missing_recording_says_only_that():
    """Before: `replay nothere.h5` announced "replaying nothere.h5 on tcp://..." and then
    refused the file; the announcement now follows the reading (with the predictions' count)."""
    r = run_cli("replay", "nothere.h5")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "recording nothere.h5 does not exist" in r.stderr, r.stderr
    assert "replaying" not in r.stdout, r.stdout


def test_a_second_sigterm_ends_a_command_at_once():
    """The first SIGTERM asks a command to finish what it is doing (a file in progress may take
    minutes: `predict` of a long .txt); before, a second SIGTERM was ignored as well, so only
    SIGKILL stopped it. Now the second ends the process at once, as Ctrl-C twice does."""
    code = (
        "import time\n"
        "from tribe_stream.commands import stop_on_signals\n"
        "stop = stop_on_signals()\n"
        "print('ready', flush=True)\n"
        "while not stop.is_set(): time.sleep(0.01)\n"
        "print('finishing', stop.code, flush=True)\n"
        "time.sleep(60)\n"  # the file in progress, for ever
        "print('finished', flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline() == "finishing 143\n"
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGTERM, rest
    assert "finished" not in rest


def test_several_inputs_into_a_file_name_is_one_line(tmp_path):
    """Before: `predict FOLDER --out x.npy` made a folder called x.npy and filled it."""
    from test_predict import write_wav

    media = tmp_path / "media"
    media.mkdir()
    for name in ("a", "b"):
        write_wav(media / f"{name}.wav", 2.0)
    r = run_cli("predict", str(media), "--out", str(tmp_path / "x.npy"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "names a file, but several inputs' outputs go in a folder" in r.stderr, r.stderr
    assert not (tmp_path / "x.npy").exists()


@pytest.mark.parametrize(
    "command,out",
    [
        (["fidelity", "{clip}", "--checkpoint", "demo"], "fid.json"),
        (["serve", "--file", "{clip}", "--checkpoint", "demo", "--publish", "none"], "s.npy"),
    ],
)
def test_a_report_folder_named_like_a_file_is_one_line(tmp_path, small_clip, command, out):
    """Before: `fidelity CLIP --out fid.json` and `serve --out s.npy` made folders with those
    names and wrote their files inside."""
    args = [a.replace("{clip}", str(small_clip)) for a in command]
    r = run_cli(*args, "--out", str(tmp_path / out))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "names a file, but" in r.stderr and "go in a folder" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / out).exists()


def test_serve_of_missing_media_leaves_no_output_folder(tmp_path):
    r = run_cli("serve", "--file", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "no such file" in r.stderr, r.stdout + r.stderr
    assert not (tmp_path / "o").exists()  # before: made, then left empty


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory) -> Path:
    from tribe_stream.sources.clip import make_clip

    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", 2.0, width=96, height=64)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["bench", "--lag", "0.3"], "--lag"),
        (["run", "--lag", "0.3", "--file", "{clip}"], "--lag"),
        (["serve", "--lag", "0.3", "--file", "{clip}"], "--lag"),
        (["run", "--video-fp8-attention", "--file", "{clip}"], "--video-fp8"),
        (["predict", "{clip}", "--out", "{tmp}/p.npy", "--video-fp8-attention"], "--video-fp8"),
        (["extract", "{clip}", "--out", "{tmp}/f.npz", "--video-fp8-attention"], "--video-fp8"),
        (["demo", "--video-fp8-attention"], "--video-fp8"),
    ],
)
def test_the_shared_options_are_checked_before_any_model_loads(tmp_path, small_clip, args, needle):
    """The schema's checks (the lag rule; FP8 on a device that cannot run it) refuse in one line
    on the CPU, exit 2, before anything loads: the empty model cache stays empty."""
    cache = tmp_path / "cache"
    cache.mkdir()
    args = [a.format(clip=small_clip, tmp=tmp_path) for a in args]
    t = time.perf_counter()
    r = run_cli(
        *args, timeout=120, env={"TRIBE_STREAM_CACHE": str(cache), "CUDA_VISIBLE_DEVICES": ""}
    )
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert list(cache.iterdir()) == []  # no demo weights were built: nothing loaded
    assert time.perf_counter() - t < 60


def test_cuda_without_a_gpu_is_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    r = run_cli("run", "--checkpoint", "demo", "--camera", "lavfi:testsrc", "--device", "cuda")
    assert r.returncode == 2 and "no CUDA GPU" in r.stderr and "Traceback" not in r.stderr


def test_demo_without_transformers_names_the_install_command(tmp_path):
    code = (
        "import sys; sys.modules['transformers'] = None\n"
        "from tribe_stream.cli import main\n"
        "sys.exit(main(['demo', '--seconds', '2', '--fast']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    from tribe_stream.errors import install_hint

    assert install_hint("demo") in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def run_cli_imports(*args: str, block: tuple[str, ...] = ()) -> tuple[int, str, set[str]]:
    """Run the CLI under `python -X importtime`: (exit code, output without the import lines,
    the modules it imported). `block`: packages made missing (as if not installed)."""
    code = (
        "import sys\n"
        + "".join(f"sys.modules[{name!r}] = None\n" for name in block)
        + "from tribe_stream.cli import main\n"
        + f"sys.exit(main({list(args)!r}))\n"
    )
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = r.stderr.splitlines()
    imported = {ln.rsplit("|", 1)[1].strip() for ln in lines if ln.startswith("import time:")}
    rest = "\n".join(ln for ln in lines if not ln.startswith("import time:"))
    return r.returncode, r.stdout + rest, imported


@pytest.mark.parametrize(
    "args,block,message,unloaded",
    [
        (["predict", "nothere.mp4", "--out", "x.npy"], (), "does not exist", "torch"),
        (["run", "--checkpoint", "demo", "--camera", "/dev/video9"], (), "no such device", "torch"),
        (["run", "--checkpoint", "demo", "--camera", "lavfi:nosuch"], (), "lavfi graph", "torch"),
        (
            ["run", "--checkpoint", "demo", "--camera", "/nonexistent.mp4"],
            (),
            "no such file",
            "torch",
        ),
        (
            ["run", "--checkpoint", "demo", "--camera", "lavfi:testsrc", "--record", "r.h5"],
            ("h5py",),
            "recording needs h5py",
            "tribe_stream.extractors",
        ),
        (
            ["run", "--checkpoint", "demo", "--camera", "lavfi:testsrc", "--viewer"],
            ("vispy",),
            "the viewer needs vispy",
            "tribe_stream.extractors",
        ),
    ],
)
def test_missing_inputs_devices_and_extras_are_one_line_before_models_load(
    args, block, message, unloaded
):
    """Before: `predict nothere.mp4` answered after importing torch (13 s on a loaded machine),
    `run --camera /dev/video0` without a camera after loading and warming every model (27 s),
    a missing h5py or vispy after the models too. Now each is one line, exit 2, before torch
    is imported (inputs, devices) or before any extractor is (options checked after torch)."""
    code, out, imported = run_cli_imports(*args, block=block)
    assert code == 2, out
    assert message in out and "Traceback" not in out, out
    assert len(out.strip().splitlines()) == 1, out
    assert unloaded not in imported, f"{unloaded} was imported before the one-line answer"


def test_one_unreadable_file_to_predict_is_one_line_before_models_load(tmp_path):
    """Before: `predict` loaded every model (seconds), then printed a table of one failed file
    (exit 1); one file given alone is probed first, after the options (which import torch to
    check the device). In a batch, it still fails alone."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for media in (bad, empty):
        code, out, imported = run_cli_imports(
            "predict", str(media), "--checkpoint", "demo", "--out", str(tmp_path / "x.npy")
        )
        assert code == 2 and f"cannot read '{media}'" in out and "Traceback" not in out, out
        assert ("it is empty (0 bytes)" in out) == (media == empty), out
        assert len(out.strip().splitlines()) == 1, out
        assert "transformers" not in imported and "tribe_stream.models" not in imported
    (tmp_path / "p.npy").write_bytes(b"\x93NUMPY")
    code, out, _ = run_cli_imports("predict", str(tmp_path / "p.npy"), "--out", "x.npy")
    assert code == 2 and "unknown kind of file '.npy'" in out, out


def test_roi_says_a_missing_prediction_file_before_looking_for_the_atlas(tmp_path):
    """Before: `roi nothere.npy --atlas destrieux` went to fetch the atlas first (offline: a line
    about the download, not about the file)."""
    r = run_cli(
        "roi", str(tmp_path / "nothere.npy"), "--atlas", "destrieux",
        env={"TRIBE_STREAM_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    assert r.returncode == 2 and "nothere.npy does not exist" in r.stderr, r.stderr
    assert "atlas" not in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_bench_refuses_a_search_that_starts_above_its_end():
    r = run_cli("bench", "--checkpoint", "demo", "--max-streams", "2", "--start-streams", "5")
    assert r.returncode == 2 and "--start-streams 5 is above --max-streams 2" in r.stderr, r.stderr


def test_a_missing_microphone_is_one_line_before_torch_loads():
    """Where PortAudio is missing (a fresh machine), that line instead, as early."""
    from tribe_stream.errors import SourceError
    from tribe_stream.sources.microphone import import_sounddevice

    try:
        import_sounddevice()
        expected = "no input device 'no-such-microphone-here'"
    except SourceError:
        expected = "the PortAudio library is missing"
    code, out, imported = run_cli_imports(
        "run", "--checkpoint", "demo", "--mic", "no-such-microphone-here"
    )
    assert code == 2 and expected in out, out
    assert len(out.strip().splitlines()) == 1, out
    assert "torch" not in imported


def _ffmpeg(*args: str) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg command is needed to make this file (apt-get install ffmpeg)")
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", *args], check=True, timeout=60)


def test_run_on_files_that_give_nothing(tmp_path):
    """Before: a subtitles-only file blamed a missing Llama model, and a file where nothing
    decodes reported `0 predictions ... 0 errors` with exit 0."""
    srt = tmp_path / "subs.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:02,000\nhello\n")
    subs = tmp_path / "subs.mkv"
    _ffmpeg("-i", str(srt), str(subs))
    r = run_cli("run", "--checkpoint", "demo", "--file", str(subs), "--fast")
    assert r.returncode == 2 and "holds neither audio nor video" in r.stderr, r.stderr
    assert "Llama" not in r.stderr and "Traceback" not in r.stderr
    # an MPEG-TS whose every payload byte after the first packets is garbage
    from tribe_stream.sources.clip import make_clip

    clip = make_clip(tmp_path / "clip.mp4", 3.0, width=96, height=64)
    ts = tmp_path / "clip.ts"
    _ffmpeg("-i", str(clip), "-c", "copy", "-f", "mpegts", str(ts))
    raw = bytearray(ts.read_bytes())
    rng = np.random.default_rng(1)
    for i in range(188 * 4, len(raw), 188):  # keep the sync byte and headers of each TS packet
        raw[i + 8 : i + 188] = rng.integers(0, 256, 180, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.ts"
    bad.write_bytes(bytes(raw))
    out = tmp_path / "out.npy"
    r = run_cli(
        "run", "--checkpoint", "demo", "--file", str(bad), "--fast", "--no-text", "--out", str(out)
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "no prediction was made" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed")
def test_run_publish_none_with_view_shows_the_stream(tmp_path):
    """Before: `run --publish none --view` failed with "cannot publish on none". Replayed as
    fast as possible (`--fast`): in real time a loaded machine may skip a second (counted), and
    the count of predictions is not what this checks; closing the viewer must not fail the run
    (it raised TimeoutExpired, exit 1, on a loaded machine)."""
    pytest.importorskip("glfw", reason="the viewer's window backend: pip install glfw")
    from tribe_stream.sources.clip import make_clip
    from tribe_stream.viewer.xvfb import virtual_display

    clip = make_clip(tmp_path / "clip.mp4", 3.0, width=96, height=64)
    with virtual_display((800, 600)) as display:
        r = run_cli(
            "run", "--checkpoint", "demo", "--file", str(clip), "--publish", "none",
            "--viewer", "--linger", "1", "--no-text", "--fast",
            env={"DISPLAY": display},
        )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    from tribe_stream.protocol import DEFAULT_URL

    assert f"publishing on {DEFAULT_URL}" in r.stdout
    assert "done: 3 predictions" in r.stdout


def test_record_from_run(tmp_path):
    from tribe_stream.recording import read_recording
    from tribe_stream.sources.clip import make_clip

    clip = make_clip(tmp_path / "clip.mp4", 2.0, width=96, height=64)
    rec, out = tmp_path / "run.h5", tmp_path / "run.npy"
    r = run_cli(
        "run", "--checkpoint", "demo", "--file", str(clip), "--fast", "--no-text",
        "--publish", "none", "--record", str(rec), "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(read_recording(rec, dtype="float32").values, np.load(out))
    assert Path(rec).stat().st_size > 0


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_record_stops_on_a_signal_with_its_file_closed(tmp_path, sig, code):
    """`record` handled signals but exited 0; now the shell's code, after closing the file."""
    from tribe_stream.publish import Publisher
    from tribe_stream.recording import read_recording
    from tribe_stream.types import Prediction

    out = tmp_path / "rec.h5"
    with Publisher("tcp://127.0.0.1:*") as pub:
        proc = start("record", pub.url, str(out))
        try:
            assert pub.wait_for_subscribers(1, timeout=30)
            for k in range(5):
                values = np.full(N_VERTICES, k, np.float32)
                pub.send(Prediction(k, values, (k, k + 1), k + 5.0))
                time.sleep(0.1)
            time.sleep(1.5)
            proc.send_signal(sig)
            output, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == code, output
    rec = read_recording(out)
    assert rec.seconds.tolist() == [0, 1, 2, 3, 4]
    assert rec.events[-1]["kind"] == "stop"  # closed properly, not killed


def test_run_reads_a_released_style_tagged_config(tmp_path):
    """The released config.yaml carries Python tags (`!!python/object:...`): `run` reads its
    extractor settings through the one safe reader, as `extract` does."""
    import shutil as sh

    from test_resolve import RELEASED_STYLE

    from tribe_stream.extractors.demo import demo_extractors_path
    from tribe_stream.model.demo import demo_model_path
    from tribe_stream.model.loading import load_brain_model
    from tribe_stream.sources.clip import make_clip

    demo = demo_extractors_path()
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    sh.copy(demo_model_path() / "model.safetensors", ckpt / "model.safetensors")
    (ckpt / "config.yaml").write_text(
        RELEASED_STYLE.format(text=demo.text, audio=demo.audio, video=demo.video)
    )
    assert load_brain_model(ckpt).experiment["data"]["text_feature"]["model_name"] == str(demo.text)
    clip = make_clip(tmp_path / "clip.mp4", 3.0, width=96, height=64)
    out = tmp_path / "run.npy"
    r = run_cli(
        "run", "--checkpoint", str(ckpt), "--file", str(clip), "--fast", "--no-text",
        "--publish", "none", "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "modalities: audio, video" in r.stdout
    assert np.load(out).shape == (3, N_VERTICES)


def test_predict_says_at_once_that_ctrl_c_finishes_the_file_in_progress(tmp_path):
    """Before, Ctrl-C during `predict` printed nothing while the file in progress finished (it
    may take minutes); now one line says so at once. The file finishes and is written whole,
    the next is never started, and the command exits 130."""
    from test_predict import write_wav

    media, out = tmp_path / "media", tmp_path / "out"
    media.mkdir()
    out.mkdir()
    for name in ("a", "b", "c"):
        write_wav(media / f"{name}.wav", 60.0)
    proc = start("predict", str(media), "--out", str(out), "--no-asr", "--no-cache")
    try:
        wait_for(proc, str(media / "a.wav"))  # a is written; b is starting or under way
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output
    assert "SIGINT: finishing the files in progress, then stopping" in output
    assert "Traceback" not in output
    assert np.load(out / "a.npy").shape == (60, N_VERTICES)
    assert not (out / "c.npy").exists()


def test_an_unknown_option_names_the_commands_own_help():
    """Before: `tribe-stream demo --fats` pointed at `tribe-stream --help` (the top parser's
    answer), which does not list demo's options."""
    code, out, imported = run_cli_imports("demo", "--seconds", "2", "--fats")
    assert code == 2 and out.strip() == (
        "tribe-stream demo: error: unrecognized arguments: --fats (see `tribe-stream demo --help`)"
    ), out
    assert "torch" not in imported
    code, out, _ = run_cli_imports("--bogus")
    assert code == 2 and "(see `tribe-stream --help`)" in out, out


def test_serve_refuses_more_streams_than_its_limit_before_models_load(tmp_path):
    """Before: `serve --file a --file b --max-streams 1` served both, the limit ignored."""
    clip = tmp_path / "a.mp4"
    from tribe_stream.sources.clip import make_clip

    make_clip(clip, 1.0, width=64, height=48)
    code, out, imported = run_cli_imports(
        "serve", "--checkpoint", "demo", "--file", str(clip), "--file", str(clip),
        "--max-streams", "1",
    )  # fmt: skip
    assert code == 2 and "2 streams given, more than max_streams 1" in out, out
    assert len(out.strip().splitlines()) == 1, out
    assert "tribe_stream.extractors" not in imported


def test_the_python_predict_refuses_an_unreadable_file_before_models_load(tmp_path):
    """`predict("bad.mp4")` loaded every model before it read the file; now the file first."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage")
    code = (
        "import sys\n"
        "from tribe_stream import predict\n"
        "from tribe_stream.errors import InputError\n"
        f"try:\n    predict({str(bad)!r}, checkpoint='demo')\n"
        "except InputError as exc:\n    print('refused:', exc)\n"
        "print('models' if 'tribe_stream.models' in sys.modules else 'no models')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert f"refused: cannot read '{bad}'" in r.stdout and "no models" in r.stdout, (
        r.stdout + r.stderr
    )
