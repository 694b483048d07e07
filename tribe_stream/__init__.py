"""tribe-stream: TRIBE v2 brain encoding, live."""

__version__ = "0.1.0"

N_VERTICES = 20484
"""fsaverage5, both hemispheres: left 0..10241, then right 10242..20483."""
N_VERTICES_HEMI = 10242
BIN_SECONDS = 0.5
"""Feature bins are 2 Hz; second k is bins 2k and 2k+1."""
MAX_TOKENS = 200
"""Longest window the brain model accepts: positions >= 200 were never trained."""
AUDIO_RATE = 16000
"""Sample rate (Hz) of all audio inside tribe-stream: mono float32, what w2v-BERT and Whisper hear."""
HEMODYNAMIC_OFFSET_S = 5.0
"""A prediction for stimulus second k is the predicted BOLD at k + 5 s."""
