"""Offline video timing, frame picks and preprocessing against the official pipeline's own values.

The references in `tests/fixtures/official/` (`video_clips.npz`, `video_pixels.npz`) were made by
`tools/make_official_fixtures_video.py` in the official venv (tribev2 7239908, neuralset 0.0.2,
moviepy, torchvision's uint8 resize); see `tests/fixtures/official/README.video.md`.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from tribe_stream.extractors.demo import demo_config, demo_extractors_path
from tribe_stream.extractors.timing import (
    clip_sample_times,
    offline_clip_plan,
    reader_duration,
    reader_picks,
)
from tribe_stream.extractors.video import (
    VideoExtractor,
    VideoPreprocess,
    preprocess_frames,
    resize_frames,
)
from tribe_stream.media import iter_video_frames, probe

OFFICIAL = Path(__file__).parent / "fixtures" / "official"
BLOCK, COLS, ROWS = 8, 4, 3  # the index frames of the fixture script: 12 black/white blocks


@pytest.fixture(scope="module")
def clips() -> dict[str, np.ndarray]:
    with np.load(OFFICIAL / "video_clips.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def video() -> VideoExtractor:
    paths = demo_extractors_path()
    return VideoExtractor.from_pretrained(paths.video, demo_config().video, device="cpu")


def index_frame(i: int) -> np.ndarray:
    """A frame showing `i` in binary, bit b as the block at row b // COLS, column b % COLS."""
    img = np.zeros((ROWS * BLOCK, COLS * BLOCK, 3), np.uint8)
    for b in range(COLS * ROWS):
        if (i >> b) & 1:
            r, c = divmod(b, COLS)
            img[r * BLOCK : (r + 1) * BLOCK, c * BLOCK : (c + 1) * BLOCK] = 255
    return img


def frame_index(img: np.ndarray) -> int:
    blocks = img.astype(np.float64).mean(-1).reshape(ROWS, BLOCK, COLS, BLOCK).mean((1, 3))
    return int(sum(1 << b for b, on in enumerate(blocks.reshape(-1) > 127) if on))


def write_index_video(path: Path, n_frames: int, fps: int) -> None:
    """The fixture script's test video (lossless H.264, each frame showing its index)."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps, options={"qp": "0"})
        s.width, s.height, s.pix_fmt = COLS * BLOCK, ROWS * BLOCK, "yuv444p"
        for i in range(n_frames):
            for p in s.encode(av.VideoFrame.from_ndarray(index_frame(i), format="rgb24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)


def decoded(path: Path) -> tuple[np.ndarray, np.ndarray]:
    pairs = list(iter_video_frames(path))
    return np.array([t for t, _ in pairs]), np.stack([f for _, f in pairs])


def test_chunks_and_clip_ends_are_the_official_ones(clips):
    """ChunkEvents' chunks and each bin's clip end, `c0 + linspace(0, length, n+1)[1:]`: off the
    0.5 s grid in a chunk whose length is not a multiple of 0.5 s (every last chunk here but the
    61 s one), where the grid ends of before were up to 0.2 s off."""
    for key in ("5.3s", "61s", "95.3s", "130.3s", "150.7s"):
        n_frames, fps = clips[f"{key}/frames_fps"]
        plan = offline_clip_plan(reader_duration(n_frames / fps))
        ends, chunks = clips[f"{key}/ends"], clips[f"{key}/chunks"]
        assert plan.bins.tolist() == list(range(len(ends))), key
        np.testing.assert_array_equal(plan.ends, ends, err_msg=key)
        assert np.unique(plan.starts).tolist() == chunks[:, 0].tolist(), key
        per_chunk = [int((plan.starts == c0).sum()) for c0 in chunks[:, 0]]
        assert per_chunk == [round(2 * d) for d in chunks[:, 1]], key


def test_reader_duration_is_ffmpegs_centiseconds():
    assert reader_duration(5.3) == 5.3 and reader_duration(95.3) == 95.3
    assert reader_duration(5.334) == 5.33 and reader_duration(5.335) == 5.34  # half up
    assert reader_duration(3725.456789) == 3725.46  # 01:02:05.46


@pytest.mark.parametrize("key", ["5.3s", "95.3s"])
def test_frame_picks_are_the_official_readers(clips, key, tmp_path):
    """Every frame moviepy returned for every sample of every clip, from our decoded stamps: the
    latest frame at `t + 1e-5` frames, and past the last frame the frame read before it (5.3 s at
    30 fps: the last sample, at 5.3 s, shows frame 157, not the last frame 158)."""
    n_frames, fps = (int(x) for x in clips[f"{key}/frames_fps"])
    path = tmp_path / "index.mp4"
    write_index_video(path, n_frames, fps)
    info = probe(path)
    times, frames = decoded(path)
    assert [frame_index(f) for f in frames] == list(range(n_frames))
    plan = offline_clip_plan(reader_duration(info.duration))
    samples = clip_sample_times(plan.ends, 64, 4.0, plan.starts)
    np.testing.assert_array_equal(reader_picks(samples, times, info.fps), clips[f"{key}/picks"])


def test_file_features_show_the_official_frames(clips, video, tmp_path):
    """`extract_file` on the 5.3 s clip equals the encoder on the clips of the frames the official
    reader returned (the old grid timing and last-frame rule differ in 477 of 704 samples)."""
    n_frames, fps = (int(x) for x in clips["5.3s/frames_fps"])
    path = tmp_path / "index.mp4"
    write_index_video(path, n_frames, fps)
    _, frames = decoded(path)
    feats = video.extract_file(path)
    expect = video.extract_clips(frames[clips["5.3s/picks"].astype(np.int64)])
    assert feats.shape[-1] == len(expect) == 11
    np.testing.assert_allclose(feats, expect.transpose(1, 2, 0), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["down", "up"])
def test_resize_and_pixels_are_the_official_processors(name):
    """torchvision's uint8 antialiased resize bit for bit, the crop offset truncated (31 px wide
    to 16: from column 7) and the fused normalisation, on a shrunk and an enlarged image."""
    with np.load(OFFICIAL / "video_pixels.npz") as z:
        prep = VideoPreprocess(int(z["resize"]), int(z["crop"]))
        image, resized, pixels = z[f"{name}/image"], z[f"{name}/resized"], z[f"{name}/pixels"]
    ours = resize_frames(image[None], prep)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(ours, resized)
    np.testing.assert_array_equal(preprocess_frames(image[None], prep, "cpu")[0].numpy(), pixels)
