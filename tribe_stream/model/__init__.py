"""The TRIBE v2 brain model (FmriEncoder), its config, loading and conversion."""

from tribe_stream.model.config import BrainConfig
from tribe_stream.model.fmri_encoder import FmriEncoder
from tribe_stream.model.loading import LoadedModel, load_brain_model

__all__ = ["BrainConfig", "FmriEncoder", "LoadedModel", "load_brain_model"]
