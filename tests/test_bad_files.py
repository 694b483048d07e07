"""Hostile and broken input files: each gives exit 2 and ONE line naming the problem, never a
traceback, and fails before anything expensive happens."""

from __future__ import annotations

import json
import time
import zipfile

import numpy as np
import pytest
import torch
from conftest import FIXTURE, copy_fixture, load_case, measured_call, run_cli

from tribe_stream.errors import CheckpointError, InputError
from tribe_stream.model.config import MAX_YAML_BYTES, read_yaml
from tribe_stream.model.loading import load_brain_model
from tribe_stream.offline import predict_windows, read_features
from tribe_stream.outputs import atomic_write, check_output, save_npy, save_npz

Q_WEIGHT = "model.encoder.layers.0.1.to_q.weight"


def _one_line_error(*args: str, env: dict | None = None, timeout: float = 300) -> str:
    """Run the command; it must exit 2 with exactly one line on stderr and no traceback."""
    r = run_cli(*args, env=env, timeout=timeout)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


def _features(tmp_path, **arrays) -> str:
    path = tmp_path / "in.npz"
    if not arrays:
        arrays, _ = load_case("full_T200")
    np.savez(path, **arrays)
    return str(path)


def _predict(ckpt, features, out) -> list[str]:
    return [
        "predict-features",
        "--checkpoint",
        str(ckpt),
        "--features",
        str(features),
        "--out",
        str(out),
    ]


# -- #7 / #12: features of different lengths, features with no bins ------------------------------


@pytest.mark.parametrize(
    "lengths",
    [{"text": 10, "audio": 20}, {"audio": 10, "text": 20}, {"text": 20, "audio": 10}],
    ids=["text_shorter_first", "audio_shorter_first", "text_longer_first"],
)
def test_modalities_of_different_lengths_are_refused(tmp_path, lengths):
    """Today a shorter FIRST modality silently cut the others (exit 0); any mismatch is refused."""
    full, _ = load_case("full_T200")
    feats = {m: full[m][..., :t] for m, t in lengths.items()}
    out = tmp_path / "out.npy"
    err = _one_line_error(*_predict(FIXTURE, _features(tmp_path, **feats), out))
    assert all(f"{m} T={t}" in err for m, t in lengths.items()), err
    assert not out.exists()
    with pytest.raises(InputError, match="cover different numbers of 0.5 s bins"):
        predict_windows(None, feats)


def test_features_with_no_time_bins_are_refused(tmp_path):
    feats = {"text": np.zeros((2, 48, 0), np.float32), "audio": np.zeros((2, 32, 0), np.float32)}
    err = _one_line_error(*_predict(FIXTURE, _features(tmp_path, **feats), tmp_path / "o.npy"))
    assert "no time bins (T=0)" in err and "shorter than one 0.5 s bin" in err
    with pytest.raises(InputError, match="T=0"):
        predict_windows(None, feats)


# -- #14: broken .npz files ------------------------------------------------------------------------


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _zip(path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _huge_header(path) -> None:
    """An .npy inside a zip whose header claims (2, 48, 2e10) float32: 7.7 TB, 16 bytes of data."""
    import io

    buf = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": (2, 48, 20_000_000_000)}
    np.lib.format.write_array_header_1_0(buf, header)
    _zip(path, {"text.npy": buf.getvalue() + b"\0" * 16})


def _truncated(path) -> None:
    feats, _ = load_case("full_T200")
    np.savez(path, **feats)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BROKEN_NPZ = {
    "empty": (lambda p: p.write_bytes(b""), "it is empty (0 bytes)"),
    "truncated": (_truncated, "truncated or corrupt zip archive"),
    "npy_renamed": (
        lambda p: p.write_bytes(_npy_bytes(np.zeros((2, 48, 4), np.float32))),
        "a single .npy array, not an .npz archive",
    ),
    "text_file": (lambda p: p.write_text("text,audio\n1,2\n"), "not a zip archive"),
    "zero_d": (lambda p: np.savez(p, text=np.float32(3.0)), "text is a 0-d array"),
    "wrong_ndim": (
        lambda p: np.savez(p, text=np.zeros((48, 200), np.float32)),
        "text is shape (48, 200); expected 3 dimensions (L, D, T)",
    ),
    "huge_header": (_huge_header, "claims shape (2, 48, 20000000000) (7,680,000,000,000 bytes)"),
    "object_array": (
        lambda p: np.savez(p, text=np.array([{"a": 1}], dtype=object).reshape(1, 1, 1)),
        "text is an array of object (objects or records)",
    ),
    "complex": (
        lambda p: np.savez(p, audio=np.zeros((2, 32, 4), np.complex64)),
        "audio holds complex64 values, not real numbers",
    ),
    "not_npy_member": (lambda p: _zip(p, {"text": b"hello"}), "cannot read text in"),
    "bad_crc": (
        lambda p: (
            _zip(p, {"video.npy": _npy_bytes(np.ones((2, 40, 3), np.float32))}),
            p.write_bytes(p.read_bytes().replace(b"\x00\x00\x80\x3f", b"\x00\x00\x80\x40", 1)),
        ),
        "cannot read video in",
    ),  # fmt: skip
    "unknown_key": (
        lambda p: np.savez(p, smell=np.zeros((1, 1, 1))),
        "unknown arrays ['smell']",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_NPZ))
def test_broken_features_file_is_one_line(tmp_path, case):
    make, message = BROKEN_NPZ[case]
    path = tmp_path / "in.npz"
    make(path)
    t0 = time.perf_counter()
    err = _one_line_error(*_predict(FIXTURE, path, tmp_path / "o.npy"))
    assert message in err, err
    assert time.perf_counter() - t0 < 60
    with pytest.raises(InputError):
        read_features(path)


def test_huge_header_is_refused_before_allocating(tmp_path):
    """The 7.7 TB claim is refused from the header: the process stays as small and quick as one
    that reads a small valid file."""
    huge, small = tmp_path / "huge.npz", tmp_path / "small.npz"
    _huge_header(huge)
    np.savez(small, text=np.zeros((2, 48, 4), np.float32))
    code = (
        "import resource, sys, time\n"
        "from tribe_stream.offline import read_features\n"
        "from tribe_stream.errors import InputError\n"
        "t = time.perf_counter()\n"
        "try:\n"
        "    read_features(sys.argv[1]); print('read')\n"
        "except InputError as e:\n"
        "    print('refused:', e)\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )

    (said,), seconds, kib = measured_call(code, huge)
    assert said.startswith("refused:") and "claims shape (2, 48, 20000000000)" in said
    _, _, baseline = measured_call(code, small)
    assert seconds < 2.0 and kib - baseline < 20_000, (seconds, kib, baseline)


def test_features_folder_is_refused(tmp_path):
    err = _one_line_error(*_predict(FIXTURE, tmp_path, tmp_path / "o.npy"))
    assert "is a folder; pass an .npz file" in err


# -- #15 / #16: output paths -------------------------------------------------------------------


@pytest.mark.parametrize(
    "out, message",
    [
        ("/proc/nope/x.npy", "--out folder /proc/nope does not exist"),
        ("/proc/x.npy", "--out folder /proc is not writable"),
        ("{tmp}", "is a folder; name a file in it"),
        ("{tmp}/preds", "must end in .npy, e.g. {tmp}/preds.npy"),
        ("{tmp}/preds.npz", "must end in .npy"),
    ],
)
def test_bad_output_path_is_refused_before_loading(tmp_path, out, message):
    out = out.format(tmp=tmp_path)
    # the checkpoint does not exist either: the output is checked first, before any loading
    args = _predict(tmp_path / "no-such-model", tmp_path / "no-such.npz", out)
    err = _one_line_error(*args)
    assert message.format(tmp=tmp_path) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, no DIR.npy


def test_prediction_is_written_to_exactly_the_path_named(tmp_path):
    out = tmp_path / "sub" / "preds.npy"
    out.parent.mkdir()
    out.write_bytes(b"old")
    r = run_cli(*_predict(FIXTURE, _features(tmp_path), out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"wrote {out}: 100 rows x 642 outputs")
    assert np.load(out).shape == (100, 642)
    assert [p.name for p in out.parent.iterdir()] == ["preds.npy"]  # no temporary left


def test_convert_output_is_checked_first_and_written_atomically(tmp_path):
    err = _one_line_error("convert", str(tmp_path / "no-such-model"), str(tmp_path / "m.st"))
    assert "must end in .safetensors" in err
    err = _one_line_error("convert", str(FIXTURE), str(tmp_path / "missing" / "m.safetensors"))
    assert "folder" in err and "does not exist" in err
    err = _one_line_error("convert", str(FIXTURE), str(tmp_path))
    assert "is a folder" in err
    out = tmp_path / "m.safetensors"
    r = run_cli("convert", str(FIXTURE), str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"wrote {out} (")
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    out = tmp_path / "keep.npy"
    save_npy(out, np.arange(3))

    def broken(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(out, broken)
    assert np.load(out).tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["keep.npy"]
    z = save_npz(tmp_path / "f.npz", text=np.ones((2, 3, 4), np.float32))
    assert z == tmp_path / "f.npz" and read_features(z)["text"].shape == (2, 3, 4)
    with pytest.raises(InputError, match="must end in .npz"):
        check_output(tmp_path / "f.npy", ".npz")


# -- #8: non-finite weights ----------------------------------------------------------------------


def test_nan_weights_are_refused_by_predict_and_convert(tmp_path):
    d = copy_fixture(tmp_path)
    ckpt = torch.load(d / "best.ckpt", weights_only=True)
    ckpt["state_dict"][Q_WEIGHT][3, 5] = float("nan")
    torch.save(ckpt, d / "best.ckpt")
    err = _one_line_error(*_predict(d, _features(tmp_path), tmp_path / "o.npy"))
    assert f"weight {Q_WEIGHT} holds 1 NaN or inf values" in err
    out = tmp_path / "m.safetensors"
    err = _one_line_error("convert", str(d), str(out))
    assert Q_WEIGHT in err and not out.exists()


def test_inf_in_a_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import load_file, safe_open, save_file

    good = tmp_path / "good.safetensors"
    assert run_cli("convert", str(FIXTURE), str(good)).returncode == 0
    with safe_open(str(good), framework="pt") as f:
        meta = f.metadata()
    state = load_file(str(good))
    state["model.predictor.bias"][0, 7] = float("-inf")
    save_file(state, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="weight model.predictor.bias holds 1 NaN or inf"):
        load_brain_model(tmp_path / "bad.safetensors")


def test_convert_to_float16_refuses_weights_that_overflow(tmp_path):
    d = copy_fixture(tmp_path)
    ckpt = torch.load(d / "best.ckpt", weights_only=True)
    ckpt["state_dict"][Q_WEIGHT][0, 0] = 1e6
    torch.save(ckpt, d / "best.ckpt")
    out = tmp_path / "m.safetensors"
    err = _one_line_error("convert", str(d), str(out), "--dtype", "float16")
    assert "converting to float16 overflows" in err and "bfloat16 or float32" in err
    assert not out.exists()


# -- #13: checkpoints that used to give tracebacks ----------------------------------------------


def _safetensors(tmp_path, *, config=None, experiment=None, tensor_dtype=None):
    """The fixture as model.safetensors, with its metadata or one tensor's dtype changed."""
    from safetensors.torch import save_file

    loaded = load_brain_model(FIXTURE)
    from tribe_stream.model.loading import PREFIX, ours_to_official

    state = {PREFIX + ours_to_official(k): v for k, v in loaded.model.state_dict().items()}
    if tensor_dtype is not None:
        state[Q_WEIGHT] = state[Q_WEIGHT].to(tensor_dtype)
    cfg = loaded.config.to_dict()
    meta = {
        "tribe_stream.config": config(cfg) if config else json.dumps(cfg),
        "tribe_stream.experiment": experiment if experiment is not None else "{}",
    }
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=meta)
    return path


def _without(d, key):
    d = dict(d)
    del d[key]
    return json.dumps(d)


SAFETENSORS_CASES = {
    "int32_tensor": (dict(tensor_dtype=torch.int32), f"{Q_WEIGHT} (int32)"),
    "int8_tensor": (dict(tensor_dtype=torch.int8), f"{Q_WEIGHT} (int8)"),
    "bool_tensor": (dict(tensor_dtype=torch.bool), f"{Q_WEIGHT} (bool)"),
    "invalid_json": (dict(config=lambda c: "{not json"), "tribe_stream.config metadata is not"),
    "unknown_key": (
        dict(config=lambda c: json.dumps({**c, "colour": "red"})),
        "unknown settings ['colour']",
    ),
    "heads_zero": (
        dict(config=lambda c: json.dumps({**c, "heads": 0})),
        "heads must be an integer from 1",
    ),
    "no_feature_dims": (
        dict(config=lambda c: _without(c, "feature_dims")),
        "missing ['feature_dims']",
    ),
    "dims_not_pairs": (
        dict(config=lambda c: json.dumps({**c, "feature_dims": {"text": [2, -48]}})),
        "feature_dims['text'] must be (L, D) positive integers or null",
    ),
    "config_a_list": (dict(config=lambda c: "[1, 2]"), "must be a mapping of BrainConfig"),
    "experiment_invalid": (dict(experiment="{"), "tribe_stream.experiment metadata is not"),
    "experiment_a_list": (dict(experiment="[1]"), "tribe_stream.experiment metadata is not a"),
}


@pytest.mark.parametrize("case", sorted(SAFETENSORS_CASES))
def test_bad_safetensors_is_one_line(tmp_path, case):
    kwargs, message = SAFETENSORS_CASES[case]
    path = _safetensors(tmp_path, **kwargs)
    err = _one_line_error(*_predict(path, _features(tmp_path), tmp_path / "o.npy"))
    assert message in err, err


def _edit_ckpt(edit):
    def make(d):
        ckpt = torch.load(d / "best.ckpt", weights_only=True)
        edit(ckpt)
        torch.save(ckpt, d / "best.ckpt")

    return make


def _edit_yaml(old, new):
    def make(d):
        text = (d / "config.yaml").read_text()
        assert old in text
        (d / "config.yaml").write_text(text.replace(old, new, 1))

    return make


CKPT_CASES = {
    "build_args_string": (
        _edit_ckpt(lambda c: c.update(model_build_args="feature_dims=...")),
        "model_build_args must be a mapping",
    ),
    "negative_n_outputs": (
        _edit_ckpt(lambda c: c["model_build_args"].update(n_outputs=-642)),
        "n_outputs must be an integer from 1",
    ),
    "feature_dims_a_list": (
        _edit_ckpt(lambda c: c["model_build_args"].update(feature_dims=[[2, 48]])),
        "feature_dims must map text/audio/video to (L, D) or null",
    ),
    "build_args_incomplete": (
        _edit_ckpt(lambda c: c["model_build_args"].pop("n_outputs")),
        "model_build_args lacks ['n_outputs']",
    ),
    "state_dict_a_list": (
        _edit_ckpt(lambda c: c.update(state_dict=[torch.zeros(3)])),
        "its state_dict is a list",
    ),
    "non_tensor_weight": (
        _edit_ckpt(lambda c: c["state_dict"].update({Q_WEIGHT: 3})),
        f"not tensors (1): {Q_WEIGHT} (int)",
    ),
    "binary_config": (
        lambda d: (d / "config.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" * 50),
        "is not a text file (byte 0 is not UTF-8)",
    ),
    "bool_as_string": (
        _edit_yaml(
            "  encoder:\n    depth: 2", "  encoder:\n    depth: 2\n    rotary_pos_emb: 'no'"
        ),
        "rotary_pos_emb must be true or false, got 'no'",
    ),
    "billion_layers": (
        _edit_yaml("    depth: 2", "    depth: 1000000000"),
        "depth must be an integer from 1 to 1,024",
    ),
    "heads_not_dividing": (
        _edit_yaml("  encoder:\n    depth: 2", "  encoder:\n    depth: 2\n    heads: 7"),
        "hidden 288 is not divisible by heads 7",
    ),
    "config_a_folder": (
        lambda d: ((d / "config.yaml").unlink(), (d / "config.yaml").mkdir()),
        "cannot read",
    ),
}


@pytest.mark.parametrize("case", sorted(CKPT_CASES))
def test_bad_checkpoint_is_one_line(tmp_path, case):
    make, message = CKPT_CASES[case]
    d = copy_fixture(tmp_path)
    make(d)
    err = _one_line_error(*_predict(d, _features(tmp_path), tmp_path / "o.npy"))
    assert message in err, err


def test_binary_or_malformed_config_breaks_extract_cleanly(tmp_path):
    from tribe_stream.sources.clip import make_clip

    clip = make_clip(tmp_path / "clip.mp4", 1.0, width=64, height=48)
    d = copy_fixture(tmp_path)
    (d / "config.yaml").write_bytes(b"data:\n  \xff\xfe\x00 broken")
    args = ["extract", str(clip), "--out", str(tmp_path / "f.npz"), "--checkpoint", str(d)]
    assert "is not a text file (byte 8 is not UTF-8)" in _one_line_error(*args)
    (d / "config.yaml").write_text("data:\n  video_feature: a string\n")
    assert "data.video_feature must be a mapping" in _one_line_error(*args)
    (d / "config.yaml").write_text("data:\n  n_layers_to_use: many\n")
    assert "n_layers_to_use must be an integer" in _one_line_error(*args)
    (d / "config.yaml").write_text("data: {text_feature: {model_name: [1, 2]}}\n")
    assert "model_name must be a folder or hub id" in _one_line_error(*args)


# -- #9: YAML alias bombs and other hostile YAML -------------------------------------------------

BOMB = "".join(
    f"{b}: &{b} [" + ", ".join([f"*{a}"] * 9) + "]\n"
    for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)
BOMB = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + BOMB


def test_alias_bomb_is_refused_fast_and_small(tmp_path):
    assert len(BOMB) < 1024
    bomb, normal = tmp_path / "bomb.yaml", tmp_path / "normal.yaml"
    bomb.write_text(BOMB)
    normal.write_text((FIXTURE / "config.yaml").read_text())
    code = (
        "import resource, sys, time\n"
        "from tribe_stream.model.config import read_yaml\n"
        "from tribe_stream.errors import CheckpointError\n"
        "t = time.perf_counter()\n"
        "try:\n"
        "    read_yaml(sys.argv[1]); print('read')\n"
        "except CheckpointError as e:\n"
        "    print('refused:', e)\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )

    lines, seconds, kib = measured_call(code, bomb)
    assert lines[0].startswith("refused:") and "alias bomb" in lines[0]
    _, _, baseline = measured_call(code, normal)
    assert seconds < 2.0 and kib - baseline < 50_000, (seconds, kib, baseline)


def test_alias_bomb_in_a_checkpoint_config_stops_convert(tmp_path):
    d = copy_fixture(tmp_path)
    (d / "config.yaml").write_text((d / "config.yaml").read_text() + BOMB)
    t0 = time.perf_counter()
    err = _one_line_error("convert", str(d), str(tmp_path / "m.safetensors"), timeout=120)
    assert "alias bomb" in err and time.perf_counter() - t0 < 60


def test_a_config_with_a_few_anchors_still_loads(tmp_path):
    d = copy_fixture(tmp_path)
    text = (d / "config.yaml").read_text()
    text = text.replace(
        "data:\n  frequency: 2", "defaults: &feat {frequency: 2}\ndata:\n  frequency: 2"
    )
    text = text.replace(
        "  audio_feature:\n    name: Wav2VecBert\n    frequency: 2",
        "  audio_feature:\n    <<: *feat\n    name: Wav2VecBert",
    )
    text = text.replace(
        "  features_to_use:\n  - text\n  - audio\n  - video",
        "  features_to_use: &mods [text, audio, video]",
    )
    text += "used_modalities: *mods\n"
    (d / "config.yaml").write_text(text)
    cfg = read_yaml(d / "config.yaml")
    assert cfg["data"]["audio_feature"] == {"frequency": 2, "name": "Wav2VecBert"}
    assert cfg["used_modalities"] == ["text", "audio", "video"]
    assert load_brain_model(d).config.hidden == 288
    from tribe_stream.extractors.config import from_yaml

    assert from_yaml(d).audio.frequency == 2.0


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: &a [1, *a]\n", "refers to itself"),
        ("a: " + "[" * 20000 + "]" * 20000 + "\n", "nested too deeply"),
        ("a: [1, 2\n", "is not valid YAML (expected ',' or ']'"),
        ("- just\n- a list\n", "does not hold a mapping"),
        ("big: '" + "x" * MAX_YAML_BYTES + "'\n", "too large for a config.yaml"),
    ],
)
def test_hostile_yaml_is_refused(tmp_path, text, message):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(CheckpointError) as info:
        read_yaml(path)
    assert message in str(info.value) and "\n" not in str(info.value)


# -- options -------------------------------------------------------------------------------------


def test_unwritable_cache_folder_is_one_line(tmp_path):
    err = _one_line_error(
        *_predict("demo", _features(tmp_path), tmp_path / "o.npy"),
        env={"TRIBE_STREAM_CACHE": "/proc/no-cache-here"},
    )
    assert "cannot create the tribe-stream cache folder" in err and "TRIBE_STREAM_CACHE" in err


def test_unknown_device_is_one_line(tmp_path):
    err = _one_line_error(
        *_predict(FIXTURE, _features(tmp_path), tmp_path / "o.npy"), "--device", "tpu"
    )
    assert "unknown device 'tpu'" in err
