"""The one resolver (tribe_stream.resolve), the one config.yaml reader, the one cache folder.

Hub answers come from a real HTTP server on 127.0.0.1 that speaks the hub's error protocol
(status codes and `X-Error-Code`), so every branch of the hub error handling runs for real.
"""

from __future__ import annotations

import http.server
import shutil
import threading

import numpy as np
import pytest
from conftest import FIXTURE, run_cli

from tribe_stream.errors import CheckpointError
from tribe_stream.extractors.config import ExtractorConfig, from_yaml
from tribe_stream.extractors.demo import DEMO_SHAPE, demo_extractors_path
from tribe_stream.model.demo import demo_model_path
from tribe_stream.models import extractor_config, load_brain_model
from tribe_stream.paths import cache_dir
from tribe_stream.resolve import (
    checkpoint_path,
    hub_snapshot,
    model_dir,
)
from tribe_stream.sources.clip import make_clip


def _hf_cache(root, repo_id: str, files: dict) -> object:
    """A Hugging Face cache entry as `hf download` leaves it: refs/main -> snapshots/<sha>/."""
    sha = "b" * 40
    repo = root / "hub" / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / sha
    snap.mkdir(parents=True)
    for name, src in files.items():
        if src is None:
            (snap / name).write_text("{}")
        else:
            shutil.copy(src, snap / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    return snap


class _Hub(http.server.BaseHTTPRequestHandler):
    """Answers like the hub refusing: by repo name, 403 gated, 401 private, 403, 503, 404."""

    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        _Hub.requests.append(self.path)
        code, error = 404, "RepoNotFound"
        for name, answer in {
            "gated": (403, "GatedRepo"),
            "private": (401, "RepoNotFound"),
            "forbidden": (403, None),
            "down": (503, None),
        }.items():
            if f"/{name}" in self.path:
                code, error = answer
        body = b'{"error": "refused"}'
        self.send_response(code)
        if error:
            self.send_header("X-Error-Code", error)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A local stand-in for huggingface.co (online mode) and an empty HF cache."""
    import huggingface_hub.constants as constants

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    _Hub.requests = []
    yield tmp_path / "hf"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "repo, message",
    [
        ("t/gated", "is gated: accept its licence on https://huggingface.co/t/gated"),
        ("t/private", "is not on the Hugging Face hub (or is private"),
        ("t/forbidden", "the hub refused access (403)"),
        ("t/down", "it answered 503"),
        ("t/missing", "is not on the Hugging Face hub"),
    ],
)
def test_hub_errors_are_one_clear_line(hub, repo, message):
    with pytest.raises(CheckpointError) as info:
        hub_snapshot(repo, ["config.yaml"], what="checkpoint")
    text = str(info.value)
    assert message in text and "\n" not in text
    assert _Hub.requests, "the hub was asked"


def test_unreachable_hub_and_offline_mode(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache and the hub cannot"):
        checkpoint_path("facebook/tribev2")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="HF_HUB_OFFLINE is set; download it once online"):
        checkpoint_path("facebook/tribev2")


def test_cache_first_no_request_when_cached(hub):
    snap = _hf_cache(
        hub,
        "facebook/tribev2",
        {"config.yaml": FIXTURE / "config.yaml", "best.ckpt": FIXTURE / "best.ckpt"},
    )
    assert checkpoint_path("facebook/tribev2") == snap
    assert _Hub.requests == []
    # the extractors' config comes from the same snapshot, through the one reader
    assert extractor_config("facebook/tribev2").text.model_name == "meta-llama/Llama-3.2-3B"
    assert _Hub.requests == []


def test_partial_snapshot_is_not_taken_for_a_whole_one(tmp_path, monkeypatch):
    """A cache holding only config.yaml (what `extract` fetched) is not a loadable checkpoint."""
    import huggingface_hub.constants as constants

    _hf_cache(tmp_path, "facebook/tribev2", {"config.yaml": FIXTURE / "config.yaml"})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert extractor_config("facebook/tribev2").video.cache_n_layers == 20
    with pytest.raises(CheckpointError, match="only partly in the Hugging Face cache"):
        checkpoint_path("facebook/tribev2")
    _hf_cache(tmp_path, "tribe-test/no-config", {"tokenizer.json": None})
    with pytest.raises(CheckpointError, match="only partly in the Hugging Face cache"):
        model_dir("tribe-test/no-config")


def test_checkpoint_sources(tmp_path):
    demo = load_brain_model("demo").source and demo_model_path()
    assert (demo / "model.safetensors").is_file() and demo.parent == cache_dir()
    assert checkpoint_path(FIXTURE) == FIXTURE
    with pytest.raises(CheckpointError, match="does not exist; pass a folder"):
        checkpoint_path(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="not a valid hub id"):
        checkpoint_path("bad!id/x")


def test_cache_dir_follows_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIBE_STREAM_CACHE", str(tmp_path / "c"))
    assert cache_dir("a", "b") == tmp_path / "c" / "a" / "b"
    assert not (tmp_path / "c").exists()
    assert cache_dir("x", create=True).is_dir()
    assert demo_extractors_path().root == tmp_path / "c" / "demo-extractors-v1"
    monkeypatch.delenv("TRIBE_STREAM_CACHE")
    from pathlib import Path

    assert cache_dir() == Path.home() / ".cache" / "tribe-stream"


def test_extractor_config_sources(tmp_path):
    assert extractor_config(None) == extractor_config(None).reference()
    demo = extractor_config("demo")
    assert demo.video.model_name == str(demo_extractors_path().video)
    # a folder holding only a converted model.safetensors: its config travels in the metadata
    out = tmp_path / "conv" / "model.safetensors"
    out.parent.mkdir()
    r = run_cli("convert", str(FIXTURE), str(out))
    assert r.returncode == 0, r.stderr
    assert extractor_config(out.parent).text.cache_n_layers == 20
    assert extractor_config(out).text.model_name == "meta-llama/Llama-3.2-3B"
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="has no config.yaml, which names the extractors"):
        extractor_config(tmp_path / "empty")


# -- a released-style config.yaml (Python tags) through the extractors' loading -------------------

RELEASED_STYLE = """\
infra: !!python/object:exca.TaskInfra
  folder: /checkpoint/tribe
  cluster: null
brain_model_config: !!python/object:neuraltrain.models.FmriEncoder
  name: FmriEncoder
  hidden: 288
  low_rank_head: 64
  extractor_aggregation: cat
  layer_aggregation: cat
  combiner: null
  encoder: !!python/object:neuraltrain.models.XTransformersConfig
    depth: 2
  subject_layers: {{subject_dropout: 0.1}}
  activation: !!python/name:torch.nn.GELU ''
data: !!python/object:tribev2.data.Data
  frequency: 2
  layers_to_use: !!python/tuple [0.5, 0.75, 1.0]
  layer_aggregation: group_mean
  features_to_use: !!python/tuple [text, audio, video]
  text_feature: !!python/object:neuralset.extractors.HuggingFaceText
    name: HuggingFaceText
    model_name: {text}
    frequency: 2
    cache_n_layers: 20
    device: !!python/object/apply:torch.device [cuda]
  audio_feature: !!python/object:neuralset.extractors.Wav2VecBert
    name: Wav2VecBert
    model_name: {audio}
    frequency: 2
    layers: [0.75, 1.0]
    cache_n_layers: 20
  video_feature: !!python/object:neuralset.extractors.HuggingFaceVideo
    name: HuggingFaceVideo
    frequency: 2
    clip_duration: 4
    image: !!python/object:neuralset.extractors.HuggingFaceImage
      model_name: {video}
      cache_n_layers: 20
      dtype: !!python/name:torch.float16 ''
"""


def test_released_style_config_goes_through_extractor_loading_and_extract(tmp_path):
    demo = demo_extractors_path()
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.yaml").write_text(
        RELEASED_STYLE.format(text=demo.text, audio=demo.audio, video=demo.video)
    )
    cfg = from_yaml(ckpt)
    assert cfg.video.model_name == str(demo.video) and cfg.text.cache_n_layers == 20
    # audio's cache_n_layers: 20 is read and not applied (neuralset never thins audio)
    assert cfg.audio.cache_n_layers is None
    assert cfg.audio.groups(25) == [list(range(12, 18)), list(range(18, 25))]
    assert cfg.text.fractions == (0.5, 0.75, 1.0) and cfg.features_to_use == (
        "text",
        "audio",
        "video",
    )
    assert extractor_config(ckpt) == cfg
    clip = make_clip(tmp_path / "clip.mp4", 2.0, width=64, height=48)
    words = tmp_path / "words.tsv"
    words.write_text("onset\tduration\ttext\n0.5\t0.4\thello\n")
    out = tmp_path / "f.npz"
    r = run_cli(
        "extract", str(clip), "--out", str(out), "--checkpoint", str(ckpt), "--device", "cpu",
        "--transcript", str(words),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    with np.load(out) as z:
        assert sorted(z.files) == ["audio", "text", "video"]
        assert all(z[m].shape == (*DEMO_SHAPE, 4) for m in z.files)


MINI_STYLE = """\
data: !!python/object:tribev2.data.Data
  frequency: 2
  layers_to_use: null
  layer_aggregation: mean
  features_to_use: [text, audio, video]
  text_feature:
    name: HuggingFaceText
    model_name: Qwen/Qwen3-0.6B
    layers: 0.6666666666666666
    frequency: 2
  audio_feature:
    name: Wav2VecBert
    layers: 0.6666666666666666
    frequency: 2
  video_feature:
    name: HuggingFaceVideo
    frequency: 2
    clip_duration: 4
    image:
      name: HuggingFaceImage
      model_name: facebook/vjepa2-vitl-fpc64-256
      layers: 0.6666666666666666
"""


def test_mini_style_config_reads_its_own_models_and_layers(tmp_path):
    """The tribev2-mini config (the official mini_config: one layer at 2/3, no thinning, its own
    text and video models) read from config.yaml, not from our built-in `mini()`."""
    (tmp_path / "config.yaml").write_text(MINI_STYLE)
    cfg = from_yaml(tmp_path)
    assert cfg.text.model_name == "Qwen/Qwen3-0.6B"
    assert cfg.video.model_name == "facebook/vjepa2-vitl-fpc64-256"
    assert cfg.audio.model_name == "facebook/w2v-bert-2.0"
    # Qwen3-0.6B: 29 states -> 18; ViT-L and w2v-BERT: 25 states -> 16 (thinning would give 15)
    assert cfg.text.groups(29) == [[18]]
    assert cfg.video.groups(25) == [[16]] and cfg.audio.groups(25) == [[16]]
    assert cfg == ExtractorConfig.mini()
