"""`tribe-stream extract`: a media file in, the brain model's input features out (.npz, (L, D, T))."""

from __future__ import annotations

from tribe_stream.options import DTYPE_NAMES, FeatureOptions, ModelOptions, add_options, from_args

NAME = "extract"
HELP = "extract text/audio/video features (L, D, T) at 2 Hz from a media file into an .npz"

FEATURES = ("modalities", "transcript", "asr", "asr_model")
"""The `FeatureOptions` extract has (no cache: it writes the features itself)."""


def add_arguments(p) -> None:
    p.add_argument("file", help="video or audio file (anything FFmpeg reads)")
    p.add_argument(
        "--out", required=True, help="output .npz with text/audio/video arrays (L, D, T)"
    )
    add_options(p, ModelOptions, only=("checkpoint", "device", "video_fp8", "video_batch"))
    add_options(p, FeatureOptions, only=FEATURES)
    for m in ("text", "audio", "video"):
        p.add_argument(f"--{m}-model", help=f"{m} model folder or hub id (overrides config.yaml)")
    p.add_argument("--save-words", help="write the words used for text features to this .tsv")
    p.add_argument(
        "--extractor-dtype", choices=DTYPE_NAMES,
        help="the extractors' precision (default: float16 on a GPU, float32 on a CPU)",
    )  # fmt: skip


def run(args) -> int:
    import logging

    from tribe_stream.errors import InputError, require_transformers
    from tribe_stream.extractors.offline import extract_media, read_words, write_words
    from tribe_stream.media import probe
    from tribe_stream.models import Models
    from tribe_stream.outputs import check_output, save_npz

    log = logging.getLogger("tribe_stream.extract")
    # everything a user can get wrong fails here, before any model loads (torch last)
    features = from_args(FeatureOptions, args).validate()
    out = check_output(args.out, (".npz",))
    words_out = check_output(args.save_words, (".tsv",)) if args.save_words else None
    info = probe(args.file)
    if not (info.has_audio or info.has_video):
        raise InputError(f"{args.file} holds neither audio nor video (a subtitles or data file?)")
    model = from_args(ModelOptions, args).validate()
    require_transformers()
    words = read_words(features.transcript) if features.transcript else None
    # the extractors alone (the brain model is never loaded: a folder with only its config.yaml
    # names them); FP8 on this device is checked before the demo extractors are built
    models = Models(model, extractor_dtype=args.extractor_dtype)
    models.config = models.config.with_models(
        text=args.text_model, audio=args.audio_model, video=args.video_model
    )
    device = models.device
    modalities = features.modalities or tuple(models.config.features_to_use)
    extractors = models.extractors(modalities)
    asr = None
    if "text" in modalities and words is None and features.asr:
        from tribe_stream.extractors.asr import WhisperASR, asr_available

        reason = None if features.asr_model else asr_available()
        if reason:
            log.warning("text features skipped: %s", reason)
        else:
            asr = WhisperASR(features.asr_model, device=device)
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
