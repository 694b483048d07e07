"""Make tests/fixtures/official/video_*.npz and words_*.json from the official code.

Run in a venv with the official pipeline (`facebookresearch/tribev2` at 7239908, `neuralset==0.0.2`,
moviepy, torchvision, transformers), NOT in tribe-stream's venv:

    python tools/make_official_fixtures_video.py tests/fixtures/official

It imports only the official packages (plus numpy/torch) and runs their own code paths:

- `ChunkEvents(event_type_to_chunk="Video", max_duration=60, min_duration=30)` on videos of a few
  lengths, then neuralset's `HuggingFaceVideo` extractor on each chunk with a tiny random V-JEPA2
  saved with `save_pretrained`; every frame request (`_VideoImage`, read through moviepy) is
  recorded: the chunks, the time of each clip's newest frame, and which frame moviepy returned
  (each test frame shows its own index as 12 black/white blocks, so the index is read back from
  the pixels whatever the codec did);
- the official video processor (`AutoVideoProcessor`, torchvision's uint8 resize) on two small
  seeded images: the resized uint8 frame and the normalised pixels;
- neuralset's segment loading (`list_segments` + `SegmentDataset`, the official predict's 100 s
  windows) of words around a window edge, through a stand-in static extractor whose vector for
  each word is one-hot of its index (the placement code under test is neuralset's own).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import typing as tp
from pathlib import Path

import numpy as np

FPS_PICKS = 30  # frame rate of the clips whose frame picks are recorded
BLOCK = 8  # pixels per side of one index bit
COLS, ROWS = 4, 3  # 12 bits: indices up to 4095


def index_frame(i: int) -> np.ndarray:
    """A frame showing `i` as 12 blocks (bit b at row b // COLS, column b % COLS), white = 1."""
    img = np.zeros((ROWS * BLOCK, COLS * BLOCK, 3), np.uint8)
    for b in range(COLS * ROWS):
        if (i >> b) & 1:
            r, c = divmod(b, COLS)
            img[r * BLOCK : (r + 1) * BLOCK, c * BLOCK : (c + 1) * BLOCK] = 255
    return img


def frame_index(img: np.ndarray) -> int:
    """The index a frame shows (block means thresholded at mid-grey)."""
    img = np.asarray(img)[: ROWS * BLOCK, : COLS * BLOCK].astype(np.float64).mean(axis=-1)
    bits = img.reshape(ROWS, BLOCK, COLS, BLOCK).mean(axis=(1, 3)).reshape(-1) > 127
    return int(sum(1 << b for b, on in enumerate(bits) if on))


def write_video(path: Path, n_frames: int, fps: int) -> None:
    """An H.264 mp4 of `n_frames` index frames at `fps` (ffmpeg of imageio-ffmpeg)."""
    import imageio_ffmpeg

    h, w = ROWS * BLOCK, COLS * BLOCK
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo",
        "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-c:v", "libx264",
        "-pix_fmt", "yuv444p", "-qp", "0", "-g", "30", str(path),
    ]  # fmt: skip
    frames = b"".join(index_frame(i).tobytes() for i in range(n_frames))
    subprocess.run(cmd, input=frames, check=True)


def tiny_vjepa2(folder: Path, crop: int = 16) -> None:
    """A random 2-layer V-JEPA2 (seeded) with its video processor, in `folder`."""
    import torch
    from transformers import VJEPA2Config, VJEPA2Model, VJEPA2VideoProcessor

    torch.manual_seed(0)
    cfg = VJEPA2Config(
        patch_size=8, crop_size=crop, frames_per_clip=64, tubelet_size=2, hidden_size=32,
        num_attention_heads=2, num_hidden_layers=2, pred_hidden_size=16,
        pred_num_attention_heads=2, pred_num_hidden_layers=1,
    )  # fmt: skip
    VJEPA2Model(cfg).eval().save_pretrained(folder)
    VJEPA2VideoProcessor(crop_size=crop).save_pretrained(folder)


def video_extractor(folder: Path):
    import neuralset as ns
    from neuralset.extractors.base import HuggingFaceMixin

    HuggingFaceMixin._REPOS.append(str(folder))  # a local folder: no hub look-up

    return ns.extractors.HuggingFaceVideo(
        image={
            "name": "HuggingFaceImage",
            "model_name": str(folder),
            "infra": {"keep_in_ram": False},
        },
        clip_duration=4,
        frequency=2,
        infra={"folder": None},
    )


def official_clips(video: Path, folder: Path) -> dict[str, np.ndarray]:
    """Chunks of `video` by the official ChunkEvents and, per bin, its clip's sample times
    (absolute) and the frame index moviepy returned at each."""
    import neuralset.extractors.video as nsv
    import pandas as pd
    from neuralset.events.transforms import ChunkEvents
    from neuralset.events.utils import standardize_events

    events = standardize_events(
        pd.DataFrame([{"type": "Video", "filepath": str(video), "start": 0.0, "timeline": "t"}])
    )
    chunks = ChunkEvents(event_type_to_chunk="Video", max_duration=60, min_duration=30)(events)
    chunks = chunks[chunks.type == "Video"].sort_values("start")
    extractor = video_extractor(folder)
    record: list[tuple[float, int]] = []
    read = nsv._VideoImage._read

    def spy(self):  # the official read, with what it returned noted
        img = read(self)
        record.append((self.time, frame_index(np.asarray(img))))
        return img

    starts, durations, times, picks, chunk_of_bin = [], [], [], [], []
    nsv._VideoImage._read = spy
    try:
        for ci, row in enumerate(chunks.itertuples()):
            event = nsv.evts.Video(
                filepath=row.filepath, start=row.start, timeline=row.timeline,
                offset=row.offset, duration=row.duration, frequency=row.frequency,
            )  # fmt: skip
            record.clear()
            (ta,) = list(extractor._get_data([event]))
            n = ta.data.shape[-1]
            rec = np.array(record, dtype=np.float64).reshape(n, -1, 2)
            starts.append(row.start)
            durations.append(row.duration)
            times.append(row.start + rec[..., 0])
            picks.append(rec[..., 1].astype(np.int64))
            chunk_of_bin.extend([ci] * n)
    finally:
        nsv._VideoImage._read = read
    return {
        "chunk_starts": np.array(starts),
        "chunk_durations": np.array(durations),
        "sample_times": np.concatenate(times),
        "picks": np.concatenate(picks),
        "chunk_of_bin": np.array(chunk_of_bin),
    }


CLIPS = ((5.3, 30), (61.0, 10), (95.3, 10), (130.3, 10), (150.7, 10))
"""(seconds, frame rate) of the test videos: each `seconds * rate` index frames."""
PICKS_KEPT = ("5.3s", "95.3s")  # clips whose every frame pick is stored (the rest: clip ends)


def official_pixels(folder: Path) -> dict[str, np.ndarray]:
    """The official processor on two seeded noise images (one shrunk, one enlarged): the
    resized uint8 frame (no crop, no scaling) and the model's normalised pixels."""
    from transformers import AutoVideoProcessor

    rng = np.random.default_rng(0)
    out: dict[str, np.ndarray] = {}
    full = AutoVideoProcessor.from_pretrained(folder, do_rescale=True)  # as neuralset loads it
    for name, shape in (("down", (20, 35, 3)), ("up", (11, 19, 3))):
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        frames = list(np.stack([img, img[::-1]]))  # a 2-frame clip, as neuralset passes clips
        pix = full(videos=frames, return_tensors="pt")["pixel_values_videos"]
        resized = full(
            videos=frames, do_center_crop=False, do_rescale=False, do_normalize=False,
            return_tensors="pt",
        )["pixel_values_videos"]  # fmt: skip
        out[f"{name}/image"] = img
        out[f"{name}/resized"] = resized[0, 0].numpy().astype(np.uint8).transpose(1, 2, 0)
        out[f"{name}/pixels"] = pix[0, 0].numpy().astype(np.float32)
    out["crop"] = np.array(full.crop_size["height"])
    out["resize"] = np.array(full.size["shortest_edge"])
    return out


WORDS = (
    # (onset, duration, what it tests)
    (0.0, 0.0, "zero length at the recording's start"),
    (0.0, 0.3, "at the start"),
    (99.7, 0.3, "ends exactly at the 100 s edge"),
    (99.8, 0.6, "spans the 100 s edge"),
    (99.9, 0.0, "zero length just before the edge"),
    (99.95, 0.04, "short, just before the edge"),
    (100.0, 0.0, "zero length exactly on the edge"),
    (100.0, 0.5, "starts exactly on the edge"),
    (150.2, 0.8, "inside a window, two bins"),
    (199.6, 1.2, "long, spans the 200 s edge"),
    (230.4, 0.3, "past the last bin of a 230.3 s recording"),
)
WORDS_SECONDS = 230.3


def official_word_bins() -> dict[str, tp.Any]:
    """Bins of each word in the official 100 s windows (neuralset's segments and loader), the
    windows put end to end: `bins[i]` lists word i's bins (a bin twice if it is added twice)."""
    import neuralset as ns
    import pandas as pd
    import torch
    from neuralset.events.utils import standardize_events

    n = len(WORDS)

    class OneHotWord(ns.extractors.BaseStatic):
        """Each word's vector is one-hot of its index (its text): shows where it lands."""

        event_types: str = "Word"
        aggregation: str = "sum"
        frequency: float = 2.0

        def get_static(self, event) -> torch.Tensor:
            v = torch.zeros(n)
            v[int(event.text)] = 1.0
            return v

    rows = [
        {"type": "Word", "text": str(i), "start": o, "duration": d, "timeline": "t"}
        for i, (o, d, _) in enumerate(WORDS)
    ]
    # the official predict's trigger: one event over the whole timeline (main.py get_loaders)
    rows.append(
        {"type": "CategoricalEvent", "start": 0.0, "duration": WORDS_SECONDS, "timeline": "t"}
    )
    events = standardize_events(pd.DataFrame(rows))
    segments = ns.segments.list_segments(
        events, triggers=events.type == "CategoricalEvent", stride=100.0, duration=100.0,
        stride_drop_incomplete=False,
    )  # fmt: skip
    dataset = ns.dataloader.SegmentDataset(
        extractors={"text": OneHotWord()}, segments=segments, remove_incomplete_segments=False
    )
    data = np.concatenate([dataset[i].data["text"][0].numpy() for i in range(len(dataset))], -1)
    bins = [
        [int(b) for b in np.flatnonzero(row) for _ in range(int(round(row[b])))] for row in data
    ]
    return {
        "seconds": WORDS_SECONDS,
        "window_seconds": 100.0,
        "segments": [[float(s.start), float(s.duration)] for s in segments],
        "words": [
            {"onset": o, "duration": d, "what": w, "bins": b}
            for (o, d, w), b in zip(WORDS, bins, strict=True)
        ],
    }


def main(out: Path, parts: tp.Sequence[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if "words" in parts:
        words = official_word_bins()
        (out / "words_window_edges.json").write_text(json.dumps(words, indent=1) + "\n")
        print(json.dumps(words["words"]))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "vjepa2-tiny"
        tiny_vjepa2(folder)
        if "pixels" in parts:
            np.savez_compressed(out / "video_pixels.npz", **official_pixels(folder))
        if "clips" not in parts:
            return
        arrays: dict[str, np.ndarray] = {}
        for seconds, fps in CLIPS:
            n = int(round(seconds * fps))
            video = tmp / f"clip_{n}_{fps}.mp4"
            write_video(video, n, fps)
            key = f"{seconds:g}s"
            got = official_clips(video, folder)
            arrays[f"{key}/chunks"] = np.stack([got["chunk_starts"], got["chunk_durations"]], 1)
            arrays[f"{key}/ends"] = got["sample_times"][:, -1]
            arrays[f"{key}/frames_fps"] = np.array([n, fps])
            if key in PICKS_KEPT:
                arrays[f"{key}/picks"] = got["picks"].astype(np.int16)
            print(key, arrays[f"{key}/chunks"].tolist())
    np.savez_compressed(out / "video_clips.npz", **arrays)


if __name__ == "__main__":
    main(
        Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/official"),
        sys.argv[2:] or ("words", "pixels", "clips"),
    )
