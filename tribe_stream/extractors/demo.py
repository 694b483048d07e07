"""Tiny UNTRAINED extractor models, built locally and saved with `save_pretrained`, so the demo and
the tests run the real extractor code (same classes, same `from_pretrained` loader) with no download.

Their features mean nothing; they are small enough to stream in real time on a 2-core CPU:
V-JEPA2 at a 32 px crop (128 tokens a clip), w2v-BERT and a Llama with a few narrow layers, and a
byte-level BPE tokenizer trained on a built-in paragraph. Each gives `(L, D) = DEMO_SHAPE`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tribe_stream.extractors.config import ExtractorConfig, from_experiment

if TYPE_CHECKING:
    from tribe_stream.extractors.fp8 import VideoFp8

DEMO_VERSION = 1
DEMO_DIM = 64
DEMO_SHAPE = (2, DEMO_DIM)
"""`(L, D)` of every demo extractor (must match tribe_stream.model.demo.DEMO_FEATURE_DIMS)."""

CORPUS = """
The brain listens to speech and watches the world at the same time. When a person hears a story,
the words arrive one after another, and the meaning builds up over seconds. Music, voices, and
noise reach the ears; faces, hands, and moving things reach the eyes. A model of the cortex can
predict how each region responds to what is seen and heard. It was trained on many hours of films,
podcasts, and recorded speech. Here the model runs live: a camera and a microphone feed it, and a
new map of the cortex appears every second. The quick brown fox jumps over the lazy dog. She sells
sea shells by the sea shore. One, two, three, four, five, six, seven, eight, nine, ten. Hello,
how are you today? I am fine, thank you. What time is it? It is late in the evening, and the
light is fading over the city while people walk home from work.
"""

WORDS_PER_SECOND = 2.5
"""A speaker's rate: the words `paced_words` makes where no recogniser hears the speech."""


def paced_words(seconds: float) -> list:
    """`CORPUS`'s words, one every 1 / `WORDS_PER_SECOND` s over `seconds`, each 0.8 of that
    long (fed when each ends: the bench, the serving stream's capacity probe)."""
    import itertools

    from tribe_stream.types import Word

    step, text = 1.0 / WORDS_PER_SECOND, itertools.cycle(CORPUS.split())
    return [Word(next(text), i * step, 0.8 * step) for i in range(int(seconds * WORDS_PER_SECOND))]


@dataclass(frozen=True)
class DemoPaths:
    """Folders of the demo extractor models (each loads with `from_pretrained`)."""

    root: Path
    text: Path
    audio: Path
    video: Path

    def __getitem__(self, modality: str) -> Path:
        return getattr(self, modality)


def demo_config() -> ExtractorConfig:
    """The reference grouping rules ([0.5, 0.75, 1.0], group mean), on the demo's 4 hidden states."""
    return from_experiment({})


def _build_tokenizer(folder: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        model_max_length=131072,
    )
    fast.save_pretrained(str(folder))
    return fast


def build_demo_extractors(folder: str | os.PathLike, seed: int = 0) -> DemoPaths:
    """Create the three tiny random-weight models (deterministic for a seed) under `folder`."""
    import torch
    from transformers import (
        LlamaConfig,
        LlamaModel,
        SeamlessM4TFeatureExtractor,
        VJEPA2Config,
        VJEPA2Model,
        Wav2Vec2BertConfig,
        Wav2Vec2BertModel,
    )
    from transformers.utils import logging as hf_logging

    from tribe_stream.extractors.video import VideoPreprocess

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    root = Path(folder).expanduser()
    paths = DemoPaths(root, root / "text", root / "audio", root / "video")
    for p in (paths.text, paths.audio, paths.video):
        p.mkdir(parents=True, exist_ok=True)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        video = VJEPA2Config(
            crop_size=32,
            patch_size=16,
            frames_per_clip=64,
            tubelet_size=2,
            hidden_size=DEMO_DIM,
            num_attention_heads=2,
            num_hidden_layers=3,
            mlp_ratio=2.0,
            pred_hidden_size=32,
            pred_num_attention_heads=2,
            pred_num_hidden_layers=1,
            pred_num_mask_tokens=2,
            num_pooler_layers=1,
        )
        VJEPA2Model(video).eval().save_pretrained(str(paths.video))
        prep = VideoPreprocess(resize=int(32 * 256 / 224), crop=32)
        (paths.video / "video_preprocessor_config.json").write_text(
            json.dumps(prep.to_json(), indent=2)
        )

        torch.manual_seed(seed + 1)
        audio = Wav2Vec2BertConfig(
            hidden_size=DEMO_DIM,
            num_hidden_layers=3,
            num_attention_heads=2,
            intermediate_size=128,
            conv_depthwise_kernel_size=5,
            position_embeddings_type="rotary",  # the real model's relative_key costs O(T^2 d) a layer on a CPU
            layerdrop=0.0,
            apply_spec_augment=False,
        )
        Wav2Vec2BertModel(audio).eval().save_pretrained(str(paths.audio))
        SeamlessM4TFeatureExtractor(padding_value=1.0).save_pretrained(str(paths.audio))

        torch.manual_seed(seed + 2)
        tokenizer = _build_tokenizer(paths.text)
        text = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=DEMO_DIM,
            intermediate_size=128,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.eos_token_id,
            tie_word_embeddings=True,
        )
        LlamaModel(text).eval().save_pretrained(str(paths.text))
    finally:
        torch.random.set_rng_state(state)
        if bars:
            hf_logging.enable_progress_bar()
    (root / "DEMO.json").write_text(
        json.dumps({"version": DEMO_VERSION, "seed": seed, "untrained": True})
    )
    return paths


def demo_extractors_path(folder: str | os.PathLike | None = None) -> DemoPaths:
    """Build (once) and return the demo models' folders, under the tribe-stream cache by default."""
    if folder is None:
        from tribe_stream.paths import cache_dir

        folder = cache_dir(f"demo-extractors-v{DEMO_VERSION}")
    root = Path(folder).expanduser()
    paths = DemoPaths(root, root / "text", root / "audio", root / "video")
    if _built(root):
        return paths
    # Built in a private folder, then renamed into place: two processes starting at once (two
    # first `demo` runs, parallel tests) never see each other's half-written models.
    import shutil
    import tempfile

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        build_demo_extractors(tmp)
        if not _built(root):
            if root.exists():
                shutil.rmtree(root, ignore_errors=True)  # an older version or an interrupted build
            try:
                os.replace(tmp, root)
            except OSError:  # another process put its complete build there first
                if not _built(root):
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths


def _built(root: Path) -> bool:
    """Whether `root` holds a complete demo build of this version (its marker is written last)."""
    marker = root / "DEMO.json"
    try:
        return json.loads(marker.read_text()).get("version") == DEMO_VERSION
    except (OSError, ValueError):
        return False


def load_demo_extractors(
    folder: str | os.PathLike | None = None,
    device: str = "cpu",
    modalities: tuple[str, ...] = ("text", "audio", "video"),
    video_fp8: VideoFp8 | bool | str = "off",
) -> dict:
    """The demo extractors, loaded through the same `from_pretrained` path as real weights."""
    from tribe_stream.extractors.suite import load_extractors

    paths = demo_extractors_path(folder)
    config = demo_config().with_models(**{m: paths[m] for m in modalities})
    return load_extractors(config, device=device, modalities=modalities, video_fp8=video_fp8)
