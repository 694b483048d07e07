"""Load the extractors a checkpoint needs, in one call (the CLI and the live pipeline use this)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tribe_stream.extractors.config import ExtractorConfig
from tribe_stream.types import MODALITIES

if TYPE_CHECKING:
    from tribe_stream.extractors.fp8 import VideoFp8


def load_extractors(
    config: ExtractorConfig,
    *,
    device: str | None = "auto",
    modalities: tuple[str, ...] | None = None,
    compile: bool = False,
    dtype: str | None = None,
    video_fp8: VideoFp8 | bool | str = "off",
    video_batch: int | None = None,
) -> dict:
    """`{modality: extractor}` for `modalities` (default: the config's `features_to_use`).

    Each extractor is loaded with `from_pretrained` from its settings' model name (a folder, a
    Hugging Face cache entry or a hub id) and reports its `(L, D)` as `.shape`. `video_fp8`: how much
    of the video encoder runs in FP8 (`fp8.VideoFp8`; faster on an H100, features within ~2%);
    `video_batch`: clips per V-JEPA2 forward (default: 4 on a GPU, 2 on the CPU).
    """
    from tribe_stream.extractors.audio import AudioExtractor
    from tribe_stream.extractors.text import TextExtractor
    from tribe_stream.extractors.video import VideoExtractor

    classes = {"text": TextExtractor, "audio": AudioExtractor, "video": VideoExtractor}
    wanted = tuple(modalities or config.features_to_use)
    out = {}
    for m in MODALITIES:
        if m in wanted:
            extra = {"fp8": video_fp8, "max_batch": video_batch} if m == "video" else {}
            out[m] = classes[m].from_pretrained(
                None, config[m], device=device, dtype=dtype, compile=compile, **extra
            )
    return out
