"""Make `tests/fixtures/official/audio.npz`: the 16 kHz sound the official TRIBE v2 pipeline feeds
w2v-BERT, for two small stereo files (run by hand in the official environment, see docs/PARITY.md).

Run with the python of a virtual environment holding the official pipeline's packages
(neuralset==0.0.2, moviepy, julius, soundfile; `tools/parity_official.py` makes one):

    /path/to/official-venv/bin/python tools/make_official_fixtures_audio.py tests/fixtures/official

It writes two media files with FFmpeg's lavfi sources (FLAC sound: lossless, so every decoder
reads the same samples): `sound48k.flac` (an audio file) and `sound48k.mkv` (the same sound with a
small picture, a video). Then it runs the official code on each and stores, in `audio.npz`:

- `video_wav`: frames `WAV_SLICE` of the 44.1 kHz 16-bit stereo WAV neuralset's
  `ExtractAudioFromVideo` writes (moviepy), int16 `(n, 2)`, `video_wav_frames` its length, and `video_16k`: that WAV read as a neuralset `Audio` event and resampled by
  the official `Wav2VecBert._resample_wav` (julius), then the channel mean (the first step of
  `_preprocess_wav`);
- `audio_16k`: the same for the audio file (read at its own 48 kHz rate);
- `aac_wav_end`, `aac_wav_frames`: frames `AAC_SLICE` (around the sound's end) and the length
  of the WAV written for
  `sound48k_aac.mp4` (the same sound as AAC, whose encoder pads past the stream's end: the
  official reader stops at the stream's duration, then moviepy writes zeros up to its own).

Nothing of the official code is copied here: it is imported and called.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SECONDS = 0.5
SOUND = (  # left: a tone and a chirp up to 12 kHz (above the 7 kHz where resamplers differ)
    f"aevalsrc=0.4*sin(2*PI*440*t)+0.2*sin(2*PI*(300+12000*t)*t):s=48000:d={SECONDS}[a];"
    f"sine=frequency=7300:sample_rate=48000:duration={SECONDS}[b];"  # right: a high tone
    "[a][b]amerge=inputs=2[out]"
)
WAV_SLICE = slice(9000, 11000)
AAC_SLICE = slice(21000, 23500)
"""Around the end of the AAC stream (0.5 s = frame 22050), where its padding starts."""
"""The WAV frames kept (whole, it would be 88 KB): the middle of the clip."""


def make_aac(out: Path, ffmpeg: str, flac: Path) -> Path:
    """An MP4 with AAC sound (its encoder pads past the stream's end) and a small picture that
    lasts 0.2 s longer (so the file's duration is not the sound's)."""
    mp4 = out / "sound48k_aac.mp4"
    subprocess.run(
        [
            ffmpeg, "-v", "error", "-y", "-i", str(flac),
            "-f", "lavfi", "-i", f"testsrc=size=32x24:rate=16:duration={SECONDS + 0.2}",
            "-map", "1:v", "-map", "0:a", "-c:v", "libx264", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "64k", str(mp4),
        ],
        check=True,
    )  # fmt: skip
    return mp4


def make_media(out: Path, ffmpeg: str) -> tuple[Path, Path]:
    """The audio file and the video, made with FFmpeg's lavfi sources."""
    flac, mkv = out / "sound48k.flac", out / "sound48k.mkv"
    common = [ffmpeg, "-v", "error", "-y", "-filter_complex", SOUND, "-map", "[out]"]
    subprocess.run([*common, "-ac", "2", "-c:a", "flac", str(flac)], check=True)
    subprocess.run(
        [
            ffmpeg, "-v", "error", "-y", "-i", str(flac),
            "-f", "lavfi", "-i", f"testsrc=size=32x24:rate=16:duration={SECONDS}",
            "-map", "1:v", "-map", "0:a", "-c:v", "ffv1", "-c:a", "flac", "-shortest", str(mkv),
        ],
        check=True,
    )  # fmt: skip
    return flac, mkv


def official_16k(event, extractor):
    """The official read of an Audio event, resampled to 16 kHz, channels averaged."""
    import torch

    wav = event.read()
    wav = extractor._resample_wav(wav, event.frequency, 16000)
    return torch.mean(wav, dim=1).numpy()


def main() -> None:
    import imageio_ffmpeg
    import neuralset.events.etypes as ev
    import numpy as np
    import pandas as pd
    import soundfile
    from neuralset.events.transforms import ExtractAudioFromVideo
    from neuralset.events.utils import standardize_events
    from neuralset.extractors.audio import Wav2VecBert

    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    flac, mkv = make_media(out, ffmpeg)
    aac = make_aac(out, ffmpeg, flac)
    extractor = Wav2VecBert()  # the model loads lazily; only its resampling is used

    def video_sound(path: Path):
        """The WAV ExtractAudioFromVideo writes for a video, and its official 16 kHz sound."""
        row = {"type": "Video", "filepath": str(path), "start": 0, "timeline": "t", "subject": "s"}
        events = ExtractAudioFromVideo()(standardize_events(pd.DataFrame([row])))
        audio_row = events[events.type == "Audio"].iloc[0].to_dict()
        wav_path = Path(audio_row["filepath"])
        wav, rate = soundfile.read(wav_path, dtype="int16")
        assert rate == 44100, rate
        sound = official_16k(ev.Audio.from_dict(audio_row), extractor)
        wav_path.unlink()
        return wav, sound

    video_wav, video_16k = video_sound(mkv)
    aac_wav, _ = video_sound(aac)
    audio_event = ev.Audio(start=0, timeline="t", filepath=str(flac))
    audio_16k = official_16k(audio_event, extractor)
    np.savez_compressed(
        out / "audio.npz",
        video_wav=video_wav[WAV_SLICE].astype(np.int16),
        video_wav_frames=len(video_wav),
        aac_wav_end=aac_wav[AAC_SLICE].astype(np.int16),
        aac_wav_frames=len(aac_wav),
        video_16k=video_16k.astype(np.float32),
        audio_16k=audio_16k.astype(np.float32),
    )
    print(
        f"wrote {out / 'audio.npz'}: WAV {video_wav.shape}, 16 kHz {video_16k.shape} / {audio_16k.shape}"
    )


if __name__ == "__main__":
    try:
        import neuralset  # noqa: F401  (the official pipeline's packages)
    except ImportError:
        print(
            f"{sys.argv[0]}: run this with the official pipeline's venv ({'imageio_ffmpeg, neuralset, soundfile'}), e.g. one made "
            "by `tools/parity_official.py --setup-only --venv VENV`",
            file=sys.stderr,
        )
        sys.exit(2)
    if len(sys.argv) != 2:
        print(f"usage: OFFICIAL_VENV/bin/python {sys.argv[0]} OUT_FOLDER", file=sys.stderr)
        sys.exit(2)
    main()
