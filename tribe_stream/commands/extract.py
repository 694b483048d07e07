"""`tribe-stream extract`: a media file in, the brain model's input features out (.npz, (L, D, T))."""

from __future__ import annotations

from tribe_stream.commands import add_video_fp8_arguments, video_fp8

NAME = "extract"
HELP = "extract text/audio/video features (L, D, T) at 2 Hz from a media file into an .npz"


def add_arguments(p) -> None:
    p.add_argument("file", help="video or audio file (anything FFmpeg reads)")
    p.add_argument(
        "--out", required=True, help="output .npz with text/audio/video arrays (L, D, T)"
    )
    p.add_argument(
        "--checkpoint",
        help="brain model folder or hub id whose config.yaml names the extractors, or `demo` "
        "(tiny untrained extractors, no download); default: the reference TRIBE v2 extractors",
    )
    p.add_argument("--modalities", default=None, help="comma-separated subset of text,audio,video")
    for m in ("text", "audio", "video"):
        p.add_argument(f"--{m}-model", help=f"{m} model folder or hub id (overrides config.yaml)")
    p.add_argument(
        "--words",
        help="use these words (.tsv ours or official, .srt, .vtt) instead of speech recognition",
    )
    p.add_argument("--save-words", help="write the words used for text features to this .tsv")
    p.add_argument(
        "--asr-model",
        help="faster-whisper (CTranslate2) model folder; default: the PyPI Whisper base",
    )
    p.add_argument(
        "--no-asr", action="store_true", help="skip speech recognition (text absent unless --words)"
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"])
    p.add_argument("--compile", action="store_true", help="torch.compile the extractors (GPU)")
    add_video_fp8_arguments(p)


def _config(args):
    from tribe_stream.resolve import extractor_config

    return extractor_config(args.checkpoint)


def run(args) -> int:
    import logging

    from tribe_stream.devices import pick_device
    from tribe_stream.errors import InputError
    from tribe_stream.extractors.offline import extract_media, read_words, write_words
    from tribe_stream.extractors.suite import load_extractors
    from tribe_stream.media import probe
    from tribe_stream.outputs import check_output, save_npz
    from tribe_stream.types import MODALITIES

    log = logging.getLogger("tribe_stream.extract")
    # everything a user can get wrong fails here, before any model loads
    out = check_output(args.out, (".npz",))
    words_out = check_output(args.save_words, (".tsv",)) if args.save_words else None
    info = probe(args.file)
    if not (info.has_audio or info.has_video):
        raise InputError(f"{args.file} holds neither audio nor video (a subtitles or data file?)")
    if args.device != "auto":
        pick_device(args.device)
    words = read_words(args.words) if args.words else None
    config = _config(args).with_models(
        text=args.text_model, audio=args.audio_model, video=args.video_model
    )
    modalities = tuple(config.features_to_use)
    if args.modalities:
        modalities = tuple(m.strip() for m in args.modalities.split(",") if m.strip())
        bad = [m for m in modalities if m not in MODALITIES]
        if bad:
            raise InputError(f"--modalities: unknown {bad}; choose from text, audio, video")
    device = "cpu" if args.checkpoint == "demo" and args.device == "auto" else args.device
    extractors = load_extractors(
        config,
        device=device,
        modalities=modalities,
        compile=args.compile,
        dtype=args.dtype,
        video_fp8=video_fp8(args),
    )
    asr = None
    if "text" in modalities and words is None and not args.no_asr:
        from tribe_stream.extractors.asr import WhisperASR, asr_available

        reason = None if args.asr_model else asr_available()
        if reason:
            log.warning("text features skipped: %s", reason)
        else:
            asr = WhisperASR(args.asr_model, device=device)
    result = extract_media(args.file, extractors, asr=asr, words=words)
    for m, why in result.missing.items():
        log.warning("%s features absent: %s", m, why)
    if result.decoding.total or result.decoding.nonfinite_samples:
        d = result.decoding
        log.warning(
            "decoding skipped %d bad packets, %d bad frames, %d read errors; %d NaN/inf audio "
            "samples made silent",
            d.bad_packets,
            d.bad_frames,
            d.read_errors,
            d.nonfinite_samples,
        )
    if not result.features:
        raise InputError(
            f"{args.file}: no features could be made ({'; '.join(result.missing.values())})"
        )
    save_npz(out, **result.features)
    if words_out is not None and result.words is not None:
        write_words(words_out, result.words)
    shapes = ", ".join(f"{m} {tuple(v.shape)}" for m, v in result.features.items()) or "nothing"
    print(f"wrote {out}: {shapes} ({result.n_bins} bins of 0.5 s, {result.duration:.1f} s)")
    return 0
