"""Full-size RANDOM models built in memory, for benchmarks on a machine without the weights:
V-JEPA2 ViT-g, w2v-BERT 2.0 and Llama-3.2-3B at their published sizes (configs below, from the
models' own config files), and the TRIBE v2 brain model. Nothing is downloaded; nothing they
predict means anything (`untrained` in their identity)."""

from __future__ import annotations

import tempfile
from pathlib import Path

VJEPA2_VITG = dict(
    crop_size=256,
    frames_per_clip=64,
    tubelet_size=2,
    patch_size=16,
    hidden_size=1408,
    num_attention_heads=22,
    num_hidden_layers=40,
    mlp_ratio=48 / 11,  # 6144 hidden units
    qkv_bias=True,
    hidden_act="gelu",
    layer_norm_eps=1e-6,
    pred_hidden_size=384,
    pred_num_attention_heads=12,
    pred_num_hidden_layers=12,
    pred_num_mask_tokens=10,
    pred_mlp_ratio=4.0,
    num_pooler_layers=3,
)
W2V_BERT_2 = dict(
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    feature_projection_input_dim=160,
    hidden_act="swish",
    position_embeddings_type="relative_key",
    left_max_position_embeddings=64,
    right_max_position_embeddings=8,
    conv_depthwise_kernel_size=31,
    layer_norm_eps=1e-5,
    add_adapter=False,
)
LLAMA_32_3B = dict(
    vocab_size=128256,
    hidden_size=3072,
    intermediate_size=8192,
    num_hidden_layers=28,
    num_attention_heads=24,
    num_key_value_heads=8,
    head_dim=128,
    max_position_embeddings=131072,
    rms_norm_eps=1e-5,
    tie_word_embeddings=True,
    bos_token_id=128000,
    eos_token_id=128001,
    rope_theta=500000.0,
    rope_scaling={
        "rope_type": "llama3",
        "factor": 32.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 8192,
    },
)


def build(cls, config, device: str, dtype):
    """A random-weight `transformers` model made directly on the device in `dtype`."""
    import torch

    with torch.device(device):
        try:
            model = cls._from_config(config, dtype=dtype)
        except TypeError:
            model = cls._from_config(config, torch_dtype=dtype)
    return model.to(device=device, dtype=dtype).eval()


def random_full_size(device: str, fp8=None, with_text: bool = True):
    """(brain model, {modality: extractor}) at full size with random weights, on `device`
    (half precision on a GPU), compiled there; `fp8`: the video encoder's FP8 setting."""
    import torch
    from transformers import (
        AutoTokenizer,
        LlamaConfig,
        LlamaModel,
        SeamlessM4TFeatureExtractor,
        VJEPA2Config,
        VJEPA2Model,
        Wav2Vec2BertConfig,
        Wav2Vec2BertModel,
    )

    from tribe_stream.extractors.audio import AudioExtractor
    from tribe_stream.extractors.config import ExtractorConfig
    from tribe_stream.extractors.demo import _build_tokenizer
    from tribe_stream.extractors.text import TextExtractor
    from tribe_stream.extractors.video import VideoExtractor, VideoPreprocess
    from tribe_stream.model.config import BrainConfig
    from tribe_stream.model.fmri_encoder import FmriEncoder
    from tribe_stream.model.loading import LoadedModel

    gpu = device.startswith("cuda")
    half = torch.float16 if gpu else torch.float32
    settings = ExtractorConfig.reference()
    torch.manual_seed(0)
    video_model = build(VJEPA2Model, VJEPA2Config(**VJEPA2_VITG), device, half)
    crop = video_model.config.crop_size
    video = VideoExtractor(
        video_model,
        settings.video,
        VideoPreprocess(int(crop * 256 / 224), crop),
        device=device,
        compile=gpu,
        fp8=fp8,
    )
    audio_model = build(Wav2Vec2BertModel, Wav2Vec2BertConfig(**W2V_BERT_2), device, half)
    audio = AudioExtractor(
        audio_model, SeamlessM4TFeatureExtractor(padding_value=1.0), settings.audio,
        device=device, compile=gpu,
    )  # fmt: skip
    text = None
    if with_text:
        tok_dir = Path(tempfile.mkdtemp(prefix="tribe-bench-tok-"))
        _build_tokenizer(tok_dir)
        text_dtype = torch.bfloat16 if gpu else torch.float32
        text_model = build(LlamaModel, LlamaConfig(**LLAMA_32_3B), device, text_dtype)
        text = TextExtractor(
            text_model, AutoTokenizer.from_pretrained(str(tok_dir)), settings.text,
            device=device, compile=gpu,
        )  # fmt: skip
    dims = {"text": text.shape if text else (2, 3072), "audio": audio.shape, "video": video.shape}
    config = BrainConfig(feature_dims={k: tuple(v) for k, v in dims.items()})
    model = FmriEncoder(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    loaded = LoadedModel(
        model, config, "random full-size (tribe-stream bench)", {"untrained": True}
    )
    return loaded, {
        m: x for m, x in (("text", text), ("audio", audio), ("video", video)) if x is not None
    }
