"""Checkpoint loading: formats, conversion, and a clear error for each bad checkpoint."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from conftest import FIXTURE, copy_fixture, load_case, run_cli

from tribe_stream.engines import make_engine
from tribe_stream.model.config import read_yaml
from tribe_stream.model.loading import load_brain_model, official_to_ours, ours_to_official


def _cli_error(*args) -> str:
    r = run_cli(*args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    return r.stderr


def _predict_args(ckpt, tmp_path):
    feats, _ = load_case("full_T200")
    np.savez(tmp_path / "in.npz", **feats)
    return [
        "predict-features",
        "--checkpoint",
        str(ckpt),
        "--features",
        str(tmp_path / "in.npz"),
        "--out",
        str(tmp_path / "out.npy"),
    ]


def test_key_names_round_trip():
    """Official keys map to different names of ours and back, and the mapping covers every key
    of the released model (an identity mapping fails: our modules are named differently)."""
    from pathlib import Path

    from tribe_stream.model.config import BrainConfig
    from tribe_stream.model.fmri_encoder import FmriEncoder

    expected = {
        "encoder.layers.0.0.0.g": "encoder.layers.0.norm.g",
        "encoder.layers.0.1.to_q.weight": "encoder.layers.0.fn.to_q.weight",
        "encoder.layers.14.1.to_out.weight": "encoder.layers.14.fn.to_out.weight",
        "encoder.layers.1.1.ff.0.0.weight": "encoder.layers.1.fn.up.weight",
        "encoder.layers.1.1.ff.0.0.bias": "encoder.layers.1.fn.up.bias",
        "encoder.layers.15.1.ff.2.weight": "encoder.layers.15.fn.down.weight",
        "encoder.layers.15.1.ff.2.bias": "encoder.layers.15.fn.down.bias",
        "encoder.layers.2.2.residual_scale": "encoder.layers.2.residual_scale",
        "encoder.rotary_pos_emb.inv_freq": "encoder.inv_freq",
        "predictor.weights": "predictor_weights",
        "predictor.bias": "predictor_bias",
    }
    for official, ours in expected.items():
        assert official_to_ours(official) == ours
        assert ours_to_official(ours) == official
    listing = Path(__file__).parent / "fixtures" / "tribev2-full-keys.txt"
    full = [line.split("\t")[0].removeprefix("model.") for line in listing.read_text().splitlines()]
    with torch.device("meta"):
        names = set(FmriEncoder(BrainConfig()).state_dict())
    mapped = [official_to_ours(k) for k in full]
    assert sorted(mapped) == sorted(names)  # every released key lands on one of ours, one to one
    assert [ours_to_official(k) for k in mapped] == full
    same = [k for k, m in zip(full, mapped, strict=True) if k == m]
    assert sorted(same) == sorted(
        ["time_pos_embed", "low_rank_head.weight", "encoder.final_norm.g"]
        + [f"projectors.{m}.{w}" for m in ("text", "audio", "video") for w in ("weight", "bias")]
    )  # only the names both implementations share stay as they are
    small = [line.split("\t")[0] for line in (FIXTURE / "keys.txt").read_text().splitlines()]
    assert all(ours_to_official(official_to_ours(k[6:])) == k[6:] for k in small)


def test_full_size_architecture_matches_released_keys():
    """The released checkpoint's keys and shapes (tests/fixtures/tribev2-full-keys.txt)."""
    from pathlib import Path

    from tribe_stream.model.config import BrainConfig
    from tribe_stream.model.loading import expected_shapes

    listing = Path(__file__).parent / "fixtures" / "tribev2-full-keys.txt"
    want = {}
    for line in listing.read_text().splitlines():
        key, shape = line.split("\t")[:2]
        want[key] = tuple(int(x) for x in shape.strip("()").split(",") if x.strip())
    got = expected_shapes(BrainConfig())
    assert got == want
    n = sum(int(np.prod(s)) for s in got.values()) - int(
        np.prod(got["model.encoder.rotary_pos_emb.inv_freq"])
    )
    assert abs(n / 1e6 - 177.2) < 0.1


def test_missing_folder(tmp_path):
    err = _cli_error(*_predict_args(tmp_path / "nope", tmp_path))
    assert "does not exist" in err


def test_wrong_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    err = _cli_error(*_predict_args(tmp_path / "empty", tmp_path))
    assert "neither best.ckpt nor model.safetensors" in err


def test_missing_config(tmp_path):
    d = copy_fixture(tmp_path)
    (d / "config.yaml").unlink()
    err = _cli_error(*_predict_args(d, tmp_path))
    assert "config.yaml is missing" in err


def test_corrupt_and_truncated_ckpt(tmp_path):
    d = copy_fixture(tmp_path)
    data = (d / "best.ckpt").read_bytes()
    (d / "best.ckpt").write_bytes(data[: len(data) // 2])
    assert "corrupt, truncated" in _cli_error(*_predict_args(d, tmp_path))
    (d / "best.ckpt").write_bytes(b"\x00garbage" * 100)
    assert "corrupt, truncated" in _cli_error(*_predict_args(d, tmp_path))


def test_missing_unexpected_and_mismatched_keys(tmp_path):
    d = copy_fixture(tmp_path)
    ckpt = torch.load(d / "best.ckpt", weights_only=True)
    sd = ckpt["state_dict"]
    del sd["model.encoder.layers.1.1.ff.2.bias"]
    sd["model.encoder.layers.9.0.0.g"] = torch.ones(1)
    sd["model.projectors.video.weight"] = torch.zeros(96, 81)
    torch.save(ckpt, d / "best.ckpt")
    err = _cli_error(*_predict_args(d, tmp_path))
    assert "missing keys (1): model.encoder.layers.1.1.ff.2.bias" in err
    assert "unexpected keys (1): model.encoder.layers.9.0.0.g" in err
    assert "model.projectors.video.weight: checkpoint (96, 81) vs model (96, 80)" in err


def test_not_a_tribe_checkpoint(tmp_path):
    d = copy_fixture(tmp_path)
    torch.save({"weights": torch.zeros(3)}, d / "best.ckpt")
    assert "not a TRIBE v2 checkpoint" in _cli_error(*_predict_args(d, tmp_path))


def test_unsafe_pickle_is_refused(tmp_path):
    """weights_only=True: a checkpoint that would run code on load is rejected, not executed."""
    d = copy_fixture(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": Evil(), "model_build_args": {}}, d / "best.ckpt")
    err = _cli_error(*_predict_args(d, tmp_path))
    assert "cannot read" in err and not marker.exists()


def test_config_with_python_tags_is_read_without_executing(tmp_path):
    d = copy_fixture(tmp_path)
    marker = tmp_path / "yaml-pwned"
    text = (d / "config.yaml").read_text()
    text = text.replace(
        "brain_model_config:", "brain_model_config: !!python/object:neuraltrain.FmriEncoder"
    )
    text += f"evil: !!python/object/apply:os.system ['touch {marker}']\nwhen: !!python/name:datetime.datetime\n"
    (d / "config.yaml").write_text(text)
    cfg = read_yaml(d / "config.yaml")
    assert cfg["brain_model_config"]["hidden"] == 288
    loaded = load_brain_model(d)
    feats, expected = load_case("full_T200")
    assert np.abs(make_engine("torch", loaded).run(feats) - expected).max() < 1e-4
    assert not marker.exists()


def test_unsupported_architecture_setting(tmp_path):
    d = copy_fixture(tmp_path)
    text = (d / "config.yaml").read_text().replace("combiner: null", "combiner: {name: Mlp}")
    (d / "config.yaml").write_text(text)
    assert "unsupported brain model settings: combiner" in _cli_error(*_predict_args(d, tmp_path))


@pytest.mark.parametrize("dtype,tol", [("float32", 0.0), ("float16", 2e-2)])
def test_convert_to_safetensors(tmp_path, dtype, tol):
    out = tmp_path / "m.safetensors"
    r = run_cli("convert", str(FIXTURE), str(out), "--dtype", dtype)
    assert r.returncode == 0, r.stderr
    feats, expected = load_case("full_T200")
    ref = make_engine("torch", load_brain_model(FIXTURE)).run(feats)
    got = make_engine("torch", load_brain_model(out)).run(feats)
    if tol == 0.0:
        assert np.array_equal(got, ref)
    else:
        assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < tol
    # a folder holding only model.safetensors loads too (the config travels in its metadata)
    (tmp_path / "folder").mkdir()
    out.rename(tmp_path / "folder" / "model.safetensors")
    assert load_brain_model(tmp_path / "folder").config.n_outputs == 642


def test_truncated_safetensors(tmp_path):
    out = tmp_path / "m.safetensors"
    assert run_cli("convert", str(FIXTURE), str(out)).returncode == 0
    out.write_bytes(out.read_bytes()[:5000])
    err = _cli_error(*_predict_args(out, tmp_path))
    assert "corrupt or truncated" in err


def test_hub_id_offline_is_clear(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    r = run_cli(*_predict_args("facebook/tribev2", tmp_path), env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "not in the Hugging Face cache" in r.stderr


def test_hub_id_from_local_cache(tmp_path):
    """A model in the HF cache (as `huggingface-cli download` leaves it) loads offline by its id."""
    hf = tmp_path / "hf"
    repo = hf / "hub" / "models--facebook--tribev2"
    snap = repo / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    for name in ("config.yaml", "best.ckpt"):
        shutil.copy(FIXTURE / name, snap / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    r = run_cli(
        *_predict_args("facebook/tribev2", tmp_path),
        env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(hf)},
    )
    assert r.returncode == 0, r.stderr
    _, expected = load_case("full_T200")
    assert np.abs(np.load(tmp_path / "out.npy") - expected).max() < 1e-4
