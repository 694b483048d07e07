"""A long test clip: a story spoken by espeak-ng over the moving test picture, as an mp4.

    python tools/make_speech_clip.py clip.mp4 [--seconds 200] [--text story.txt]

The picture is the package's synthetic clip (`tribe_stream.sources.clip.clip_frame`: scrolling
bars, a bouncing disc, a frame-index strip); the sound is the text spoken by espeak-ng
(`tribe_stream.speech`), repeated until the clip is `--seconds` long. docs/FIDELITY.md's report
was made from the default text at the default length. Needs espeak-ng and libx264 (or mpeg4).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import av
import numpy as np

STORY = """
The harbour town woke slowly. A baker opened his shutters and the smell of warm bread drifted
over the wet stones. Two fishermen argued about the weather while they mended a torn net, and a
dog watched them from the steps of the church, waiting for a scrap that never came.

At nine o'clock the ferry arrived, late as usual. A girl with a red suitcase stepped onto the
pier and looked around as if she had never seen the sea before. She asked the ticket seller for
the road to the lighthouse. He pointed up the hill and told her it was a long walk, forty
minutes at least, and that the keeper did not like visitors.

She walked anyway. The path climbed between stone walls covered in yellow moss. Sheep lifted
their heads as she passed. Halfway up she stopped to rest and counted the boats in the bay:
seven, then eight, then nine, as a small sailing boat came around the point.

The lighthouse keeper was an old woman with very short grey hair. She opened the door before
the girl could knock. You must be my niece, she said. Your mother wrote to me. Come in, the
kettle is already on. Inside, the room was round and bright, and every shelf was full of books
about ships, storms and the stars.

They talked until the evening. The keeper explained how the great lamp worked, how the lens
turned once every twenty seconds, and how sailors could tell one lighthouse from another by the
rhythm of its flashes. When the sun went down they climbed the narrow stairs together, one
hundred and twelve steps, and switched on the light. Far out on the dark water, a ship answered
with a long, low sound from its horn.
"""


def make_speech_clip(
    path: Path, seconds: float, text: str, fps: int = 16, size: tuple[int, int] = (320, 240)
) -> Path:
    from tribe_stream import AUDIO_RATE
    from tribe_stream.media import read_audio
    from tribe_stream.sources.clip import clip_frame
    from tribe_stream.speech import speak_text

    with tempfile.TemporaryDirectory() as tmp:
        voice = read_audio(speak_text(text, Path(tmp) / "story.wav"))
    n = round(seconds * AUDIO_RATE)
    reps = -(-n // len(voice))
    sound = np.tile(np.concatenate([voice, np.zeros(AUDIO_RATE, np.float32)]), reps)[:n]
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = *size, "yuv420p"
        video.codec_context.thread_count = 1
        audio = out.add_stream("aac", rate=AUDIO_RATE)
        audio.layout = "mono"
        for i in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(clip_frame(i, fps, *size), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        for start in range(0, n, 1024):
            part = np.ascontiguousarray(sound[None, start : start + 1024])
            frame = av.AudioFrame.from_ndarray(part, format="fltp", layout="mono")
            frame.rate, frame.pts = AUDIO_RATE, start
            out.mux(audio.encode(frame))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    return path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="the .mp4 to write")
    p.add_argument("--seconds", type=float, default=200.0, help="length (default 200 s)")
    p.add_argument("--text", type=Path, help="a UTF-8 .txt to speak (default: a short story)")
    args = p.parse_args()
    if not 1 <= args.seconds <= 3600:
        p.error("--seconds must be between 1 and 3600")
    from tribe_stream.errors import TribeStreamError
    from tribe_stream.speech import read_text

    try:
        text = read_text(args.text) if args.text else STORY
        make_speech_clip(args.out, args.seconds, text)
    except TribeStreamError as exc:
        print(f"make_speech_clip: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({args.seconds:g} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
