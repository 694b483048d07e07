"""The model stack: a checkpoint resolved, once, into everything that runs.

    models = Models(ModelOptions(checkpoint="demo"))
    models.loaded, models.engine          # the brain model and its engine
    models.config                         # the extractor settings the checkpoint implies
    models.extractors(("audio", "video")) # {modality: extractor}, loaded when first asked for

Every command, `Stream`, `Predictor`, `bench` and `fidelity` build their models here: `demo`
(small untrained weights, built once), `random` (full-size random weights in memory, for
`bench`), a folder, a `.ckpt`/`.safetensors` file or a hub id. The extractor settings come from
one rule (`extractor_config`), the same live and offline.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tribe_stream.errors import CheckpointError, InputError, require_transformers
from tribe_stream.options import ModelOptions
from tribe_stream.types import MODALITIES

if TYPE_CHECKING:
    from tribe_stream.extractors.config import ExtractorConfig

log = logging.getLogger("tribe_stream.models")


def extractor_config(source: str | os.PathLike | None) -> ExtractorConfig:
    """The extractor settings a checkpoint implies.

    None -> the reference TRIBE v2 settings; `demo` -> the demo extractors (built once) with
    their local folders; a folder, a file in one, or a hub id -> its config.yaml (read by the one
    reader, `tribe_stream.model.config.read_yaml`), or, for a converted `.safetensors` without
    one, the config it carries.
    """
    from tribe_stream.extractors.config import ExtractorConfig, from_experiment, from_yaml
    from tribe_stream.resolve import (
        _SOURCES,
        CONFIG_NAME,
        SAFETENSORS_NAME,
        hub_snapshot,
        looks_like_hub_id,
    )

    if source is None or str(source) == "random":
        return ExtractorConfig.reference()
    if str(source) == "demo":
        from tribe_stream.extractors.demo import demo_config, demo_extractors_path

        paths = demo_extractors_path()
        return demo_config().with_models(text=paths.text, audio=paths.audio, video=paths.video)
    path = Path(source).expanduser()
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        return from_yaml(path)
    if path.exists():
        folder = path if path.is_dir() else path.parent
    elif looks_like_hub_id(str(source)):
        folder = hub_snapshot(
            str(source),
            [CONFIG_NAME],
            what="checkpoint",
            complete=lambda f: (f / CONFIG_NAME).is_file(),
        )
    else:
        raise CheckpointError(f"{source} does not exist; {_SOURCES}")
    if (folder / CONFIG_NAME).is_file():
        return from_yaml(folder / CONFIG_NAME)
    weights = path if path.is_file() else folder / SAFETENSORS_NAME
    if weights.suffix == ".safetensors" and weights.is_file():
        from tribe_stream.model.loading import read_safetensors

        return from_experiment(read_safetensors(weights, tensors=False)[1])
    raise CheckpointError(
        f"{folder} has no {CONFIG_NAME}, which names the extractors; put the config.yaml that "
        "came with the checkpoint there, or leave out --checkpoint for the reference extractors"
    )


def load_brain_model(source: str | os.PathLike):
    """`model.loading.load_brain_model`, with `demo` (the demo folder, built once) too."""
    from tribe_stream.model.loading import load_brain_model as load

    if str(source) == "demo":
        from tribe_stream.model.demo import demo_model_path

        return load(demo_model_path())
    return load(source)


def default_engine(engine: str | None, device: str, live: bool = True) -> str:
    """The engine asked for, else the one that pays: `compiled` for live streams on a GPU (a
    live window's length changes every second for 100 s, and eager pays for each new length),
    `torch` offline (a few fixed 100 s windows a file: compiling costs more than it saves; a
    first 60 s `predict` on an H100 took 45.8 s compiled against 29.3 s eager) and on a CPU."""
    return engine or ("compiled" if live and device.startswith("cuda") else "torch")


def check_device(options: ModelOptions) -> str:
    """The device `options` name, once it is known to run them (FP8 needs a recent GPU): one
    line otherwise, before any model loads."""
    from tribe_stream.devices import pick_device

    device = pick_device(options.device)
    if options.video_fp8:
        from tribe_stream.extractors.fp8 import refusal

        if why := refusal(options.video_fp8, device):
            raise InputError(why)
    return device


@dataclass
class Extractors:
    """What turns one stream's media into features; a None entry is a modality switched off."""

    video: object | None = None  # tribe_stream.extractors.video.VideoExtractor
    audio: object | None = None  # tribe_stream.extractors.audio.AudioExtractor
    text: object | None = None  # tribe_stream.extractors.text.TextExtractor
    asr: object | None = None  # tribe_stream.extractors.asr.LiveASR (words from the audio)

    def active(self) -> list[str]:
        return [m for m in MODALITIES if getattr(self, m) is not None]

    def for_stream(self, modalities: Iterable[str] | None = None) -> Extractors:
        """The same models for another stream (its own speech-recognition state, the recogniser
        shared), limited to `modalities` (None: all of these)."""
        keep = set(self.active() if modalities is None else modalities)
        asr = self.asr.fresh() if self.asr is not None and "text" in keep else None
        return Extractors(
            video=self.video if "video" in keep else None,
            audio=self.audio if "audio" in keep else None,
            text=self.text if "text" in keep else None,
            asr=asr,
        )


@dataclass
class Head:
    """A second brain model on a stack's features: its weights, engine and output space."""

    loaded: object  # tribe_stream.model.loading.LoadedModel
    engine: object  # tribe_stream.engines.Engine
    warmed_for: int = 0
    """The most streams its engine was warmed up for (`stream.producer.warm_heads`)."""

    @property
    def space(self):
        return self.loaded.space


def random_head(cortex):
    """A subcortical head with RANDOM weights on `cortex`'s features (`--subcortical random`):
    the released head's size (8,802 voxels), the cortical model's architecture otherwise, for
    benchmarks of a second head's cost on a machine without its weights."""
    import dataclasses

    import torch

    from tribe_stream.model.fmri_encoder import FmriEncoder
    from tribe_stream.model.loading import LoadedModel
    from tribe_stream.spaces import SUBCORTICAL_VOXELS

    config = dataclasses.replace(cortex.config, n_outputs=SUBCORTICAL_VOXELS)
    torch.manual_seed(1)
    model = FmriEncoder(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    experiment = {
        "untrained": True,
        "data": {"neuro": {"projection": {"name": "MaskProjector", "mask": "subcortical"}}},
    }
    return LoadedModel(model.eval(), config, "random subcortical head", experiment)


class Models:
    """A checkpoint's brain model, engine, extractor settings and extractors, each loaded once,
    when first used (`extract` needs no brain model, a cached `predict` no extractor).

    `options` are validated first (nothing loads for a bad one); `extractor_dtype`: the
    extractors' precision (default: half on a GPU); `live`: the engine's default is the live
    one (`default_engine`)."""

    def __init__(
        self,
        options: ModelOptions | None = None,
        *,
        extractor_dtype: str | None = None,
        live: bool = True,
        **overrides,
    ):
        from dataclasses import replace

        from tribe_stream.devices import dtype_name, pick_dtype

        self.options = o = replace(options or ModelOptions(), **overrides).validate()
        self.device = check_device(o)
        self.dtype = dtype_name(pick_dtype(self.device, o.dtype))
        self.fp8 = o.video_fp8
        self.video_batch = o.video_batch  # clips per V-JEPA2 forward (None: the default)
        self.extractor_dtype = extractor_dtype
        self._extractors: dict[str, object] = {}
        self._heads: dict[str, Head] = {}
        if o.checkpoint == "random":  # built together, in memory
            from tribe_stream.full_size import random_full_size

            self.loaded, self._extractors = random_full_size(self.device, self.fp8)
            if self.video_batch:
                self._extractors["video"].max_batch = self.video_batch
        self.engine_name = default_engine(o.engine, self.device, live)

    @functools.cached_property
    def config(self) -> ExtractorConfig:
        """The extractor settings the checkpoint implies (`extractor_config`)."""
        return extractor_config(self.options.checkpoint)

    @functools.cached_property
    def loaded(self):
        """The brain model (`model.loading.LoadedModel`)."""
        loaded = load_brain_model(self.options.checkpoint)
        if loaded.identity.get("untrained"):
            from tribe_stream.untrained import warn_untrained

            warn_untrained(stacklevel=4)
        return loaded

    @functools.cached_property
    def engine(self):
        """The brain model's engine (`engines.Engine`), its own copy of the weights."""
        from tribe_stream.engines import make_engine

        return make_engine(self.engine_name, self.loaded, device=self.device, dtype=self.dtype)

    @property
    def space(self):
        """Where the brain model's outputs live (`tribe_stream.spaces.OutputSpace`)."""
        return self.loaded.space

    def head(self, source: str | os.PathLike) -> Head:
        """Another brain model on the same features (e.g. the subcortical one beside the
        cortical), loaded once, with its own engine on this stack's device and precision: it
        costs one more brain-model call a window, no extraction. Its feature shapes must be
        this checkpoint's (it runs on this checkpoint's extractors)."""
        key = str(source)
        if key not in self._heads:
            loaded = random_head(self.loaded) if key == "random" else load_brain_model(source)
            ours, theirs = self.loaded.config.feature_dims, loaded.config.feature_dims
            if dict(ours) != dict(theirs):
                raise CheckpointError(
                    f"{source} reads features {dict(theirs)} but {self.options.checkpoint} "
                    f"makes {dict(ours)}; a second head must read the same features (its "
                    "extractors are the first checkpoint's)"
                )
            from tribe_stream.engines import make_engine

            engine = make_engine(self.engine_name, loaded, device=self.device, dtype=self.dtype)
            self._heads[key] = Head(loaded=loaded, engine=engine)
        return self._heads[key]

    @property
    def identity(self) -> dict:
        """The brain model's identity (published in stream metadata; `untrained` for demo)."""
        return dict(self.loaded.identity)

    @property
    def untrained(self) -> bool:
        return bool(self.loaded.identity.get("untrained"))

    @property
    def usable(self) -> tuple[str, ...]:
        """The modalities the checkpoint was trained on, in the official order."""
        dims = self.loaded.config.feature_dims
        return tuple(m for m in MODALITIES if m in self.config.features_to_use and dims.get(m))

    def extractors(self, modalities: Sequence[str]) -> dict[str, object]:
        """`{modality: extractor}`, each loaded the first time it is asked for."""
        missing = [m for m in modalities if m not in self._extractors]
        if missing:
            require_transformers()
            from tribe_stream.extractors.suite import load_extractors

            self._extractors |= load_extractors(
                self.config,
                device=self.device,
                modalities=tuple(missing),
                compile=self.device.startswith("cuda"),
                dtype=self.extractor_dtype,
                video_fp8=self.fp8,
                video_batch=self.video_batch,
            )
        return {m: self._extractors[m] for m in MODALITIES if m in modalities}

    def live(self, kinds: Sequence[str], text: bool, notes: list[str] | None = None) -> Extractors:
        """A live stream's extractors for the media `kinds` it has (video; audio and text from
        the sound), with its own speech recogniser; `notes` says why text is off, if it is."""
        from tribe_stream.extractors.asr import asr_available

        text_ok = text and "text" in kinds
        reason = asr_available() if text_ok else None
        if reason:
            if notes is not None:
                notes.append(f"text features off: speech recognition unavailable ({reason})")
            text_ok = False
        mods = [m for m in ("audio", "video") if m in kinds] + (["text"] if text_ok else [])
        found = self.extractors(mods)
        asr = None
        if "text" in found:
            from tribe_stream.extractors.asr import LiveASR, WhisperASR

            asr = LiveASR(WhisperASR())
        return Extractors(
            video=found.get("video"), audio=found.get("audio"), text=found.get("text"), asr=asr
        )


__all__ = [
    "Extractors",
    "Head",
    "Models",
    "check_device",
    "default_engine",
    "extractor_config",
    "load_brain_model",
]
