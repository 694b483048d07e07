"""Video features: V-JEPA2 over the 4 s clip ending at each bin, mean over tokens, layer groups.

For each bin ending at t, 64 frames sampled at `t - 4*(63-j)/64` (the frame shown at that instant,
clamped at the start), resized as uint8 (torchvision's antialiased bilinear kernel), centre-cropped,
ImageNet normalised, run through the V-JEPA2 encoder, each needed hidden state averaged over all
tokens. Offline, bins follow the official chunks and reader (`extract_file`); live, the 0.5 s grid.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tribe_stream.devices import pick_dtype, upload
from tribe_stream.errors import InputError
from tribe_stream.extractors.accel import compile_blocks, sdpa_context
from tribe_stream.extractors.config import ModalitySettings
from tribe_stream.extractors.fp8 import VideoFp8
from tribe_stream.extractors.fp8 import refusal as fp8_refusal
from tribe_stream.extractors.grouped import GroupedExtractor, unwrap
from tribe_stream.extractors.loading import load_pretrained, locate
from tribe_stream.extractors.timing import (
    FRAME_EPS,
    READER_EPS_FRAMES,
    bin_end_times,
    clip_sample_times,
    n_bins_for,
    offline_clip_plan,
    reader_duration,
    select_frames,
)
from tribe_stream.extractors.video_encoder import VideoTrunk
from tribe_stream.media import NothingDecoded, iter_video_frames, media_duration, probe, read_ahead

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PROCESSOR_FILES = ("video_preprocessor_config.json", "preprocessor_config.json")
RESCALE_FACTOR = 1 / 255


@dataclass(frozen=True)
class VideoPreprocess:
    """Resize (shortest edge), centre crop and normalisation of the video processor."""

    resize: int = 292
    crop: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def from_folder(cls, folder: Path, crop_size: int | None = None) -> VideoPreprocess:
        """From the folder's video processor config, else from the model's crop size. The resize
        is always `int(crop·256/224)`: `VJEPA2VideoProcessor` sets it so, whatever the config's
        `size` says."""
        found = [folder / n for n in PROCESSOR_FILES if (folder / n).is_file()]
        cfg = json.loads(found[0].read_text()) if found else {}
        crop = cfg.get("crop_size", crop_size or 256)
        crop = int(crop["height"] if isinstance(crop, dict) else crop)
        mean = tuple(cfg.get("image_mean") or IMAGENET_MEAN)
        std = tuple(cfg.get("image_std") or IMAGENET_STD)
        return cls(int(crop * 256 / 224), crop, mean, std)  # type: ignore[arg-type]

    def to_json(self) -> dict:
        """The processor config `VJEPA2VideoProcessor` writes (so the folder also loads with transformers)."""
        return {
            "video_processor_type": "VJEPA2VideoProcessor",
            "crop_size": {"height": self.crop, "width": self.crop},
            "size": {"shortest_edge": self.resize},
            "do_resize": True,
            "do_center_crop": True,
            "do_rescale": True,
            "rescale_factor": RESCALE_FACTOR,
            "do_normalize": True,
            "image_mean": list(self.mean),
            "image_std": list(self.std),
            "resample": 2,
        }


def resized_shape(height: int, width: int, shortest: int) -> tuple[int, int]:
    """Output size when the shortest edge becomes `shortest` (long edge truncated, as transformers)."""
    if height <= width:
        return shortest, int(shortest * width / height)
    return int(shortest * height / width), shortest


def resize_frames(frames: np.ndarray | torch.Tensor, prep: VideoPreprocess) -> torch.Tensor:
    """`(N, H, W, 3)` uint8 -> `(N, 3, h, w)` uint8 on the CPU, the shortest edge `prep.resize`:
    torch's antialiased bilinear uint8 kernel, bit for bit the official processor's (a float resize
    differs by a grey level); CPU only, and it leaves a smaller frame to copy to the GPU."""
    x = torch.as_tensor(frames)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise InputError(f"video frames must be uint8 (N, H, W, 3), got {tuple(x.shape)} {x.dtype}")
    x = x.cpu().permute(0, 3, 1, 2)  # channels-last in memory: the kernel's fast layout
    h, w = x.shape[-2:]
    nh, nw = resized_shape(h, w, prep.resize)
    if (nh, nw) == (h, w):
        return x
    return torch.nn.functional.interpolate(
        x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True
    )


def _check_frames(frames: np.ndarray, n_times: int) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) != n_times:
        raise InputError(
            f"frames must be (N, H, W, 3) with one time each; got {frames.shape} and {n_times} times"
        )
    return frames


def _clip_frames(ex: VideoExtractor, ends, frame_times, t_min) -> tuple[np.ndarray, np.ndarray]:
    """The frames the clips show (indices into `frame_times`), each sample's index into them."""
    samples = clip_sample_times(ends, ex.n_frames, ex.settings.clip_seconds, t_min)
    idx = select_frames(samples, frame_times)
    used, inverse = np.unique(idx, return_inverse=True)
    return used, inverse.reshape(idx.shape)


def crop_frames(resized: torch.Tensor, prep: VideoPreprocess) -> torch.Tensor:
    """Resized `(N, 3, h, w)` uint8 -> its centre crop `(N, 3, crop, crop)` uint8 (a view; the
    top-left offset truncated, as transformers 5 crops)."""
    nh, nw = resized.shape[-2:]
    if nh < prep.crop or nw < prep.crop:
        raise InputError(f"frames resized to {nh}x{nw} are smaller than the {prep.crop} px crop")
    top, left = int((nh - prep.crop) / 2.0), int((nw - prep.crop) / 2.0)
    return resized[:, :, top : top + prep.crop, left : left + prep.crop]


def normalise_pixels(x: torch.Tensor, prep: VideoPreprocess) -> torch.Tensor:
    """Cropped uint8 `(..., 3, crop, crop)` -> float32 on its device: the processor's fused
    rescale and normalisation, `(x - 255·mean) / (255·std)`."""
    mean, std = _normalisation(prep, x.device)
    return (x.float() - mean) / std


def normalise_frames(
    resized: torch.Tensor, prep: VideoPreprocess, device: str | torch.device
) -> torch.Tensor:
    """Resized `(N, 3, h, w)` uint8 -> `(N, 3, crop, crop)` float32 on `device`: the centre crop
    (`crop_frames`) and the normalisation (`normalise_pixels`)."""
    return normalise_pixels(crop_frames(resized, prep).to(device, non_blocking=True), prep)


def preprocess_frames(
    frames: np.ndarray | torch.Tensor, prep: VideoPreprocess, device: str | torch.device
) -> torch.Tensor:
    """`(N, H, W, 3)` uint8 -> `(N, 3, crop, crop)` float32 normalised on `device`: the official
    processor's resize (`resize_frames`), crop and normalisation (`normalise_frames`)."""
    return normalise_frames(resize_frames(frames, prep), prep, device)


@functools.cache
def _normalisation(
    prep: VideoPreprocess, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """`255·mean` and `255·std` `(1, 3, 1, 1)` float32 on `device` (the products rounded as the
    processor rounds them), made once (not copied per frame)."""
    scale = 1.0 / RESCALE_FACTOR
    mean = (torch.tensor(prep.mean) * scale).to(device).view(1, 3, 1, 1)
    return mean, (torch.tensor(prep.std) * scale).to(device).view(1, 3, 1, 1)


class VideoExtractor(GroupedExtractor):
    """V-JEPA2 video features per 0.5 s bin: `(n_bins, L, D)` float32 from frames and their times."""

    def __init__(
        self,
        model: nn.Module,
        settings: ModalitySettings,
        prep: VideoPreprocess,
        *,
        device: str = "cpu",
        compile: bool = False,
        max_batch: int | None = None,
        attention: Sequence[str] | None = None,
        fp8: VideoFp8 | bool | str = VideoFp8.OFF,
    ):
        self._setup(model, settings, device)
        self.prep = prep
        self.dtype = next(model.parameters()).dtype
        self.fp8 = fp8 = VideoFp8.coerce(fp8)
        if why := fp8_refusal(fp8, device):
            raise InputError(why)
        with torch.no_grad():
            self.encoder = VideoTrunk(model.to(device), self.groups, fp8=fp8).to(device).eval()
        if compile:
            compile_blocks(self.encoder.layers)
        self.attention = tuple(attention) if attention else None
        self.max_batch = max_batch or (4 if device.startswith("cuda") else 2)
        # seconds the last `extract_file` kept the GPU busy (None: not on a GPU yet)
        self.last_gpu_seconds: float | None = None
        self.n_frames = settings.num_frames

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike | None = None,
        settings: ModalitySettings | None = None,
        *,
        device: str | None = "auto",
        dtype: torch.dtype | str | None = None,
        compile: bool = False,
        max_batch: int | None = None,
        attention: Sequence[str] | None = None,
        fp8: VideoFp8 | bool | str = VideoFp8.OFF,
    ) -> VideoExtractor:
        """Load a `VJEPA2Model` folder / cached hub id (default: the settings' model name).

        `fp8`: how much of the encoder runs in FP8 (`fp8.VideoFp8`: its matrix products, faster
        on an H100, features within about 2% of half precision; or its attention too, cuDNN)."""
        from transformers import VJEPA2Model

        settings, folder, dev = locate(name_or_path, settings, "video", device)
        model = load_pretrained(
            VJEPA2Model, folder, "V-JEPA2 video model", dtype=pick_dtype(dev, dtype)
        )
        prep = VideoPreprocess.from_folder(folder, getattr(model.config, "crop_size", None))
        return cls(
            model.to(dev),
            settings,
            prep,
            device=dev,
            compile=compile,
            max_batch=max_batch,
            attention=attention,
            fp8=fp8,
        )

    # -- core -----------------------------------------------------------------------------------

    @torch.inference_mode()
    def encode_on_device(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised clips `(B, n_frames, 3, crop, crop)`, B <= `max_batch` -> `(B, L, D)`
        float32 on the model's device, without waiting for the GPU to finish."""
        with sdpa_context(self.attention):
            return self.encoder(pixels.to(self.device, self.dtype)).float()

    def encode(self, pixels: torch.Tensor) -> np.ndarray:
        """Normalised clips `(B, n_frames, 3, crop, crop)` -> `(B, L, D)` float32, batched."""
        outs = [
            self.encode_on_device(pixels[i : i + self.max_batch]).cpu()
            for i in range(0, pixels.shape[0], self.max_batch)
        ]
        if not outs:
            return np.zeros((0, *self.shape), np.float32)
        return torch.cat(outs).numpy()

    def extract_clips(self, clips: np.ndarray) -> np.ndarray:
        """Raw clips `(B, n_frames, H, W, 3)` uint8 -> `(B, L, D)` float32."""
        clips = np.asarray(clips)
        if clips.ndim != 5:
            raise InputError(f"clips must be (B, n_frames, H, W, 3) uint8, got {clips.shape}")
        b, f = clips.shape[:2]
        with torch.inference_mode():
            pix = preprocess_frames(clips.reshape(b * f, *clips.shape[2:]), self.prep, self.device)
        return self.encode(pix.reshape(b, f, *pix.shape[1:]))

    def extract(
        self,
        bin_ends: Sequence[float] | np.ndarray,
        frames: np.ndarray,
        frame_times: Sequence[float] | np.ndarray,
        t_min: float | Sequence[float] = 0.0,
    ) -> np.ndarray:
        """Features of the bins ending at `bin_ends`, from frames `(N, H, W, 3)` uint8 stamped `frame_times`.

        Each bin's clip takes the frame shown at each of its 64 sample times (the latest frame at
        or before it; the first frame for times before it). Frames are preprocessed once even when
        clips share them, and all bins go through the model in batches of `max_batch`.
        """
        ends = np.asarray(bin_ends, dtype=np.float64).reshape(-1)
        frames = _check_frames(frames, len(frame_times))
        if ends.size == 0:
            return np.zeros((0, *self.shape), np.float32)
        used, inverse = _clip_frames(self, ends, frame_times, t_min)
        with torch.inference_mode():
            pix = preprocess_frames(frames[used], self.prep, self.device)
            clips = pix[torch.as_tensor(inverse, device=pix.device)]
        return self.encode(clips)

    # -- offline --------------------------------------------------------------------------------

    def extract_file(
        self,
        path: str | os.PathLike,
        n_bins: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        counters=None,
    ) -> np.ndarray:
        """A whole video file -> `(L, D, T)` float32, T = number of 2 Hz bins. Packets and
        frames that fail to decode are skipped (counted in `counters`, a `media.DecodeCounters`).

        Clip timing as the official offline pipeline (`timing.offline_clip_plan`,
        `timing.reader_picks`); bins past the video's chunks (a longer sound) keep clips ending
        on the grid. Frames are decoded once, in order; only those some clip shows are resized
        (in the decoding thread) and preprocessed. Batches are queued on the GPU without waiting
        for each result, so decoding, preprocessing and the model overlap.
        """
        info = probe(path)
        if not info.has_video:
            raise InputError(f"{path} has no video stream")
        duration = media_duration(path, info)
        total = n_bins if n_bins is not None else n_bins_for(duration)
        out = np.zeros((*self.shape, total), np.float32)
        if total == 0:
            return out
        plan = offline_clip_plan(
            reader_duration(duration),
            self.settings.chunk_max_seconds,
            self.settings.chunk_min_seconds,
        )
        ends = bin_end_times(np.arange(total))
        starts = np.zeros(total)
        inside = plan.bins < total
        ends[plan.bins[inside]] = plan.ends[inside]
        starts[plan.bins[inside]] = plan.starts[inside]
        samples = clip_sample_times(ends, self.n_frames, self.settings.clip_seconds, starts)
        fps = info.fps if info.fps and info.fps > 0 else None
        eps = READER_EPS_FRAMES / fps if fps else FRAME_EPS
        # uniq + eps: the stamp a frame needs to be shown at each sample time
        uniq, slot = np.unique(samples, return_inverse=True)
        slot = slot.reshape(samples.shape)
        due = uniq + eps
        last_slot = slot.max(axis=1)
        assigned: dict[int, torch.Tensor] = {}
        past: np.ndarray | None = None  # per slot, once the last frame is known: past its end
        last_read: list = [None]  # pixels of the latest sample before the end, in reading order
        k, done = 0, 0
        prev: torch.Tensor | None = None
        cache: list = [None, None]  # (frame, its preprocessed pixels): each frame preprocessed once
        pending: list[tuple] = []  # (first bin, end bin, features, copied event)

        # Frames are preprocessed on a CUDA stream of their own: a copy from pageable memory
        # may wait for all work queued before it on its stream, and on the encoder's stream that
        # is whole batches, during which decoding would stall and the GPU then starve.
        cuda = torch.device(self.device).type == "cuda"
        side = torch.cuda.Stream(self.device) if cuda else None
        spans: list = []  # (start, end) events of each batch on the encoder's stream

        def preprocess(frame: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode(), torch.cuda.stream(side) if cuda else nullcontext():
                pix = normalise_frames(frame, self.prep, self.device)[0].to(self.dtype)
            if cuda:  # read later on the encoder's stream: not reused before that
                pix.record_stream(torch.cuda.current_stream(self.device))
            return pix

        def assign_until(limit: float, frame: torch.Tensor | None) -> None:
            """`frame` is the one shown at every remaining sample time before `limit`."""
            nonlocal k
            while k < len(uniq) and due[k] < limit:
                if cache[0] is not frame:
                    cache[:] = [frame, preprocess(frame)]
                assigned[k] = cache[1]
                k += 1

        def launch(clips: torch.Tensor) -> tuple[torch.Tensor, torch.cuda.Event | None]:
            """Queue one batch and the copy of its features to the host, right behind it (a
            plain `.cpu()` later would wait for every batch queued since, emptying the GPU's
            queue while the next batch's frames are decoded). Returns the features and an
            event to wait for (None on the CPU: already there)."""
            if not cuda:
                return self.encode_on_device(clips), None
            stream = torch.cuda.current_stream(self.device)
            began = torch.cuda.Event(enable_timing=True)
            began.record(stream)
            feats = self.encode_on_device(clips)
            host = feats.to("cpu", non_blocking=True)  # into pinned memory, asynchronously
            copied = torch.cuda.Event(enable_timing=True)
            copied.record(stream)
            spans.append((began, copied))
            return host, copied

        def drain(keep: int = 0) -> None:
            """Copy finished batches to `out` until at most `keep` are still queued."""
            while len(pending) > keep:
                lo, hi, feats, copied = pending.pop(0)
                if copied is not None:
                    copied.synchronize()
                out[..., lo:hi] = feats.numpy().transpose(1, 2, 0)
                if progress:
                    progress(hi, total)

        def clip(b: int) -> torch.Tensor:
            """Bin b's clip; a sample past the last frame repeats the reader's last read."""
            frames = []
            for s in slot[b]:
                if past is not None and past[s] and last_read[0] is not None:
                    frames.append(last_read[0])
                else:
                    frames.append(assigned[s])
                    last_read[0] = assigned[s]
            return torch.stack(frames)

        def flush(final: bool = False) -> None:
            nonlocal done
            while done < total:
                ready = done
                while ready < total and (last_slot[ready] < k or final):
                    ready += 1
                if ready == done or (ready - done < self.max_batch and not final):
                    return  # wait for a full batch (or the end)
                stop = min(ready, done + self.max_batch)
                if cuda:  # the clips' frames are preprocessed on the side stream
                    torch.cuda.current_stream(self.device).wait_stream(side)
                clips = torch.stack([clip(b) for b in range(done, stop)])
                pending.append((done, stop, *launch(clips)))
                drain(keep=2)  # wait only for an older batch: the GPU stays busy
                done = stop
                keep_from = slot[done].min() if done < total else len(uniq)
                for s in [s for s in assigned if s < keep_from]:
                    del assigned[s]

        def decoded():
            """`(time, resized frame or None when no sample shows it)`, one frame behind the
            decoder (a frame is shown until the next one's stamp)."""
            held = None
            for t, frame in iter_video_frames(path, counters=counters):
                if held is not None:
                    lo = held[0] if held[2] else -np.inf  # the first frame also shows earlier
                    shown = np.searchsorted(due, t) > np.searchsorted(due, lo)
                    yield held[0], resize_frames(held[1][None], self.prep) if shown else None
                held = (t, frame, held is not None)
            if held is not None:
                yield held[0], resize_frames(held[1][None], self.prep)

        times: list[float] = []  # the last two frame stamps (the frame period, without fps)
        for t, frame in read_ahead(decoded()):
            # sample times before the first frame clamp to it; later ones take the previous frame
            assign_until(t, frame if not times else prev)
            prev = frame
            times = [*times[-1:], t]
            flush()
            if done >= total:
                break
        if not times:
            raise NothingDecoded(f"{path}: no video frame could be decoded")
        assign_until(np.inf, prev)
        period = 1.0 / fps if fps else (times[-1] - times[0] if len(times) > 1 else np.inf)
        past = due >= times[-1] + period
        flush(final=True)
        drain()
        if cuda:  # how long the batches held the GPU: the rest of the file's time it was idle
            self.last_gpu_seconds = sum(a.elapsed_time(b) for a, b in spans) / 1000
        return out


_PREP_THREADS = 2
_prep_lock = threading.Lock()
_prep_executor: ThreadPoolExecutor | None = None


def _prep_pool() -> ThreadPoolExecutor:
    """The worker threads that prepare live frames, shared by every stream of the process."""
    global _prep_executor
    with _prep_lock:
        if _prep_executor is None:
            _prep_executor = ThreadPoolExecutor(_PREP_THREADS, thread_name_prefix="frames")
        return _prep_executor


class LiveVideo:
    """A live stream's recent frames, each resized, cropped and moved to the model's device once
    on arrival (uint8, smaller than a float copy), and its bins' features. A clip is
    normalised when it is encoded (`VideoClips.pixels`), the same arithmetic as offline.

    `feed(frames, times)` takes `(N, H, W, 3)` uint8 frames stamped on the stream clock (in order);
    `extract(bin_ends)` builds each bin's 64-frame clip from them (as `VideoExtractor.extract`) and
    runs all the bins in one batched forward. Frames older than the clip length are dropped.
    """

    def __init__(self, extractor: VideoExtractor, keep_seconds: float | None = None):
        self.ex = extractor
        self.keep_seconds = keep_seconds or extractor.settings.clip_seconds + 1.0
        self._times: list[float] = []
        self._pixels: list[torch.Tensor] = []
        self.start: float | None = None  # the stream's first frame time: clips clamp to it
        self.counters = {"frames": 0, "out_of_order_frames": 0}

    def prepare(self, frames: np.ndarray) -> Future:
        """Resize, crop and send `frames` to the model's device in a worker thread (torch's
        resize runs without the GIL), so that the loop's thread need not: `feed(...,
        prepared=...)` takes the result. Errors (frames of the wrong shape) come out there."""
        return _prep_pool().submit(self._crops, frames)

    def _crops(self, frames: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            crops = crop_frames(resize_frames(frames, self.ex.prep), self.ex.prep)
            return upload(crops.contiguous(), self.ex.device)

    def feed(
        self,
        frames: np.ndarray,
        times: Sequence[float] | np.ndarray,
        prepared: Future | None = None,
    ) -> None:
        """Add frames (uint8 `(N, H, W, 3)`) with their stream times; `prepared`: what
        `prepare(frames)` returned, else they are prepared here."""
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        frames = _check_frames(frames, len(times))
        keep = np.ones(len(times), bool)
        last = self._times[-1] if self._times else -np.inf
        for i, t in enumerate(times):
            if t <= last:
                keep[i] = False
            else:
                last = t
        self.counters["out_of_order_frames"] += int((~keep).sum())
        if not keep.any():
            return
        if prepared is None:
            self._pixels.extend(self._crops(frames[keep]).unbind(0))
        else:  # made in a worker from all the frames: those in order kept
            crops = prepared.result().unbind(0)
            self._pixels.extend(c for c, k in zip(crops, keep, strict=True) if k)
        self._times.extend(times[keep].tolist())
        self.counters["frames"] += int(keep.sum())
        if self.start is None:
            self.start = self._times[0]
        cutoff = self._times[-1] - self.keep_seconds
        drop = int(np.searchsorted(self._times, cutoff, side="left")) - 1  # keep one frame before
        if drop > 0:
            del self._times[:drop], self._pixels[:drop]

    @property
    def newest(self) -> float:
        """Stream time of the newest frame held (-inf when none)."""
        return self._times[-1] if self._times else -np.inf

    def extract(self, bin_ends: Sequence[float] | np.ndarray) -> np.ndarray:
        """`(n_bins, L, D)` for the bins ending at `bin_ends`, from the frames held."""
        return unwrap(encode_clips(self.ex, [self.clips(bin_ends)])[0])

    def clips(self, bin_ends: Sequence[float] | np.ndarray) -> VideoClips:
        """The clips of the bins ending at `bin_ends`, as references to the frames held now (so
        frames dropped later do not matter): encoded later, with other streams' clips."""
        ends = np.asarray(bin_ends, dtype=np.float64).reshape(-1)
        if not self._times:
            raise InputError("no video frame has arrived yet")
        if ends.size == 0:
            return VideoClips([], np.zeros((0, self.ex.n_frames), np.int64))
        used, inverse = _clip_frames(self.ex, ends, self._times, self.start or 0.0)
        return VideoClips([self._pixels[i] for i in used], inverse)


@dataclass
class VideoClips:
    """Some bins' 64-frame clips: clip i shows `frames[idx[i, j]]` at its j-th sample time.
    Frames are the stream's preprocessed ones, shared between overlapping clips (not copied)."""

    frames: list[torch.Tensor]
    idx: np.ndarray  # (n_bins, n_frames) int

    def __len__(self) -> int:
        return len(self.idx)

    def clip(self, i: int) -> torch.Tensor:
        """Clip i's frames `(n_frames, 3, crop, crop)` uint8."""
        return torch.stack([self.frames[j] for j in self.idx[i]])

    def pixels(self, i: int, prep: VideoPreprocess, dtype: torch.dtype) -> torch.Tensor:
        """Clip i normalised: the model's input `(n_frames, 3, crop, crop)` in `dtype`."""
        return normalise_pixels(self.clip(i), prep).to(dtype)


def encode_clips(extractor: VideoExtractor, sets: Sequence[VideoClips]) -> list[np.ndarray]:
    """`(n_bins, L, D)` for each set of clips: all clips, whichever stream they come from, go
    through V-JEPA2 together, `max_batch` per forward (a clip's features do not depend on the
    others in its batch). A set whose batch failed gets the exception in its place."""
    return launch_clips(extractor, sets, own_stream=False).result()


class PendingClips:
    """Sets of clips sent through V-JEPA2 and not waited for (`launch_clips`): on a GPU their
    forwards run on a stream of their own while the caller goes on; `ready()` asks without
    waiting, `result()` waits and gives what `encode_clips` gives. It holds the clips (and so
    their frames) until then: no frame is freed while the GPU may still read it."""

    def __init__(self, sets: Sequence[VideoClips], shape: tuple[int, int]):
        self.sets = list(sets)
        self.out: list = [np.zeros((len(c), *shape), np.float32) for c in self.sets]
        self.batches: list[tuple[list[tuple[int, int]], torch.Tensor]] = []
        self.done: torch.cuda.Event | None = None

    def ready(self) -> bool:
        return self.done is None or self.done.query()

    def result(self) -> list:
        if self.done is not None:
            self.done.synchronize()
        for batch, feats in self.batches:
            try:
                values = feats.cpu().numpy()  # a failure on the GPU surfaces here
            except Exception as exc:  # noqa: BLE001 - each set of the batch gets it
                values = exc
            for k, (s, i) in enumerate(batch):
                if isinstance(values, Exception):
                    self.out[s] = values
                elif isinstance(self.out[s], np.ndarray):
                    self.out[s][i] = values[k]
        self.batches, self.sets = [], []
        return self.out


def launch_clips(
    extractor: VideoExtractor, sets: Sequence[VideoClips], own_stream: bool = True
) -> PendingClips:
    """`encode_clips` without waiting: the forwards queued, the results to collect from the
    returned `PendingClips`. On a GPU with `own_stream`, on the extractor's own CUDA stream
    (after what the caller's stream queued before: the frames' uploads), so that the caller's
    next work does not queue behind them. Off the GPU they are computed here."""
    pending = PendingClips(sets, extractor.shape)
    refs = [(s, i) for s, c in enumerate(pending.sets) for i in range(len(c))]
    gpu = torch.device(extractor.device).type == "cuda"
    side = None
    if gpu and own_stream:
        side = getattr(extractor, "_side_stream", None)
        if side is None:
            side = extractor._side_stream = torch.cuda.Stream(device=extractor.device)
        side.wait_stream(torch.cuda.current_stream(extractor.device))
    with torch.cuda.stream(side) if side is not None else nullcontext():
        for lo in range(0, len(refs), extractor.max_batch):
            batch = refs[lo : lo + extractor.max_batch]
            batch = [(s, i) for s, i in batch if isinstance(pending.out[s], np.ndarray)]
            if not batch:
                continue
            try:
                with torch.inference_mode():
                    pixels = torch.stack(
                        [
                            pending.sets[s].pixels(i, extractor.prep, extractor.dtype)
                            for s, i in batch
                        ]
                    )
                    feats = extractor.encode_on_device(pixels)
            except Exception as exc:  # noqa: BLE001 - the caller counts it for each stream hit
                for s, _ in batch:
                    pending.out[s] = exc
                continue
            pending.batches.append((batch, feats))
        if gpu:
            pending.done = torch.cuda.Event()
            pending.done.record()  # on the stream the forwards went to
    return pending
