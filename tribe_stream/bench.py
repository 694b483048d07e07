"""`tribe-stream bench`: a clip replayed in real time through the whole live pipeline, measured.

Models (`tribe_stream.models.Models`): a checkpoint, `demo` for the small untrained ones, or
`random` for full-size RANDOM weights built here in memory (V-JEPA2 ViT-g, w2v-BERT 2.0, Llama-3.2-3B from the configs in
`tribe_stream/full_size.py`, and the TRIBE v2 brain model); nothing is downloaded. Text runs for
real: words from the speech recogniser where it is installed, else from `--transcript` (or a
built-in text at 2.5 words/s), each fed when it ends, so the text model runs live either way.

Runs, in one process: (1) one stream; (2) `--streams N` streams, or with `--max-streams` a
search from `--start-streams` for the most streams kept in real time (end-to-end p99 at most
`--p99-ms`, nothing dropped after the warm-up); (3) the sequential baseline: one stream, each
model called as the official code calls it (V-JEPA2 with all hidden states per bin's clip,
w2v-BERT over the 30 s context with the feature extractor on the CPU, each word's whole context
through Llama, the brain model eager in float32), second after second. Latency is from the end of
each second's data to the prediction's arrival at a subscriber, per stage from the headers
(`stream/latency.py`); the baseline's is its compute per second. Prints the ratios; writes a
JSON report and a PNG of the latency distributions.
"""

from __future__ import annotations

import enum
import json
import logging
import socket
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tribe_stream import AUDIO_RATE, BIN_SECONDS
from tribe_stream.errors import InputError
from tribe_stream.options import LiveOptions, ModelOptions, number, option
from tribe_stream.types import Word

log = logging.getLogger("tribe_stream.bench")

WORDS_PER_SECOND = 2.5


@dataclass
class BenchOptions(ModelOptions, LiveOptions):
    """What `tribe-stream bench` runs (see the module docs); `seconds` None: 60 a run."""

    streams: int = option(1, "concurrent streams", type=number(int, minimum=1, maximum=64))
    max_streams: bool = option(
        False, "find the most streams kept in real time", action="store_true"
    )
    start_streams: int = option(
        4, "--max-streams starts here", type=number(int, minimum=1, maximum=64)
    )
    warmup_s: float = option(
        5.0, "seconds left out at each run's start", flags="--warmup", type=number(minimum=0)
    )
    baseline_seconds: float = option(
        20.0, "seconds of the baseline run", type=number(above=0)
    )
    p99_ms: float = option(250.0, "real time: p99 at most this", type=number(above=0))
    clip: str | None = option(None, "media file to replay (default: a generated clip with speech)")
    transcript: str | None = option(
        None, "words with times (.tsv ours or official, .srt, .vtt) fed at their times"
    )
    aligned: bool = option(
        False,
        "stream starts: spread evenly over one 0.5 s bin, as independent sources would "
        "(--stagger, the default), or all at one instant, the worst case (--aligned)",
        flags={"--stagger": False, "--aligned": True},
    )
    out: str | None = option(None, "the report (default: bench.json; a picture beside it)")
    plot: str | None = option(None, "PNG of the latency distributions (default: OUT.png)")

    def validate(self) -> BenchOptions:
        LiveOptions.validate(self)
        ModelOptions.validate(self)
        self.seconds = 60.0 if self.seconds is None else self.seconds
        self.out = self.out or "bench.json"
        self.plot = self.plot or str(Path(self.out).with_suffix(".png"))
        if self.streams < 1 or self.start_streams < 1:
            raise InputError("--streams and --start-streams must be at least 1")
        if self.max_streams and self.streams > 1:
            raise InputError("--max-streams searches for the number of streams: leave out --streams")
        if self.seconds <= self.warmup_s + 1:
            raise InputError(
                f"--seconds {self.seconds:g} leaves nothing after the {self.warmup_s:g} s warm-up"
            )
        return self


@dataclass
class Built:
    """The bench's models (`tribe_stream.models.Models`) and the live extractors it runs."""

    models: Any  # tribe_stream.models.Models
    loaded: Any
    engine: Any
    extractors: Any  # tribe_stream.models.Extractors
    device: str
    description: str
    build_s: float
    notes: list[str] = field(default_factory=list)


def build_models(o: BenchOptions) -> Built:
    """The brain model, its engine and the extractors for `o` (see the module docs)."""
    from tribe_stream.models import Models

    t0 = time.perf_counter()
    models = Models(o)
    notes: list[str] = []
    extractors = models.live(("video", "audio", "text"), text=o.text, notes=notes)
    if o.text and extractors.text is None:  # no recogniser: words from a transcript
        extractors.text = models.extractors(("text",))["text"]
    what = (
        "full-size RANDOM weights built here (V-JEPA2 ViT-g, w2v-BERT 2.0, Llama-3.2-3B)"
        if o.checkpoint == "random"
        else f"checkpoint {o.checkpoint}"
    )
    return Built(
        models,
        models.loaded,
        models.engine,
        extractors,
        models.device,
        f"{what}; engine {models.engine_name} ({models.dtype}) on {models.device}",
        time.perf_counter() - t0,
        notes,
    )


# ----- words -----


def bench_words(o: BenchOptions, seconds: float, asr_ready: bool) -> tuple[list[Word], str]:
    """Words to feed at their times (empty when the recogniser makes them) and how they come."""
    if not o.text:
        return [], "text off"
    if o.transcript:
        from tribe_stream.transcripts import read_transcript

        words = read_transcript(o.transcript)
        return words, f"words from {o.transcript} ({len(words)}), fed at their times"
    if asr_ready:
        return [], "words from the speech recogniser"
    from tribe_stream.extractors.demo import CORPUS

    text = CORPUS.split()
    n = int(seconds * WORDS_PER_SECOND)
    step = 1.0 / WORDS_PER_SECOND
    words = [Word(text[i % len(text)], i * step, 0.8 * step) for i in range(n)]
    return words, (
        f"no recogniser weights: a built-in text at {WORDS_PER_SECOND:g} words/s, each word fed "
        "when it ends"
    )


# ----- one run of N streams -----


def _free_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def _gpu_memory(device: str) -> tuple[float, float]:
    """(allocated, peak) GiB on the device (0 on a CPU)."""
    if not device.startswith("cuda"):
        return 0.0, 0.0
    import torch

    torch.cuda.synchronize()
    return torch.cuda.memory_allocated() / 2**30, torch.cuda.max_memory_allocated() / 2**30


def _release(device: str) -> None:
    """Free what a finished run's streams held (their pipelines, text steps, KV caches), so the
    next run's memory figures are its own."""
    import gc

    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def start_offsets(n: int, aligned: bool) -> list[float]:
    """Each stream's start (s): all at once, or spread evenly over one bin."""
    return [0.0 if aligned else i * BIN_SECONDS / n for i in range(n)]


def run_streams(
    models: Built, clip: Path, n: int, o: BenchOptions, words: list[Word]
) -> dict[str, Any]:
    """`n` copies of `clip` in real time through one public `Stream` for `o.seconds`; the
    figures.

    Each stream starts at its own time (`start_offsets`) on its own clock (zero at its own
    start), so its stamps are its own; one subscriber hears them all. Seconds predicted after
    a stream's sources ended (the end-of-input flush) are reported apart (`after_end_ms`) and
    left out of the live figures: a camera never ends."""
    from tribe_stream.client import Subscriber
    from tribe_stream.options import StreamOptions
    from tribe_stream.stream.latency import END_TO_END, percentiles, stage_delays
    from tribe_stream.stream.producer import Media, Stream

    starts = start_offsets(n, o.aligned)
    feed = words if words and models.extractors.text is not None else None
    medias = [Media(file=str(clip), stream_id=f"bench-{i}", start_s=s, words=feed)
              for i, s in enumerate(starts)]  # fmt: skip
    options = StreamOptions(
        checkpoint=o.checkpoint, engine=o.engine, device=o.device, dtype=o.dtype,
        video_fp8=o.video_fp8, lag=o.lag, text=o.text, seconds=o.seconds,
    )  # fmt: skip
    url = _free_url()
    stream = Stream(medias, options).use_models(models.models, models.extractors).publish(url)
    got: list[tuple[dict, float]] = []
    stop = threading.Event()
    with Subscriber([url]) as sub, stream.open() as running:

        def listen():
            while not stop.is_set():
                msg = sub.recv(timeout=0.2)
                if msg is not None:
                    got.append((dict(msg.header), time.time()))

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        try:  # the listener stops before its socket closes, even on Ctrl-C
            stream.publisher.wait_for_subscribers(1, timeout=10.0)
            mem_before, _ = _gpu_memory(models.device)
            if models.device.startswith("cuda"):
                import torch

                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            made = sum(1 for _ in running)
            wall = time.perf_counter() - t0
            mem_after, peak = _gpu_memory(models.device)
            deadline = time.monotonic() + 5.0
            while len(got) < made and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            stop.set()
            thread.join(2.0)
    server = stream.server
    flushed = {p.stream_id: p.flushed_from for p in server.done}
    rows, after_end, per_stream, last, first = [], [], {}, {}, {}
    for h, arrived in got:
        if h.get("kind") != "prediction" or h.get("t0_wall") is None:
            continue
        sid, k = h["stream_id"], h["second"]
        per_stream.setdefault(sid, []).append(h["seq"])
        last[sid] = h["counters"]
        if flushed.get(sid) is not None and k >= flushed[sid]:
            after_end.append(stage_delays(h, arrived - h["t0_wall"]).get(END_TO_END))
        elif k >= o.warmup_s:
            first.setdefault(sid, h["counters"])
            rows.append(stage_delays(h, arrived - h["t0_wall"]))

    def drops(c: dict) -> float:
        return sum(v for key, v in (c or {}).items() if "dropped" in key)

    dropped = sum(drops(last[s]) - drops(first.get(s, last[s])) for s in last)
    contiguous = all(ks == list(range(ks[0], ks[0] + len(ks))) for ks in per_stream.values())
    stats = percentiles(rows)
    e2e = stats.get(END_TO_END, {})
    c = server.counters
    return {
        "streams": n,
        "starts": "aligned" if o.aligned else "staggered",
        "start_offsets_s": [round(s, 4) for s in starts],
        "predictions": made,
        "received": len(rows),
        "wall_s": round(wall, 2),
        "realtime_factor": round(made / n / wall, 3) if wall else None,
        # the server's time in turns that ran a model (host work included) per stream-second
        "compute_s_per_stream_second": round(c["work_s"] / max(made, 1), 4),
        "compiles_after_warmup": c["compiles_after_warmup"],
        "captures_after_warmup": c["captures_after_warmup"],
        "words": int(sum(p.counters["words"] for p in server.done)),
        "dropped_after_warmup": dropped,
        "seq_contiguous": contiguous,
        "latency_ms": stats,
        "p50_ms": e2e.get("p50"),
        "p99_ms": e2e.get("p99"),
        "real_time": bool(e2e and e2e["p99"] <= o.p99_ms and dropped == 0 and contiguous),
        "gpu_gib": {"before": mem_before, "after": mem_after, "peak": peak},
        "server": dict(server.counters),
        "end_to_end_ms": [r[END_TO_END] for r in rows if END_TO_END in r],
        "live_seconds": (
            f"seconds {o.warmup_s:g} s and later of each stream, up to its sources' end; "
            "seconds predicted after a stream's sources ended are in after_end_ms"
        ),
        "after_end_ms": [v for v in after_end if v is not None],
    }


# ----- the sequential baseline -----


def run_baseline(models: Built, clip: Path, seconds: float, words: list[Word]) -> dict:
    """One stream, second after second, each model called as the official code calls it."""
    import torch

    from tribe_stream.engines import make_engine
    from tribe_stream.extractors.audio import zscore
    from tribe_stream.extractors.contexts import word_contexts
    from tribe_stream.extractors.timing import clip_sample_times, frames_for_bins, select_frames
    from tribe_stream.extractors.video import preprocess_frames
    from tribe_stream.media import iter_video_frames, read_audio

    ex, device = models.extractors, models.device
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    engine = make_engine("torch", models.loaded, device=device, dtype="float32")
    frames, times = [], []
    for t, f in iter_video_frames(clip, max_size=292):
        if t > seconds + 1:
            break
        frames.append(f)
        times.append(t)
    audio = read_audio(clip) if ex.audio is not None else None
    rings = {m: np.zeros((*getattr(ex, m).shape, 2 * int(seconds)), np.float32)
             for m in ex.active() if m != "asr"}  # fmt: skip
    history: list[str] = []
    per_second, stages = [], {"video": [], "audio": [], "text": [], "brain": []}
    n_sec = int(seconds)
    with torch.inference_mode():
        for k in range(n_sec):
            t_k = {"video": 0.0, "audio": 0.0, "text": 0.0, "brain": 0.0}
            if ex.video is not None:
                for b in (2 * k, 2 * k + 1):
                    end = (b + 1) * BIN_SECONDS
                    s = clip_sample_times(
                        np.array([end]), ex.video.n_frames, ex.video.settings.clip_seconds, 0.0
                    )
                    idx = select_frames(s, times)[0]
                    t0 = time.perf_counter()
                    pix = preprocess_frames(
                        np.stack([frames[i] for i in idx]), ex.video.prep, device
                    )
                    states = ex.video.model(
                        pixel_values_videos=pix[None].to(ex.video.dtype), output_hidden_states=True
                    ).hidden_states
                    feats = torch.stack(
                        [torch.stack([states[i] for i in g]).mean(0).float().mean(1)[0]
                         for g in ex.video.groups]
                    ).cpu().numpy()  # fmt: skip
                    sync()
                    t_k["video"] += time.perf_counter() - t0
                    rings["video"][..., b] = feats
            if audio is not None:
                t_end = k + 1.0
                span = audio[int(max(0.0, t_end - 30.0) * AUDIO_RATE) : int(t_end * AUDIO_RATE)]
                t0 = time.perf_counter()
                inputs = ex.audio.processor(
                    zscore(span).numpy(), sampling_rate=AUDIO_RATE, return_tensors="pt"
                )["input_features"].to(device, ex.audio.dtype)
                states = ex.audio.model(input_features=inputs, output_hidden_states=True)
                states = states.hidden_states
                per_frame = torch.stack(
                    [
                        torch.stack([states[i][0] for i in g]).mean(0).float()
                        for g in ex.audio.groups
                    ]
                )  # (L, n, D)
                t_span = max(0.0, t_end - 30.0)
                idx = frames_for_bins([2 * k, 2 * k + 1], t_span, t_end, per_frame.shape[1])
                rings["audio"][..., 2 * k : 2 * k + 2] = (
                    per_frame[:, idx].permute(0, 2, 1).cpu().numpy()
                )
                sync()
                t_k["audio"] += time.perf_counter() - t0
            if ex.text is not None:
                for w in [w for w in words if k <= w.onset + w.duration < k + 1]:
                    history.append(w.text)
                    ctx, prefix = word_contexts(
                        history, ex.text.settings.max_context_words, final=False
                    )[-1]
                    t0 = time.perf_counter()
                    ids = ex.text.tokens(ctx)
                    states = ex.text.model(
                        input_ids=torch.tensor([ids], device=device), output_hidden_states=True
                    ).hidden_states
                    n_t = max(1, len(ids) - len(ex.text.tokens(prefix)))
                    vec = ex.text.group(
                        torch.stack([states[i][0, -n_t:].float().mean(0) for i in ex.text.needed])
                    )
                    sync()
                    t_k["text"] += time.perf_counter() - t0
                    b = round(2 * w.onset)
                    if b < rings["text"].shape[-1]:
                        rings["text"][..., b] += vec
            stop = 2 * k + 2
            start = max(0, stop - 200)
            window = {m: (rings[m][..., start:stop] if m in rings else None)
                      for m in models.loaded.config.feature_dims}  # fmt: skip
            t0 = time.perf_counter()
            engine.run(window, rows=[(2 * k - start) // 2])
            sync()
            t_k["brain"] += time.perf_counter() - t0
            for m, v in t_k.items():
                stages[m].append(v * 1e3)
            per_second.append(sum(t_k.values()) * 1e3)
    warm = per_second[1:] if len(per_second) > 2 else per_second
    q = dict(
        zip(("p50", "p95", "p99", "p100"), np.percentile(warm, [50, 95, 99, 100]), strict=True)
    )
    rtf = float(np.mean(warm)) / 1e3
    return {
        "seconds": n_sec,
        "compute_ms_per_second": {k: float(v) for k, v in q.items()},
        "stage_ms_p50": {m: float(np.median(v[1:] or v)) for m, v in stages.items() if v},
        "p50_ms": float(q["p50"]),
        "p99_ms": float(q["p99"]),
        "compute_s_per_stream_second": round(rtf, 4),
        "streams_in_real_time": int(1.0 / rtf) if rtf > 0 else None,
        "per_second_ms": per_second,
    }


# ----- the whole bench -----


def run_bench(o: BenchOptions, say=print) -> dict:
    """Every run of the bench; writes `o.out` (JSON) and `o.plot` (PNG); returns the report."""
    from tribe_stream.extractors.asr import asr_available
    from tribe_stream.outputs import check_output
    from tribe_stream.sources.clip import make_clip
    from tribe_stream.stream.producer import warm_up

    o = o.validate()  # everything a user can get wrong, before any model loads
    out = check_output(o.out, (".json",), what="bench report")
    plot = check_output(o.plot, (".png",), what="plot") if o.plot else None
    t_start = time.perf_counter()
    models = build_models(o)
    say(f"models: {models.description} (built in {models.build_s:.0f} s)")
    asr_ready = models.extractors.asr is not None and asr_available() is None
    words, how = bench_words(o, o.seconds + 5, asr_ready)
    if words:
        models.extractors.asr = None  # words come from the transcript
    say(f"text: {how}")
    tmp = tempfile.TemporaryDirectory(prefix="tribe-bench-")
    clip = Path(o.clip) if o.clip else make_clip(
        Path(tmp.name) / "bench.mp4", o.seconds + 2, speech=True
    )  # fmt: skip
    most = o.start_streams + 6 if o.max_streams else o.streams
    t0 = time.perf_counter()
    warm_up(models.extractors, models.engine, 30.0, streams=most)
    models.models.warmed_for = most  # the streams of every run reuse it
    say(
        f"warm-up (compiling, CUDA graphs) at up to {most} streams: {time.perf_counter() - t0:.0f} s"
    )
    report: dict[str, Any] = {
        "options": asdict(o),
        "models": models.description,
        "build_s": round(models.build_s, 1),
        "text": how,
        "device": _device_name(models.device),
        "starts": (
            "aligned: every stream starts at one instant (its bins close with the others')"
            if o.aligned
            else "staggered: stream i of N starts i/N of a 0.5 s bin after the first"
        ),
    }
    one = run_streams(models, clip, 1, o, words)
    _release(models.device)
    report["one_stream"] = one
    say(_line("one stream", one))
    runs = []
    if o.max_streams:
        n, tried = o.start_streams, {}
        while n >= 1 and n not in tried and len(tried) < 5:
            r = run_streams(models, clip, n, o, words)
            _release(models.device)
            tried[n] = r
            runs.append(r)
            say(_line(f"{n} streams", r))
            n = n + 2 if r["real_time"] else n - 1
            if n in tried and tried[n]["real_time"] != r["real_time"] and n - 1 not in tried:
                n = n - 1 if r["real_time"] else n
        ok = [k for k, r in tried.items() if r["real_time"]]
        report["max_streams"] = max(ok) if ok else 0
    elif o.streams > 1:
        r = run_streams(models, clip, o.streams, o, words)
        _release(models.device)
        runs.append(r)
        say(_line(f"{o.streams} streams", r))
    report["runs"] = runs
    if runs and models.device.startswith("cuda"):
        # the largest run kept in real time (one that fell behind also holds its backlog)
        kept = [r for r in runs if r["real_time"]] or runs
        big = max(kept, key=lambda r: r["streams"])
        if big["streams"] > 1:
            report["gpu_gib_per_added_stream"] = (
                big["gpu_gib"]["peak"] - one["gpu_gib"]["peak"]
            ) / (big["streams"] - 1)
    base = run_baseline(models, clip, min(o.baseline_seconds, o.seconds), words)
    report["baseline"] = base
    say(
        f"baseline (sequential, official calls): compute per second p50 {base['p50_ms']:.1f} ms, "
        f"p99 {base['p99_ms']:.1f} ms; {base['compute_s_per_stream_second']:.3f} s per stream "
        f"second ({base['streams_in_real_time']} streams in real time at most)"
    )
    ratios = {}
    if one["p50_ms"]:
        ratios["latency_p50_baseline_over_ours"] = base["p50_ms"] / one["p50_ms"]
    if one["compute_s_per_stream_second"]:
        ratios["compute_per_stream_second_baseline_over_ours"] = (
            base["compute_s_per_stream_second"] / one["compute_s_per_stream_second"]
        )
    if o.max_streams and base["streams_in_real_time"]:
        ratios["streams_ours_over_baseline"] = report["max_streams"] / base["streams_in_real_time"]
    report["ratios"] = ratios
    for k, v in ratios.items():
        say(f"ratio {k}: {v:.2f}x")
    report["total_s"] = round(time.perf_counter() - t_start, 1)
    from tribe_stream.outputs import atomic_write

    atomic_write(out, lambda p: p.write_text(json.dumps(report, indent=1, default=_jsonable)))
    say(f"wrote {out}")
    if plot is not None:
        _plot(report, plot)
        say(f"wrote {plot}")
    tmp.cleanup()
    return report


def _jsonable(value: Any) -> Any:
    """NumPy numbers as floats, enums (`VideoFp8`) as their values."""
    return getattr(value, "value", None) if isinstance(value, enum.Enum) else float(value)


def _line(label: str, r: dict) -> str:
    e2e = r["latency_ms"].get("end to end (data → here)", {})
    stats = ", ".join(f"{k} {v:.1f}" for k, v in e2e.items()) or "no predictions after warm-up"
    end = (
        f"; {len(r['after_end_ms'])} after the source ended (left out)" if r["after_end_ms"] else ""
    )
    return (
        f"{label} ({r['starts']} starts): end to end ms {stats}{end}; dropped after warm-up "
        f"{r['dropped_after_warmup']:g}; seq contiguous {r['seq_contiguous']}; compiled/captured "
        f"after warm-up {r['compiles_after_warmup']}/{r['captures_after_warmup']}; compute "
        f"{r['compute_s_per_stream_second']:.3f} s per stream-second; GPU peak "
        f"{r['gpu_gib']['peak']:.1f} GiB; {'real time' if r['real_time'] else 'NOT real time'}"
    )


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    import platform

    return f"cpu {platform.processor() or platform.machine()}"


def _plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tribe_stream.outputs import atomic_write

    fig, ax = plt.subplots(figsize=(7, 4))
    series = [("1 stream (ours)", report["one_stream"]["end_to_end_ms"])]
    series += [(f"{r['streams']} streams (ours)", r["end_to_end_ms"]) for r in report["runs"]]
    series.append(("baseline, sequential (compute)", report["baseline"]["per_second_ms"]))
    for label, vals in series:
        if vals:
            v = np.sort(np.asarray(vals))
            ax.plot(v, np.arange(1, len(v) + 1) / len(v), label=label)
    ax.axvline(report["options"]["p99_ms"], color="grey", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("latency after each second's data ends (ms)")
    ax.set_ylabel("fraction of seconds")
    starts = "aligned starts" if report["options"]["aligned"] else "staggered starts"
    ax.set_title(f"{report['device']}; {starts}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)
