"""Every option of the commands and of the Python API, declared once and checked once.

Options are fields of dataclasses (`ModelOptions`, `LiveOptions`, `FeatureOptions`,
`PublishOptions` and the ones made of them: `StreamOptions`, `PredictOptions`). A field that is
also a command-line option carries its flag, help and type (`option`); `add_options` makes a
command's arguments from the fields, and `from_args` turns the parsed arguments back into the
dataclass, so an option has one name, type, default and meaning in every command. `validate()`
checks everything a user can get wrong (the lag rule, engine, precision, device, FP8 on this
device) before any model loads, and raises `InputError`: one line, exit 2.

This module imports neither torch nor the models (the CLI builds every parser at start-up).
"""

from __future__ import annotations

import argparse
import enum
import math
import os
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from tribe_stream import MAX_TOKENS
from tribe_stream.errors import InputError

ENGINE_NAMES = ("torch", "compiled", "onnx", "tensorrt")
"""The brain-model engines (`tribe_stream.engines`)."""
DTYPE_NAMES = ("float32", "float16", "bfloat16")
"""Precisions of the brain model (`devices.torch_dtype` reads them)."""
MODALITY_NAMES = ("text", "audio", "video")


class VideoFp8(enum.Enum):
    """How much of the video encoder runs in FP8: nothing, its matrix products (`Fp8Linear`), or
    its products and its attention (`fp8_attention.py`, cuDNN). `bool(x)`: anything in FP8."""

    OFF = "off"
    PRODUCTS = "products"
    ATTENTION = "attention"  # products and attention

    @classmethod
    def coerce(cls, value: VideoFp8 | str | bool | None) -> VideoFp8:
        """A member, its value, or the legacy False/None (off), True (products), "all"."""
        if isinstance(value, cls):
            return value
        if value is None or value is False:
            return cls.OFF
        if value is True:
            return cls.PRODUCTS
        if value == "all":
            return cls.ATTENTION
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(repr(m.value) for m in cls)
            raise InputError(f"video FP8 {value!r}: give one of {names}") from None

    def __bool__(self) -> bool:
        return self is not VideoFp8.OFF

    @property
    def attention(self) -> bool:
        """Whether attention runs in FP8 too."""
        return self is VideoFp8.ATTENTION


@dataclass(frozen=True)
class Cli:
    """How a field appears on the command line: `flags` maps each flag to the value it stores
    (a switch), or is a single flag that takes a value (`type`, `choices`)."""

    help: str
    flags: str | dict[str, Any] = ""
    type: Callable[[str], Any] | None = None
    choices: tuple | None = None
    metavar: str | tuple | None = None
    nargs: int | str | None = None
    action: str | None = None
    const: Any = None  # with nargs="?": the value of the bare flag


def option(default: Any, help: str, **cli: Any) -> Any:
    """A dataclass field that is also a command-line option (`--name-with-dashes` unless
    `flags` says otherwise)."""
    return field(default=default, metadata={"cli": Cli(help=help, **cli)})


def add_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    skip: tuple[str, ...] = (),
    only: tuple[str, ...] | None = None,
    required: tuple[str, ...] = (),
) -> None:
    """Add the command-line options of dataclass `cls` (its fields with `option`), in order.
    `required`: options the command cannot run without (their default is then unused)."""
    for f in fields(cls):
        cli: Cli | None = f.metadata.get("cli")
        if cli is None or f.name in skip or (only is not None and f.name not in only):
            continue
        default = None if f.default is MISSING else f.default
        if isinstance(cli.flags, dict):
            for flag, value in cli.flags.items():
                parser.add_argument(
                    flag, dest=f.name, action="store_const", const=value, default=default,
                    help=cli.help if len(cli.flags) == 1 else f"{cli.help}: {value}",
                )  # fmt: skip
            continue
        flag = cli.flags or "--" + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": f.name, "default": default, "help": cli.help}
        if cli.action:
            kwargs["action"] = cli.action
        for key in ("type", "choices", "metavar", "nargs", "const"):
            if getattr(cli, key) is not None:
                kwargs[key] = getattr(cli, key)
        if f.name in required:
            kwargs["required"] = True
        parser.add_argument(flag, **kwargs)


def from_args(cls: type, args: Any, **values: Any) -> Any:
    """`cls` from the parsed arguments of its fields, or from another options object holding
    them (the others keep their defaults)."""
    for f in fields(cls):
        if f.name not in values and hasattr(args, f.name) and f.init:
            values[f.name] = getattr(args, f.name)
    return cls(**values)


# ----- the checks, each in one place -----


def number(
    kind: type = float,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
) -> Callable[[str], float]:
    """An argparse `type` that takes finite numbers in a range (`above`: strictly greater), so a
    bad option is refused with one line before anything starts."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a{'n integer' if kind is int else ' number'}"
            ) from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        if above is not None and value <= above:
            raise argparse.ArgumentTypeError(f"{text}: must be above {above:g}")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"{text}: must be at least {minimum:g}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{text}: must be at most {maximum:g}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def check_lag(lag: Any, name: str = "--lag") -> float:
    """The lag rule: a non-negative multiple of 0.5 s whose window fits the model's 100 s."""
    try:
        v = float(lag)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number of seconds, not {lag!r}") from None
    if not math.isfinite(v) or v < 0 or abs(round(v * 2) - v * 2) > 1e-9:
        raise InputError(
            f"{name} must be a non-negative multiple of 0.5 s (0, 0.5, 1, ...), not {lag}"
        )
    if v * 2 + 2 > MAX_TOKENS:
        raise InputError(f"{name} {v:g} s is longer than the model's 100 s window (at most 99)")
    return round(v * 2) / 2


def check_seconds(name: str, value: Any, minimum: float = 0.0) -> float | None:
    """None, or a finite number of seconds above `minimum`."""
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number of seconds, not {value!r}") from None
    if not math.isfinite(v) or v <= minimum:
        raise InputError(
            f"{name} must be a finite number of seconds above {minimum:g}, not {value}"
        )
    return v


def _choice(name: str, value: Any, choices: tuple, allow_none: bool = True) -> None:
    if (value is None and allow_none) or value in choices:
        return
    raise InputError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


# ----- the option groups -----


@dataclass
class ModelOptions:
    """Which models run, where and how (every command that runs the brain model)."""

    checkpoint: str = option(
        "demo",
        "brain model: a folder, .ckpt/.safetensors, hub id, `demo` (small UNTRAINED weights) or, "
        "for `bench`, `random` (full-size random weights built in memory)",
    )
    engine: str | None = option(
        None,
        "brain-model engine (default: compiled for live streams on a GPU, else torch)",
        choices=ENGINE_NAMES,
    )
    device: str | None = option(None, "cpu, cuda or cuda:N (default: a GPU when there is one)")
    dtype: str | None = option(
        None, "brain-model precision (default: float16 on a GPU, float32 on a CPU)",
        choices=DTYPE_NAMES,
    )  # fmt: skip
    video_fp8: str = option(
        "off",
        "the video encoder in FP8 (Hopper/Ada GPUs; faster, features within ~2%%)",
        flags={"--video-fp8": "products", "--video-fp8-attention": "attention"},
    )
    video_batch: int | None = option(
        None, "clips per V-JEPA2 forward (default: 4 on a GPU, 2 on the CPU); live, fewer make "
        "a server's turns shorter (each turn runs one forward)",
        type=number(int, minimum=1, maximum=64),
    )  # fmt: skip
    subcortical: str | None = option(
        None,
        "a second brain model on the same features, e.g. facebook/tribev2-subcortical: "
        "offline its predictions beside OUT as NAME.subcortical.nii.gz (MNI152 2 mm), live on "
        "the tribe.subcortical topic; `random`: random weights of its size (benchmarks)",
        metavar="CHECKPOINT",
    )

    def validate(self) -> ModelOptions:
        """Everything checkable before a model loads: names, precision, the device, FP8 there."""
        if not isinstance(self.checkpoint, str) or not self.checkpoint:
            raise InputError("give a checkpoint: a model folder, hub id or `demo`")
        _choice("engine", self.engine, ENGINE_NAMES)
        _choice("model dtype", self.dtype, DTYPE_NAMES)
        from tribe_stream.devices import pick_device

        pick_device(self.device)  # `cuda` without a GPU fails here
        self.video_fp8 = VideoFp8.coerce(self.video_fp8)  # whether this GPU runs it: `Models`
        vb = self.video_batch
        if vb is not None and (
            isinstance(vb, bool) or not isinstance(vb, int) or not 1 <= vb <= 64
        ):
            raise InputError(f"video_batch {vb!r}: give a whole number from 1 to 64")
        if self.subcortical is not None and (
            not isinstance(self.subcortical, str) or not self.subcortical.strip()
        ):
            raise InputError(f"subcortical {self.subcortical!r}: give a checkpoint")
        if self.subcortical not in (None, "random"):  # the head loads after the extractors
            from tribe_stream.resolve import check_source

            check_source(self.subcortical)
        return self


@dataclass
class LiveOptions:
    """How a live stream runs."""

    lag: float = option(
        0.0, "seconds of right-hand context, a multiple of 0.5 (default 0: lowest latency)",
        type=number(minimum=0),
    )  # fmt: skip
    audio_context: float = option(
        30.0, "seconds of trailing audio the audio extractor hears per bin (default 30)",
        type=number(minimum=1),
    )  # fmt: skip
    text: bool = option(True, "switch off speech recognition and text", flags={"--no-text": False})
    realtime: bool = option(
        True, "files as fast as possible, not at their pace", flags={"--fast": False}
    )
    seconds: float | None = option(
        None, "stop after this many seconds of stream time", type=number(above=0)
    )
    text_batch: str = option(
        "off",
        "on: the streams' new words in one text-model forward a turn; off (default): each "
        "stream's words alone as they come, exactly its own features (on a lent H100, batching "
        "was no faster at 8 streams: docs/BENCHMARKS.md)",
        choices=("on", "off"),
    )
    video_overlap: bool = option(
        False,
        "a server turn queues its V-JEPA2 forward and goes on with the other work, collecting it "
        "in a later turn (on a GPU, on a CUDA stream of its own): one H100 run at 8 streams took "
        "the loop from 104 to 85 ms a stream-second; off by default until more runs show it; it "
        "changes nothing on a CPU",
        action="store_true",
    )
    video_clips: int = option(
        2,
        "V-JEPA2 clips per second of stream: 2 (the official rate, one per half-second bin) or 1 "
        "(one clip, ending at the later bin's end, for both bins: half the video work, more "
        "streams per GPU; predictions then differ from the official pipeline's)",
        type=int,
        choices=(1, 2),
    )

    def validate(self) -> LiveOptions:
        if self.text_batch not in ("on", "off"):
            raise InputError(f"text batch {self.text_batch!r}: give on or off")
        if self.video_clips not in (1, 2):
            raise InputError(f"--video-clips {self.video_clips!r}: give 2 (the official rate) or 1")
        self.lag = check_lag(self.lag)
        self.seconds = check_seconds("--seconds", self.seconds)
        self.audio_context = check_seconds("--audio-context", self.audio_context, 0.999)
        return self


@dataclass
class StreamOptions(ModelOptions, LiveOptions):
    """How a live stream runs and on which models (`Stream`; `run`, `serve`, `demo`, `web`)."""

    def validate(self) -> StreamOptions:
        LiveOptions.validate(self)
        ModelOptions.validate(self)
        from tribe_stream.errors import require_transformers

        require_transformers()  # the extractors' package: said before any model loads
        return self


def max_streams_option(help: str) -> Any:
    """`--max-streams [N]`, one definition: `serve`/`web` serve at most N streams at once;
    `bench` searches for the most kept in real time (up to N). Bare: 0."""
    return option(
        None, help, type=number(int, minimum=1, maximum=64), nargs="?", const=0, metavar="N"
    )


@dataclass
class ServeOptions:
    """How many streams one server takes at once (`serve`, `web --capture`)."""

    max_streams: int | None = max_streams_option(
        "the most streams served at once; one more is told busy, try again (default, with "
        "--control, --ray or web --capture: what fits, measured as the models warm up; serve's "
        "own files and devices without --control: no limit)"
    )

    def validate(self) -> ServeOptions:
        if self.max_streams == 0:
            raise InputError("--max-streams needs its N here: the most streams served at once")
        return self


@dataclass
class FeatureOptions:
    """Where offline features and words come from (`predict`, `extract`, `fidelity`)."""

    modalities: tuple[str, ...] | None = option(
        None, "comma-separated subset of text,audio,video (default: the checkpoint's)",
        type=lambda s: tuple(m.strip() for m in s.split(",") if m.strip()),
    )  # fmt: skip
    transcript: str | None = option(
        None, "words with times (.tsv ours or official, .srt, .vtt) instead of speech recognition"
    )
    asr: bool = option(True, "no speech recognition (text absent)", flags={"--no-asr": False})
    asr_model: str | None = option(
        None,
        "speech recogniser: a Whisper name whose weights are present (default base, or "
        "$TRIBE_STREAM_WHISPER_MODEL) or a CTranslate2 model folder",
        metavar="NAME|FOLDER",
    )
    cache: str | None = option(None, "feature cache folder (default: the tribe-stream cache)")
    use_cache: bool = option(
        True, "neither read nor write the feature cache", flags={"--no-cache": False}
    )

    def validate(self) -> FeatureOptions:
        if self.modalities is not None:
            self.modalities = tuple(self.modalities)
            bad = [m for m in self.modalities if m not in MODALITY_NAMES]
            if bad or not self.modalities:
                raise InputError(
                    f"modalities {list(self.modalities)}: choose from text, audio, video"
                )
        if self.transcript is not None and not Path(self.transcript).is_file():
            raise InputError(f"transcript {self.transcript} does not exist")
        if self.asr_model is not None and (
            not isinstance(self.asr_model, str) or not self.asr_model.strip()
        ):
            raise InputError(f"asr_model {self.asr_model!r}: give a Whisper name or a model folder")
        if self.asr and self.transcript is None and self.asr_model not in (None, "base"):
            from tribe_stream.errors import CheckpointError
            from tribe_stream.extractors.asr import asr_available

            if reason := asr_available(self.asr_model):  # asked for by name: refused, not skipped
                raise CheckpointError(reason)
        return self

    @property
    def whisper_model(self) -> str | None:
        """The recogniser asked for: the option, else `$TRIBE_STREAM_WHISPER_MODEL`."""
        return self.asr_model or os.environ.get("TRIBE_STREAM_WHISPER_MODEL") or None


@dataclass
class PredictOptions(ModelOptions, FeatureOptions):
    """How files are predicted offline (`predict`, `predict()`, `Predictor`)."""

    contributions: bool = option(
        False,
        "also each modality alone (others absent), beside OUT: NAME.text.EXT, NAME.audio.EXT, ...",
        action="store_true",
    )
    tr: float | None = option(
        None,
        "resample to a scan's volumes every TR s: the predicted BOLD, linearly interpolated at "
        "each volume's time (docs/OUTPUTS.md); default: 1 Hz",
        type=number(above=0),
        metavar="SECONDS",
    )
    onset: float = option(
        0.0,
        "with --tr: the scan's first volume's time, s after the stimulus's start (default 0)",
        type=number(),
        metavar="SECONDS",
    )
    bids_name: str | None = option(
        None,
        "BIDS entities (sub-01_task-movie): OUT is a folder, the files "
        "ENTITIES[_hemi-L]_space-fsaverage5_desc-tribe_bold.EXT and a JSON sidecar",
        metavar="ENTITIES",
    )

    def validate(self) -> PredictOptions:
        if self.tr is not None:
            self.tr = check_seconds("--tr", self.tr)
        try:
            self.onset = float(self.onset)
        except (TypeError, ValueError):
            raise InputError(f"--onset must be a number of seconds, not {self.onset!r}") from None
        if not math.isfinite(self.onset):
            raise InputError(f"--onset must be a finite number of seconds, not {self.onset}")
        if self.onset != 0.0 and self.tr is None:
            raise InputError("--onset places a scan's first volume: give the scan's --tr too")
        FeatureOptions.validate(self)
        ModelOptions.validate(self)
        return self


def _region_option() -> Any:
    """`--region`, one definition for every command that has it."""
    return option(
        None,
        "only this region of the atlas, by name (a part of it, any case; '*temporal*' patterns "
        "for several); repeat for more",
        flags="--region", action="append", metavar="NAME",
    )  # fmt: skip


@dataclass
class AtlasOptions:
    """Which cortical regions (`roi`, `render`, `lsl`): an atlas by name or two annotation files,
    and regions of it by name (`atlases.open_atlas`)."""

    atlas: str | None = option(
        None,
        "atlas by name, fetched once into the cache: destrieux, desikan, hcp-mmp1, schaefer-N "
        "(N = 100..1000 by 100; schaefer-N-17)",
        metavar="NAME",
    )
    annot: tuple[str, str] | None = option(
        None, "left and right annotations (.annot or .label.gii) on fsaverage5 or fsaverage",
        nargs=2, metavar=("LH", "RH"),
    )  # fmt: skip
    regions: tuple[str, ...] | None = _region_option()

    @property
    def given(self) -> bool:
        return self.atlas is not None or self.annot is not None

    def load(self):
        """The `Atlas` asked for (one line naming the fix when it cannot be had)."""
        from tribe_stream.atlases import open_atlas

        return open_atlas(self.atlas, self.annot, self.regions)


@dataclass
class PublishOptions:
    """Where and how predictions are published over ZeroMQ (docs/PROTOCOL.md)."""

    url: str | None = option(
        None,
        "ZeroMQ endpoint to bind (default $TRIBE_STREAM_URL or tcp://127.0.0.1:5556; `none`: "
        "off); another interface than loopback only when asked for",
        flags="--publish",
        metavar="URL",
    )
    payload_dtype: str = option(
        "float16", "payload precision (default float16)",
        choices=("float16", "float32"),
    )  # fmt: skip
    stream_id: str | None = option(None, "the stream's name in every header")
    curve_secret: str | None = option(
        None, "encrypt with CURVE: the server's secret key file (from `tribe-stream keys`)",
        metavar="KEY",
    )  # fmt: skip
    allow_clients: tuple[str, ...] | None = option(
        None, "with CURVE: a client's public key, key file or folder of them; repeat",
        flags="--allow-client", action="append", metavar="KEY",
    )  # fmt: skip
    roi: tuple[str, ...] | None = option(
        None,
        "an atlas by name (as --atlas) or left and right annotations (.annot or .label.gii): "
        "also publish each second's region means on the tribe.roi topic",
        nargs="+",
        metavar=("NAME|LH", "RH"),
    )
    regions: tuple[str, ...] | None = _region_option()

    @property
    def off(self) -> bool:
        """`--publish none`: the command publishes nothing (`validate` refuses it)."""
        return self.url == "none"

    def validate(self) -> PublishOptions:
        from tribe_stream.protocol import DEFAULT_URL, check_endpoint

        if self.url is None:
            self.url = DEFAULT_URL
        if self.off and self.roi:
            raise InputError("--roi publishes region means: it needs --publish URL, not none")
        check_endpoint(self.url)  # `none` too: the caller leaves publishing out for it
        if self.allow_clients is not None:
            self.allow_clients = tuple(self.allow_clients)
        if self.regions and self.roi is None:
            raise InputError("--region picks regions of --roi's atlas: pass --roi NAME too")
        if self.roi is not None:
            from tribe_stream.atlases import open_atlas

            roi = (self.roi,) if isinstance(self.roi, str) else tuple(self.roi)
            if len(roi) not in (1, 2):
                raise InputError("--roi takes an atlas name or two annotations (left, right)")
            one = roi[0] if len(roi) == 1 else None
            # a bad atlas or region fails here, before models load
            self._atlas = open_atlas(one, None if one else roi, self.regions)
        if self.payload_dtype not in ("float16", "float32"):
            raise InputError(f"payload dtype {self.payload_dtype!r}: use float16 or float32")
        if self.allow_clients and not self.curve_secret:
            raise InputError("--allow-client needs CURVE: pass --curve-secret too")
        return self

    def publisher(self, **kwargs: Any):
        from tribe_stream.publish import Publisher

        return Publisher(
            self.url,
            dtype=self.payload_dtype,
            stream_id=self.stream_id,
            curve_secret_key=self.curve_secret,
            allowed_client_keys=list(self.allow_clients) if self.allow_clients else None,
            atlas=getattr(self, "_atlas", None),
            **kwargs,
        )
