"""`tribe-stream predict` and `tribe_stream.predict`: whole files with the official semantics, every
output format read back, the feature cache, and batches where one bad file costs nothing else."""

from __future__ import annotations

import json
import shutil
import subprocess

import av
import numpy as np
import pytest
from conftest import measured_call, run_cli

from tribe_stream import N_VERTICES, N_VERTICES_HEMI, predict
from tribe_stream.offline_outputs import read_prediction_file
from tribe_stream.prediction import Predictor


def write_wav(path, seconds: float, kind: str = "tone", rate: int = 16000) -> None:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * (220 + 40 * np.floor(t)) * t) if kind == "tone" else 0 * t
    pcm = (x * 32767).astype(np.int16)
    with av.open(str(path), "w") as out:
        s = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        for i in range(0, len(pcm), 4096):
            f = av.AudioFrame.from_ndarray(pcm[None, i : i + 4096], format="s16", layout="mono")
            f.rate, f.pts = rate, i
            out.mux(s.encode(f))
        out.mux(s.encode(None))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from tribe_stream.sources.clip import make_clip

    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", 5.0, width=96, height=64)


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return Predictor(checkpoint="demo", asr=False, cache=str(tmp_path_factory.mktemp("cache")))


def test_rows_follow_the_official_windows(tmp_path, predictor):
    """130 s of sound: two windows (200 bins, then 60 padded to 200); one row per second, row i
    the stimulus [i, i+1) and the predicted BOLD at i + 5 s."""
    wav = tmp_path / "long.wav"
    write_wav(wav, 130.0)
    preds = predictor.predict(wav)
    assert preds.values.shape == (130, N_VERTICES) and preds.values.dtype == np.float32
    assert preds.seconds.tolist() == list(range(130))
    assert preds.bold_times.tolist() == [k + 5.0 for k in range(130)]
    assert preds.metadata["modalities"] == ["audio"]  # an audio file: no video, no words
    assert np.isfinite(preds.values).all()
    # the second window is zero-padded as the official code pads it, not run short
    from tribe_stream.offline import predict_windows

    short = predict_windows(predictor.engine, predictor.features(wav)[0], pad_last=False)
    assert np.abs(short[:100] - preds.values[:100]).max() < 1e-5  # first window: the same
    assert np.abs(short[100:] - preds.values[100:]).max() > 1e-3  # padding matters


def test_sound_decoded_beside_the_video_changes_nothing(clip, predictor, monkeypatch):
    """The sound is decoded, and its features made, in a thread while the video runs (the
    header gives the bin count): the features equal each extractor run alone; and when the sound
    outlasts what the header says, the video and the sound's features are redone for the
    sound's bins instead of falling short."""
    import dataclasses
    import threading

    from tribe_stream.extractors import offline
    from tribe_stream.extractors.timing import n_bins_for
    from tribe_stream.media import probe, read_sound

    ex = {m: predictor.extractors[m] for m in ("video", "audio")}
    sound = read_sound(clip)
    made_in = []  # the thread and bin count of each audio extraction
    extract_sound = ex["audio"].extract_sound

    def recorded(sound, n_bins=None):
        made_in.append((threading.current_thread().name, n_bins))
        return extract_sound(sound, n_bins)

    monkeypatch.setattr(ex["audio"], "extract_sound", recorded)
    got = offline.extract_media(clip, ex)
    n = got.n_bins
    assert [name.startswith("sound") for name, _ in made_in] == [True]  # beside the video
    made_in.clear()
    np.testing.assert_array_equal(got.features["video"], ex["video"].extract_file(clip, n))
    np.testing.assert_array_equal(got.features["audio"], ex["audio"].extract_sound(sound, n))
    real = probe(clip)
    monkeypatch.setattr(
        offline,
        "probe_stimulus",
        lambda path: dataclasses.replace(real, duration=real.duration - 2.0),
    )
    short = offline.extract_media(clip, ex)
    want = n_bins_for(max(real.duration - 2.0, sound.duration))
    assert want > n_bins_for(real.duration - 2.0)  # the sound really is longer than the header
    assert short.n_bins == want and short.features["video"].shape[-1] == want
    np.testing.assert_array_equal(short.features["video"], ex["video"].extract_file(clip, want))
    np.testing.assert_array_equal(short.features["audio"], extract_sound(sound, want))
    assert made_in[-1] == (threading.main_thread().name, want)  # made again for the longer count


def test_predict_equals_extract_then_predict_features(tmp_path, clip):
    feats, out_a, out_b = tmp_path / "f.npz", tmp_path / "a.npy", tmp_path / "b.npy"
    r = run_cli("extract", str(clip), "--out", str(feats), "--checkpoint", "demo", "--no-asr")
    assert r.returncode == 0, r.stderr
    r = run_cli("predict-features", "--checkpoint", "demo", "--features", str(feats),
                "--out", str(out_a), "--pad-last")  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = run_cli("predict", str(clip), "--out", str(out_b), "--no-asr", "--no-cache")
    assert r.returncode == 0, r.stderr
    a, b = np.load(out_a), np.load(out_b)
    assert b.shape == (5, N_VERTICES)
    np.testing.assert_allclose(b, a, atol=1e-5)
    meta = json.loads((tmp_path / "b.json").read_text())
    assert meta["tr_s"] == 1.0 and meta["hemodynamic_offset_s"] == 5.0
    assert meta["stimulus"] == str(clip) and meta["model"]["untrained"] is True


@pytest.mark.parametrize("name", ["out.npy", "out.h5", "out.func.gii", "out.mgz", "out.mgh"])
def test_every_format_reads_back_equal(tmp_path, clip, predictor, name):
    import h5py
    import nibabel as nib

    preds = predictor.predict(clip)
    written = preds.save(tmp_path / name)
    values, _, meta = read_prediction_file(tmp_path / name)
    np.testing.assert_array_equal(values, preds.values)
    assert meta["tr_s"] == 1.0 and meta["hemodynamic_offset_s"] == 5.0
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]  # atomic: no leftovers
    if name.endswith(".h5"):
        from tribe_stream.recording import read_recording

        rec = read_recording(written[0])
        assert rec.seconds.tolist() == list(range(5)) and rec.bold_time.tolist()[0] == 5.0
        with h5py.File(written[0]) as f:
            assert f["values"].shape == (5, N_VERTICES) and f["values"].dtype == np.float32
    elif name.endswith(".func.gii"):
        lh = nib.load(str(written[0]))
        assert [p.name for p in written] == ["out.lh.func.gii", "out.rh.func.gii", "out.words.tsv"]
        assert len(lh.darrays) == 5 and lh.darrays[0].data.shape == (N_VERTICES_HEMI,)
        assert lh.darrays[0].meta["TimeStep"] == "1000.000000"
        assert lh.meta["AnatomicalStructurePrimary"] == "CortexLeft"
        assert json.loads(lh.meta["model"])["untrained"] is True
        np.testing.assert_array_equal(lh.darrays[3].data, preds.values[3, :N_VERTICES_HEMI])
    elif name.endswith((".mgz", ".mgh")):
        rh = nib.load(str(written[1]))
        assert rh.shape == (N_VERTICES_HEMI, 1, 1, 5) and rh.header["tr"] == 1000.0
        np.testing.assert_array_equal(rh.get_fdata()[:, 0, 0, 2], preds.values[2, N_VERTICES_HEMI:])


def test_a_second_run_with_another_checkpoint_extracts_nothing(tmp_path, clip):
    from test_resolve import RELEASED_STYLE

    from tribe_stream.extractors.demo import demo_extractors_path
    from tribe_stream.model.convert import save_safetensors
    from tribe_stream.model.demo import build_demo_model

    cache = tmp_path / "cache"
    first = Predictor(checkpoint="demo", asr=False, cache=str(cache))
    a = first.predict(clip)
    assert a.timings["cached"] == 0.0 and len(list(cache.glob("*.npz"))) == 1
    other = tmp_path / "other"  # another brain model (other weights), the same extractors
    other.mkdir()
    save_safetensors(build_demo_model(seed=1), other / "model.safetensors")
    demo = demo_extractors_path()
    (other / "config.yaml").write_text(
        RELEASED_STYLE.format(text=demo.text, audio=demo.audio, video=demo.video)
    )
    second = Predictor(checkpoint=str(other), asr=False, cache=str(cache))
    b = second.predict(clip)
    assert b.timings["cached"] == 1.0
    assert not second.models._extractors  # no extractor was even loaded
    assert np.abs(a.values - b.values).max() > 1e-3  # another model: another answer
    c = Predictor(checkpoint="demo", asr=False, cache=str(cache)).predict(clip)
    np.testing.assert_array_equal(c.values, a.values)  # from the cache: the same features


def test_silent_and_imageless_files_work(tmp_path, predictor):
    """The official plotting crashed on silent clips; a silent recording predicts like any."""
    wav = tmp_path / "silence.wav"
    write_wav(wav, 4.0, kind="silence")
    preds = predictor.predict(wav)
    assert preds.values.shape == (4, N_VERTICES) and np.isfinite(preds.values).all()


def test_python_api_in_a_few_lines(tmp_path, clip):
    preds = predict(clip, checkpoint="demo", asr=False, use_cache=False)
    files = preds.save(tmp_path / "clip.npy")
    assert np.load(files[0]).shape == (5, N_VERTICES)


def test_a_batch_with_a_bad_file_writes_every_other_output(tmp_path, clip):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(clip, inputs / "a.mp4")
    write_wav(inputs / "b.wav", 3.0)
    (inputs / "c.mp4").write_bytes(b"\x00 not a video " * 100)
    (inputs / "notes.md").write_text("ignored: not media")
    out = tmp_path / "out"
    r = run_cli("predict", str(inputs), "--out", str(out), "--format", "h5", "--no-asr",
                "--cache", str(tmp_path / "cache"))  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert "c.mp4" in r.stderr and "cannot read" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.h5", "a.words.tsv", "b.h5", "b.words.tsv"]
    assert read_prediction_file(out / "a.h5")[0].shape == (5, N_VERTICES)
    assert read_prediction_file(out / "b.h5")[0].shape == (3, N_VERTICES)


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.mp4", "--out", "x.npy"], "does not exist"),
        (["{clip}", "--out", "x.txt"], "unknown format"),
        (["{clip}", "--out", "/nonexistent-folder/x.npy"], "does not exist"),
        (["{clip}", "--out", "x.npy", "--modalities", "smell"], "choose from"),
        (["{clip}", "--out", "x.npy", "--device", "tpu"], "unknown device"),
        (["{weird}", "--out", "x.npy"], "unknown kind of file"),
        (["{subs}", "--out", "x.npy"], "neither audio nor video"),
    ],
)
def test_bad_input_is_one_line(tmp_path, clip, args, message):
    weird = tmp_path / "clip.xyz"
    weird.write_bytes(clip.read_bytes())
    subs = tmp_path / "subs.mkv"
    if "{subs}" in args:
        if shutil.which("ffmpeg") is None:
            pytest.skip("ffmpeg makes the subtitles-only file")
        srt = tmp_path / "s.srt"
        srt.write_text("1\n00:00:00,000 --> 00:00:02,000\nhello\n")
        subprocess.run(
            ["ffmpeg", "-y", "-loglevel", "error", "-i", str(srt), str(subs)], check=True
        )
    args = [a.format(clip=clip, weird=weird, subs=subs) for a in args]
    r = run_cli("predict", *args, "--no-cache")
    assert r.returncode in (1, 2), r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_memory_does_not_grow_with_the_length_of_the_file(tmp_path):
    """Decoding streams through the file: a 10-minute clip peaks within 300 MB of a 1-minute
    one (measured: about +150 MB, mostly the 10 minutes of 16 kHz sound and their features)."""
    from tribe_stream.sources.clip import make_clip

    # VmHWM, not ru_maxrss: Linux carries the parent's peak into a child's ru_maxrss across exec
    code = (
        "import re, sys\n"
        "from tribe_stream import predict\n"
        "p = predict(sys.argv[1], checkpoint='demo', asr=False, use_cache=False)\n"
        "print(len(p))\n"
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
        "print(0.0, hwm)\n"
    )
    peaks = {}
    for minutes in (1, 10):
        clip = make_clip(tmp_path / f"m{minutes}.mp4", 60.0 * minutes, width=48, height=32)
        (rows,), _, kib = measured_call(code, clip, timeout=400)
        assert int(rows) == 60 * minutes
        peaks[minutes] = kib / 1024
        clip.unlink()
    assert peaks[10] - peaks[1] < 300, peaks


def test_given_transcripts_and_spoken_texts_make_text_features(tmp_path, clip):
    from tribe_stream.extractors.asr import asr_available

    srt = tmp_path / "words.srt"
    srt.write_text("1\n00:00:00,500 --> 00:00:02,000\nHello there, <i>brain</i>.\n")
    p = Predictor(checkpoint="demo", transcript=str(srt), cache=str(tmp_path / "c"))
    preds = p.predict(clip)
    assert preds.metadata["modalities"] == ["audio", "text", "video"]
    assert [w.text for w in preds.words] == ["Hello", "there,", "brain."]
    no_text = Predictor(checkpoint="demo", asr=False, use_cache=False).predict(clip)
    assert np.abs(preds.values - no_text.values).max() > 1e-3  # the words change the answer
    empty = tmp_path / "empty.vtt"
    empty.write_text("WEBVTT\n")
    r = run_cli("predict", str(clip), "--out", str(tmp_path / "x.npy"), "--transcript", str(empty))
    assert r.returncode == 2 and "no words" in r.stderr and "Traceback" not in r.stderr
    if shutil.which("espeak-ng") is None or asr_available():
        pytest.skip("speaking a .txt needs espeak-ng and speech recognition")
    story = tmp_path / "story.txt"
    story.write_text("The quick brown fox jumps over the lazy dog. Then it sleeps.")
    spoken = Predictor(checkpoint="demo", cache=str(tmp_path / "c")).predict(story)
    assert spoken.metadata["modalities"] == ["audio", "text"]
    heard = " ".join(w.text.lower() for w in spoken.words)
    assert "fox" in heard and "dog" in heard and len(spoken) >= 3


def test_video_batch_and_fp8_options_are_checked_and_change_the_cache_identity():
    """A bad --video-batch is refused before anything loads; FP8 video products change the
    features, so they must not share cache entries with half precision ones."""
    from tribe_stream.errors import InputError
    from tribe_stream.prediction import PredictOptions, Predictor

    for bad in (0, 65, 2.5, True):
        with pytest.raises(InputError, match="video_batch"):
            PredictOptions(video_batch=bad).validate()
    r = run_cli("predict", "x.mp4", "--out", "x.npy", "--video-batch", "0")
    assert r.returncode == 2 and "at least 1" in r.stderr and "Traceback" not in r.stderr
    plain = Predictor(checkpoint="demo", device="cpu", modalities=("video",)).extractor_identity()
    batched = Predictor(
        checkpoint="demo", device="cpu", modalities=("video",), video_batch=3
    ).extractor_identity()
    assert plain == batched  # batching does not change what a clip's features are
    p = Predictor(checkpoint="demo", device="cpu", modalities=("video",), video_fp8=True)
    assert p.extractor_identity()["video"].get("fp8") == "products"
    assert p.extractor_identity() != plain


def test_workers_without_ray_is_one_line():
    """Before: `--workers 2` without `--ray` was silently ignored and ran in one process."""
    r = run_cli("predict", "x.mp4", "--out", "x.npy", "--workers", "2")
    assert r.returncode == 2 and "add --ray" in r.stderr and "Traceback" not in r.stderr
