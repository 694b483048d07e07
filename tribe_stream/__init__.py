"""tribe-stream: TRIBE v2 brain encoding, live.

    from tribe_stream import Stream
    for pred in Stream.from_file("clip.mp4", checkpoint="demo").publish("tcp://127.0.0.1:5556"):
        print(pred.second, pred.values.shape)

Offline, a whole file with the official semantics:

    from tribe_stream import predict
    preds = predict("clip.mp4", checkpoint="facebook/tribev2")   # preds.values (T, 20484)
    preds.save("clip.func.gii")

Importing the package is light (constants only); `Stream`, `predict` and their options load on
first use.
"""

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


_LAZY = {
    "Stream": "tribe_stream.stream.producer",
    "StreamOptions": "tribe_stream.stream.producer",
    "PublishOptions": "tribe_stream.stream.producer",
    "Prediction": "tribe_stream.types",
    "predict": "tribe_stream.prediction",
    "Predictor": "tribe_stream.prediction",
    "Predictions": "tribe_stream.prediction",
    "PredictOptions": "tribe_stream.prediction",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tribe_stream' has no attribute {name!r}")
