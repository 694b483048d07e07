"""Feature extractors: the three foundation models that turn media into the brain model's inputs.

Numpy in, numpy out; each extractor reports its per-bin `(L, D)` as `.shape` and loads with
`from_pretrained(folder | HF-cache entry | hub id, settings, device=, dtype=, compile=)`. Settings
come from the checkpoint's `config.yaml` (`config.from_yaml`), the reference values otherwise.
Bins are 2 Hz: bin b covers `[b/2, (b+1)/2)` s. Live helpers call the same methods as offline.
Imports here are light (numpy only); the torch/transformers modules load when used.

- video: `video.VideoExtractor` (V-JEPA2; live: `video.LiveVideo`)
- audio: `audio.AudioExtractor` (w2v-BERT; live: `AudioExtractor.live()`)
- speech recognition: `asr.WhisperASR`, live `asr.LiveASR`
- text: `text.TextExtractor` (causal LM over word contexts; live: `TextExtractor.live()`)
- bin timing: `timing`; layer groups: `layers.group_layers`
- whole files: `offline.extract_media`; all of a checkpoint's: `suite.load_extractors`
- tiny random demo models: `demo.build_demo_extractors`, `demo.load_demo_extractors`
"""

from tribe_stream.extractors.config import (
    ExtractorConfig,
    ModalitySettings,
    from_experiment,
    from_yaml,
)
from tribe_stream.extractors.layers import group_layers, thin_indices
from tribe_stream.extractors.timing import (
    bin_end_times,
    chunk_bounds,
    clip_sample_times,
    frames_for_bins,
    n_bins_for,
    nearest_frame_indices,
    place_words,
    select_frames,
    word_bin_span,
)

__all__ = [
    "ExtractorConfig",
    "ModalitySettings",
    "from_experiment",
    "from_yaml",
    "group_layers",
    "thin_indices",
    "bin_end_times",
    "chunk_bounds",
    "clip_sample_times",
    "frames_for_bins",
    "n_bins_for",
    "nearest_frame_indices",
    "place_words",
    "select_frames",
    "word_bin_span",
]
