"""V-JEPA2 video extractor on the tiny random-weight demo model, loaded with `from_pretrained`."""

from __future__ import annotations

import copy

import av
import numpy as np
import pytest
import torch

from tribe_stream.errors import InputError
from tribe_stream.extractors.demo import DEMO_SHAPE, demo_config, demo_extractors_path
from tribe_stream.extractors.timing import clip_sample_times, select_frames
from tribe_stream.extractors.video import (
    VideoExtractor,
    VideoPreprocess,
    preprocess_frames,
    resized_shape,
)
from tribe_stream.media import iter_video_frames


@pytest.fixture(scope="module")
def video() -> VideoExtractor:
    paths = demo_extractors_path()
    return VideoExtractor.from_pretrained(paths.video, demo_config().video, device="cpu")


def write_video(path, n_frames: int, fps: int = 16, size=(96, 72)) -> None:
    """A small H.264 file whose frames differ (moving bar, changing colour)."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(n_frames):
            img = np.zeros((size[1], size[0], 3), np.uint8)
            img[..., 0] = (i * 7) % 256
            img[:, (i * 5) % (size[0] - 10) :][:, :10] = 255
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def test_sizes_come_from_the_model_folder(video):
    assert video.prep == VideoPreprocess(resize=36, crop=32)
    assert video.shape == DEMO_SHAPE and video.groups == [[1], [2, 3]]
    assert resized_shape(480, 640, 292) == (292, 389) and resized_shape(640, 480, 292) == (389, 292)


def test_preprocessing_crops_the_centre_and_normalises():
    prep = VideoPreprocess(resize=8, crop=4)
    frame = np.zeros((1, 8, 16, 3), np.uint8)
    frame[0, :, :, :] = (np.arange(16) * 16).astype(np.uint8)[None, :, None]  # column ramp
    x = preprocess_frames(frame, prep, "cpu")
    assert x.shape == (1, 3, 4, 4)
    cols = x[0, 0, 0] * prep.std[0] + prep.mean[0]  # back to [0, 1]
    np.testing.assert_allclose(cols.numpy() * 255, np.arange(6, 10) * 16, atol=1e-3)  # columns 6..9
    gray = preprocess_frames(np.full((2, 40, 40, 3), 128, np.uint8), VideoPreprocess(36, 32), "cpu")
    expect = (128 / 255 - np.array(prep.mean)) / np.array(prep.std)
    np.testing.assert_allclose(gray[1, :, 5, 7].numpy(), expect, rtol=1e-6)
    with pytest.raises(InputError, match="uint8"):
        preprocess_frames(np.zeros((2, 8, 8, 3), np.float32), prep, "cpu")


def test_encoder_equals_the_models_own_hidden_states(video):
    torch.manual_seed(0)
    pix = torch.randn(2, 64, 3, 32, 32)
    with torch.inference_mode():
        states = video.model(pixel_values_videos=pix, output_hidden_states=True).hidden_states
    assert len(states) == video.model.config.num_hidden_layers + 1
    ref = torch.stack(
        [torch.stack([states[i] for i in g]).mean(0).mean(1) for g in video.groups], 1
    )
    np.testing.assert_allclose(video.encode(pix), ref.numpy(), atol=1e-5)


def test_every_layer_of_the_trunk_equals_the_models_own(video):
    """The readable trunk (tubelet embedding as one product, fused query/key/value, rotary tables
    made once; head 32: 3 segments of 10 + 2 kept) against the untouched model, state by state."""
    enc = video.encoder
    torch.manual_seed(1)
    pix = torch.randn(1, 64, 3, 32, 32)
    with torch.inference_mode():
        ref = video.model(pixel_values_videos=pix, output_hidden_states=True).hidden_states
        h = enc.embed(pix)
        cos, sin = enc.rope(h.shape[1], h.device)
        ours = [h]
        for layer in enc.layers:
            ours.append(layer(ours[-1], cos, sin))
    assert cos.shape == (128, 32) and (cos[:, 30:] == 1).all() and (sin[:, 30:] == 0).all()
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


FP8_CASES = [("cpu", "products"), ("cuda", "products"), ("cuda", "attention")]


@pytest.mark.parametrize(("device", "fp8"), FP8_CASES, ids=["cpu", "cuda", "cuda-attention"])
def test_fp8_products_stay_close_to_full_precision(video, device, fp8):
    """`fp8="products"`: every matrix product of the encoder in e4m3 (per-channel weight scales, per-token
    activation scales), the rest in bfloat16; the features stay within a few percent. On a GPU
    the norms, GELU and attention scales go through the Triton kernels (`fp8_kernels.py`);
    `"attention"`: attention in FP8 too (cuDNN), with the fused residual + norm."""
    from tribe_stream.extractors.fp8 import Fp8Linear, VideoFp8, refusal

    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    if why := refusal(VideoFp8(fp8), device):
        pytest.skip(why)
    model = copy.deepcopy(video.model)  # the extractor moves its model to the device
    fp8x = VideoExtractor(model, video.settings, video.prep, device=device, fp8=fp8)
    assert isinstance(fp8x.encoder.layers[0].fc1, Fp8Linear)
    assert fp8x.encoder.layers[0].fc1.weight.dtype == torch.float8_e4m3fn
    torch.manual_seed(2)
    pix = torch.randn(2, 64, 3, 32, 32)
    ref, got = video.encode(pix), fp8x.encode(pix)
    err = np.abs(got - ref).max() / np.abs(ref).max()
    limit = 5e-2 if fp8 == "products" else 1.5e-1  # FP8 attention: about twice the products' error
    assert 1e-4 < err < limit, err  # really quantised, still close
    assert video.encoder.layers[0].fc1.weight.dtype == torch.float32  # the fp32 extractor untouched


def test_extract_picks_frames_and_batches_bins(video):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (70, 40, 56, 3), dtype=np.uint8)
    times = np.arange(70) / 16 + 0.01
    ends = [0.5, 2.0, 4.0]
    out = video.extract(ends, frames, times)
    assert out.shape == (3, *DEMO_SHAPE) and out.dtype == np.float32
    idx = select_frames(clip_sample_times(ends), times)
    assert idx[0, 0] == 0 and idx[2, -1] == 63  # clamped at the start; frame 63 is at 3.9475 s
    manual = video.extract_clips(frames[idx])
    np.testing.assert_allclose(out, manual, atol=1e-5)
    one_by_one = np.concatenate([video.extract([t], frames, times) for t in ends])
    np.testing.assert_allclose(out, one_by_one, atol=1e-5)
    assert not np.allclose(out[1], out[2])
    with pytest.raises(InputError, match="one time each"):
        video.extract(ends, frames, times[:-1])


def test_file_extraction_streams_the_same_frames(video, tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, n_frames=48, fps=16)  # 3 s
    feats = video.extract_file(path)
    assert feats.shape == (*DEMO_SHAPE, 6)
    decoded = list(iter_video_frames(path))
    times = np.array([t for t, _ in decoded])
    frames = np.stack([f for _, f in decoded])
    expect = video.extract((np.arange(6) + 1) * 0.5, frames, times)
    np.testing.assert_allclose(feats, expect.transpose(1, 2, 0), atol=1e-5)
    assert video.extract_file(path, n_bins=8)[..., 6:].std() > 0  # past the end: the last frame
    assert video.last_gpu_seconds is None  # on the CPU: no GPU time to report


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_file_extraction_on_the_gpu_reports_its_busy_time(video, tmp_path):
    """On a GPU the same features, and how long the batches held it (between 0 and the wall)."""
    import time

    path = tmp_path / "clip.mp4"
    write_video(path, n_frames=48, fps=16)
    gpu = VideoExtractor(copy.deepcopy(video.model), video.settings, video.prep, device="cuda")
    t0 = time.perf_counter()
    feats = gpu.extract_file(path)
    wall = time.perf_counter() - t0
    np.testing.assert_allclose(feats, video.extract_file(path), atol=1e-3)
    assert 0 < gpu.last_gpu_seconds < wall


def test_batched_bins_of_several_streams_share_one_forward(video):
    rng = np.random.default_rng(1)
    clips = rng.integers(0, 256, (3, 64, 36, 36, 3), dtype=np.uint8)
    together = video.extract_clips(clips)
    apart = np.concatenate([video.extract_clips(c[None]) for c in clips])
    np.testing.assert_allclose(together, apart, atol=1e-5)


def fed_live(extractor, seed: int, n: int, chunk: int, prepared: bool = False):
    """A `LiveVideo` fed `n` random 40x56 frames at 16 fps, `chunk` at a time (with them);
    `prepared`: each chunk prepared in the worker threads first, as a live stream's are."""
    from tribe_stream.extractors.video import LiveVideo

    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n, 40, 56, 3), dtype=np.uint8)
    times = np.arange(n) / 16 + 0.01
    live = LiveVideo(extractor)
    for i in range(0, n, chunk):
        part = frames[i : i + chunk]
        live.feed(part, times[i : i + chunk], live.prepare(part) if prepared else None)
    return live, frames, times


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_frames_prepared_in_the_workers_are_the_loops_own(video, device):
    """`LiveVideo.prepare` (a live stream's frames resized, cropped and sent to the device off
    the loop's thread) gives the frames `feed` makes itself, bit for bit; out-of-order frames
    of a prepared chunk are still left out, and a bad chunk fails where it is fed."""
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    if device == "cuda":
        video = VideoExtractor(
            copy.deepcopy(video.model), video.settings, video.prep, device="cuda"
        )
    own, frames, times = fed_live(video, seed=4, n=40, chunk=6)
    workers, _, _ = fed_live(video, seed=4, n=40, chunk=6, prepared=True)
    assert workers._times == own._times and len(workers._pixels) == len(own._pixels) == 40
    assert all(torch.equal(a, b) for a, b in zip(workers._pixels, own._pixels, strict=True))
    mixed = np.concatenate([times[38:], times[:2] + 10])  # two stale, two new
    workers.feed(frames[:4], mixed, workers.prepare(frames[:4]))
    assert workers.counters == {"frames": 42, "out_of_order_frames": 2}
    assert torch.equal(workers._pixels[-1], own._crops(frames[3:4])[0])
    with pytest.raises(InputError, match="uint8"):
        workers.feed(
            frames[:2].astype(np.float32),
            [20.0, 20.1],
            workers.prepare(frames[:2].astype(np.float32)),
        )


def test_live_video_preprocesses_each_frame_once_and_matches(video):
    live, frames, times = fed_live(video, seed=2, n=120, chunk=8)  # 7.5 s
    assert len(live._times) < 120  # older frames left the ring
    out = live.extract([7.0, 7.5])
    np.testing.assert_allclose(out, video.extract([7.0, 7.5], frames, times), atol=1e-5)
    live.feed(frames[:2], times[:2])  # stale frames: counted, not used
    assert live.counters == {"frames": 120, "out_of_order_frames": 2}


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_live_frames_are_kept_as_uint8_and_clips_are_the_processors_pixels(video, device):
    """Frames are held resized and cropped as uint8 on the model's device (moved there through
    pinned memory on a GPU, so the copy never waits for the GPU's queue); a clip normalised at
    encoding time is bit for bit the processor's pixels (`preprocess_frames`) of its frames."""
    from tribe_stream.extractors.video import _clip_frames, preprocess_frames

    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    ex = (
        video
        if device == "cpu"
        else VideoExtractor(copy.deepcopy(video.model), video.settings, video.prep, device="cuda")
    )
    live, frames, times = fed_live(ex, seed=3, n=80, chunk=5)  # 5 s
    assert {p.dtype for p in live._pixels} == {torch.uint8}
    assert {p.device.type for p in live._pixels} == {device}
    assert live._pixels[0].shape == (3, ex.prep.crop, ex.prep.crop)
    clips = live.clips([4.5])
    used, inverse = _clip_frames(ex, np.array([4.5]), live._times, live.start)
    shown = np.searchsorted(times, np.asarray(live._times)[used][inverse[0]])
    want = preprocess_frames(frames[shown], ex.prep, device)
    assert torch.equal(clips.pixels(0, ex.prep, torch.float32), want)
    if device == "cuda":  # and the features: as the offline path's, from the same frames
        np.testing.assert_allclose(
            live.extract([4.5, 5.0]), ex.extract([4.5, 5.0], frames, times), atol=1e-4
        )
