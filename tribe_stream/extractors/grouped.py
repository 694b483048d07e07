"""What the text, audio and video extractors share: a `transformers` model in eval mode on a
device, its modality settings, the layer groups of its hidden states, and the per-bin shape."""

from __future__ import annotations

from typing import Any

from tribe_stream.extractors.config import ModalitySettings


class GroupedExtractor:
    """Base of the feature extractors: `_setup` keeps the model, settings, device and groups."""

    model: Any
    settings: ModalitySettings
    device: str
    groups: list[list[int]]

    def _setup(self, model: Any, settings: ModalitySettings, device: str) -> int:
        """Keep `model` (put in eval mode), `settings` and `device`; make the layer groups.
        Returns the model's number of hidden states (layers + embeddings)."""
        self.model = model.eval()
        self.settings = settings
        self.device = device
        n_states = int(model.config.num_hidden_layers) + 1
        self.groups = settings.groups(n_states)
        return n_states

    @property
    def shape(self) -> tuple[int, int]:
        """`(L, D)` of one bin's (for text also one word's) features."""
        return len(self.groups), int(self.model.config.hidden_size)


def unwrap(result: Any) -> Any:
    """One item of a batched call (`encode_clips`, `extract_passes`): its value, or its error raised."""
    if isinstance(result, Exception):
        raise result
    return result
