"""`tribe-stream bench`: a clip replayed in real time through the whole live pipeline, measured.

Models: a checkpoint, `demo`, or `random` (full-size RANDOM weights built in memory). Text
runs live: words from the speech recogniser, `--transcript` or a built-in text, fed as they end.
Runs: (1) one stream; (2) `--streams N`, or `--max-streams`: the most streams kept in real time
(p99 at most `--p99-ms`, nothing dropped after the warm-up); (3) the sequential baseline, each
model called as the official code calls it. Latency: from the end of each second's data to a
subscriber, per stage (`stream/latency.py`); the baseline's is its compute per second.
"""

from __future__ import annotations

import enum
import gc
import itertools
import json
import platform
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tribe_stream import AUDIO_RATE, BIN_SECONDS
from tribe_stream.errors import InputError
from tribe_stream.options import (
    LiveOptions,
    ModelOptions,
    StreamOptions,
    from_args,
    max_streams_option,
    number,
    option,
)
from tribe_stream.types import Word


@dataclass
class BenchOptions(ModelOptions, LiveOptions):
    """What `tribe-stream bench` runs (see the module docs); `seconds` None: 60 a run."""

    streams: int = option(1, "concurrent streams", type=number(int, minimum=1, maximum=64))
    max_streams: int | None = max_streams_option(
        "find the most streams kept in real time, from --start-streams up to N (default: "
        "--start-streams + 6)"
    )
    start_streams: int = option(
        4, "--max-streams starts here", type=number(int, minimum=1, maximum=64)
    )
    warmup_s: float = option(
        5.0, "seconds left out at each run's start", flags="--warmup", type=number(minimum=0)
    )
    baseline_seconds: float = option(20.0, "seconds of the baseline run", type=number(above=0))
    p99_ms: float = option(250.0, "real time: p99 at most this", type=number(above=0))
    clip: str | None = option(None, "media file to replay (default: a generated clip with speech)")
    transcript: str | None = option(
        None, "words with times (.tsv ours or official, .srt, .vtt) fed at their times"
    )
    starts: str = option(
        "staggered",
        "stream starts: spread evenly over the period of the video clips (0.5 s; 1 s with "
        "--video-clips 1), as independent sources would (--stagger, the default); all at one "
        "instant, the worst case (--aligned); or at random instants in that period, seeded by "
        "--starts-seed, as visitors who come when they like (--random-starts)",
        flags={"--stagger": "staggered", "--aligned": "aligned", "--random-starts": "random"},
    )
    starts_seed: int = option(0, "the seed of --random-starts", type=number(int, minimum=0))
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
        if self.max_streams is not None and self.streams > 1:
            why = "--max-streams searches for the number of streams: leave out --streams"
            raise InputError(why)
        if self.starts not in ("staggered", "aligned", "random"):
            raise InputError(f"starts {self.starts!r}: give staggered, aligned or random")
        if self.max_streams is not None and self.start_streams > self.max_streams:
            why = f"--start-streams {self.start_streams} is above --max-streams {self.max_streams}"
            raise InputError(f"{why}: the search starts at or below the most it tries")
        if self.seconds <= self.warmup_s + 1:
            why = f"--seconds {self.seconds:g} leaves nothing after the {self.warmup_s:g} s warm-up"
            raise InputError(why)
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
    what += f"; engine {models.engine_name} ({models.dtype}) on {models.device}"
    build_s = time.perf_counter() - t0
    return Built(
        models, models.loaded, models.engine, extractors, models.device, what, build_s, notes
    )


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
    from tribe_stream.extractors.demo import WORDS_PER_SECOND, paced_words

    return paced_words(seconds), (
        f"no recogniser weights: a built-in text at {WORDS_PER_SECOND:g} words/s, each word fed "
        "when it ends"
    )


def _gpu_memory(device: str, reset: bool = False) -> tuple[float, float]:
    """(allocated, peak) GiB on the device (0 on a CPU); `reset`: a new peak from here."""
    if not device.startswith("cuda"):
        return 0.0, 0.0
    import torch

    torch.cuda.synchronize()
    out = torch.cuda.memory_allocated() / 2**30, torch.cuda.max_memory_allocated() / 2**30
    if reset:
        torch.cuda.reset_peak_memory_stats()
    return out


def _release(device: str) -> None:
    """Free what a finished run's streams held, so the next run's memory figures are its own."""
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def clip_period(o: BenchOptions) -> float:
    """Seconds between a stream's V-JEPA2 clips: a bin, or a second with `--video-clips 1`."""
    return 2 * BIN_SECONDS / o.video_clips


def start_offsets(o: BenchOptions, n: int) -> list[float]:
    """When each of `n` streams starts after the first: at once (`--aligned`), spread evenly
    over the period of the clips, where independent sources' phases fall, or at random in it
    (`--random-starts`: seeded, the same for a seed and `n`). (Over one bin at one clip a
    second, every stream's clip would come in the same half of each second: a burst.)"""
    if o.starts == "random":  # the first at 0, the others uniform in the period
        rng = np.random.default_rng([o.starts_seed, n])
        return [0.0, *sorted(rng.uniform(0.0, clip_period(o), n - 1).tolist())][:n]
    return [0.0 if o.starts == "aligned" else i * clip_period(o) / n for i in range(n)]


def stream_options(o: BenchOptions) -> StreamOptions:
    """The streams' options: every model and live option the bench was given (a hand-made
    list once left `--video-overlap` out, so its runs measured the default)."""
    return from_args(StreamOptions, o)


def run_streams(
    models: Built, clip: Path, n: int, o: BenchOptions, words: list[Word]
) -> dict[str, Any]:
    """`n` copies of `clip` in real time through one public `Stream` for `o.seconds`; the
    figures. Each stream starts at its own time (all at once, or `start_offsets`) on
    its own clock; one subscriber hears them all. Seconds predicted after a stream's sources
    ended (the end-of-input flush) are reported apart (`after_end_ms`): a camera never ends."""
    from tribe_stream.client import Subscriber
    from tribe_stream.stream.latency import END_TO_END, percentiles, stage_delays
    from tribe_stream.stream.producer import Media, Stream

    starts = start_offsets(o, n)
    feed = words if words and models.extractors.text is not None else None
    medias = [Media(file=str(clip), stream_id=f"bench-{i}", start_s=s, words=feed)
              for i, s in enumerate(starts)]  # fmt: skip
    options = stream_options(o)
    stream = Stream(medias, options).use_models(models.models, models.extractors)
    stream.publish("tcp://127.0.0.1:*")  # any free port
    got: list[tuple[dict, float]] = []
    stop = threading.Event()
    with stream.open() as running, Subscriber([stream.publisher.url]) as sub:

        def listen():
            while not stop.is_set():
                if (msg := sub.recv(timeout=0.2)) is not None:
                    got.append((dict(msg.header), time.time()))

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        try:  # the listener stops before its socket closes, even on Ctrl-C
            stream.publisher.wait_for_subscribers(1, timeout=10.0)
            mem_before, _ = _gpu_memory(models.device, reset=True)
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
        "starts": o.starts,
        "start_offsets_s": [round(s, 4) for s in starts],
        "predictions": made,
        "received": len(rows),
        "wall_s": round(wall, 2),
        "realtime_factor": round(made / n / wall, 3) if wall else None,
        # the server's time in turns that ran a model (host work included) per stream-second
        "compute_s_per_stream_second": round(c["work_s"] / max(made, 1), 4),
        # where the loop's time went, ms per stream-second
        "stage_ms_per_stream_second": {
            k[:-2]: round(1e3 * c[k] / max(made, 1), 2)
            for k in ("intake_s", "text_s", "video_s", "audio_s", "engine_s", "head_s")
        },
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


def run_baseline(models: Built, clip: Path, seconds: float, words: list[Word]) -> dict:
    """One stream, second after second, each model called as the official code calls it."""
    import torch

    from tribe_stream.engines import make_engine
    from tribe_stream.extractors.audio import zscore
    from tribe_stream.extractors.contexts import word_contexts
    from tribe_stream.extractors.timing import clip_sample_times, frames_for_bins, select_frames
    from tribe_stream.extractors.video import preprocess_frames
    from tribe_stream.media import iter_video_frames, read_audio
    from tribe_stream.stream.latency import quantiles

    def group_means(states, groups):  # each layer group's hidden states averaged, (L, ...)
        return torch.stack([torch.stack([states[i] for i in g]).mean(0).float() for g in groups])

    ex, device = models.extractors, models.device
    video = ex.video
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    engine = make_engine("torch", models.loaded, device=device, dtype="float32")
    decoded = iter_video_frames(clip, max_size=292)
    timed_frames = list(itertools.takewhile(lambda tf: tf[0] <= seconds + 1, decoded))
    times, frames = [t for t, _ in timed_frames], [f for _, f in timed_frames]
    audio = read_audio(clip) if ex.audio is not None else None
    rings = {m: np.zeros((*getattr(ex, m).shape, 2 * int(seconds)), np.float32)
             for m in ex.active() if m != "asr"}  # fmt: skip
    history: list[str] = []
    per_second, stages = [], {"video": [], "audio": [], "text": [], "brain": []}
    n_sec = int(seconds)
    with torch.inference_mode():
        for k in range(n_sec):
            t_k = dict.fromkeys(stages, 0.0)
            if video is not None:
                for b in (2 * k, 2 * k + 1):
                    ends = np.array([(b + 1) * BIN_SECONDS])
                    s = clip_sample_times(ends, video.n_frames, video.settings.clip_seconds, 0.0)
                    idx = select_frames(s, times)[0]
                    t0 = time.perf_counter()
                    pix = preprocess_frames(np.stack([frames[i] for i in idx]), video.prep, device)
                    states = video.model(
                        pixel_values_videos=pix[None].to(video.dtype), output_hidden_states=True
                    ).hidden_states
                    feats = group_means(states, video.groups).mean(2)[:, 0].cpu().numpy()
                    sync()
                    t_k["video"] += time.perf_counter() - t0
                    rings["video"][..., b] = feats
            if audio is not None:
                t_end, t_span = k + 1.0, max(0.0, k + 1.0 - 30.0)
                span = audio[int(t_span * AUDIO_RATE) : int(t_end * AUDIO_RATE)]
                t0 = time.perf_counter()
                inputs = ex.audio.processor(
                    zscore(span).numpy(), sampling_rate=AUDIO_RATE, return_tensors="pt"
                )["input_features"].to(device, ex.audio.dtype)
                states = ex.audio.model(input_features=inputs, output_hidden_states=True)
                per_frame = group_means(states.hidden_states, ex.audio.groups)[:, 0]  # (L, n, D)
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
    q = quantiles(warm)
    rtf = float(np.mean(warm)) / 1e3
    return {
        "seconds": n_sec,
        "compute_ms_per_second": q,
        "stage_ms_p50": {m: float(np.median(v[1:] or v)) for m, v in stages.items() if v},
        "p50_ms": q["p50"],
        "p99_ms": q["p99"],
        "compute_s_per_stream_second": round(rtf, 4),
        "streams_in_real_time": int(1.0 / rtf) if rtf > 0 else None,
        "per_second_ms": per_second,
    }


def run_bench(o: BenchOptions, say=print) -> dict:
    """Every run of the bench; writes `o.out` (JSON) and `o.plot` (PNG); returns the report."""
    from tribe_stream.extractors.asr import asr_available
    from tribe_stream.outputs import atomic_write, check_output
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
    searching = o.max_streams is not None
    most = (o.max_streams or o.start_streams + 6) if searching else o.streams
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
        "starts": {
            "aligned": "aligned: every stream starts at one instant (its bins close with the "
            "others')",
            "staggered": f"staggered: stream i of N starts i/N of {clip_period(o):g} s (the "
            "period of its video clips) after the first",
            "random": f"random: each stream after the first at a random instant of "
            f"{clip_period(o):g} s (the period of its video clips), seed {o.starts_seed}",
        }[o.starts],
    }

    def run(n: int, label: str) -> dict:
        r = run_streams(models, clip, n, o, words)
        _release(models.device)
        say(_line(label, r))
        return r

    one = report["one_stream"] = run(1, "one stream")
    tried: dict[int, dict] = {}  # streams -> run, in the order run
    if searching:
        n = min(o.start_streams, most)
        while n >= 1 and n not in tried and len(tried) < 5:
            r = tried[n] = run(n, f"{n} streams")
            n = min(n + 2, most) if r["real_time"] else n - 1
            if n in tried and tried[n]["real_time"] != r["real_time"] and n - 1 not in tried:
                n = n - 1 if r["real_time"] else n
        ok = [k for k, r in tried.items() if r["real_time"]]
        report["max_streams"] = max(ok) if ok else 0
    elif o.streams > 1:
        tried[o.streams] = run(o.streams, f"{o.streams} streams")
    runs = report["runs"] = list(tried.values())
    if runs and models.device.startswith("cuda"):
        # the largest run kept in real time (one that fell behind also holds its backlog)
        kept = [r for r in runs if r["real_time"]] or runs
        big = max(kept, key=lambda r: r["streams"])
        if big["streams"] > 1:
            added = big["gpu_gib"]["peak"] - one["gpu_gib"]["peak"]
            report["gpu_gib_per_added_stream"] = added / (big["streams"] - 1)
    seconds = min(o.baseline_seconds, o.seconds)
    base = report["baseline"] = run_baseline(models, clip, seconds, words)
    say(
        f"baseline (sequential, official calls): compute per second p50 {base['p50_ms']:.1f} ms, "
        f"p99 {base['p99_ms']:.1f} ms; {base['compute_s_per_stream_second']:.3f} s per stream "
        f"second ({base['streams_in_real_time']} streams in real time at most)"
    )
    ratios = report["ratios"] = {}
    if one["p50_ms"]:
        ratios["latency_p50_baseline_over_ours"] = base["p50_ms"] / one["p50_ms"]
    if ours := one["compute_s_per_stream_second"]:
        theirs = base["compute_s_per_stream_second"]
        ratios["compute_per_stream_second_baseline_over_ours"] = theirs / ours
    if searching and base["streams_in_real_time"]:
        ratios["streams_ours_over_baseline"] = report["max_streams"] / base["streams_in_real_time"]
    for k, v in ratios.items():
        say(f"ratio {k}: {v:.2f}x")
    report["total_s"] = round(time.perf_counter() - t_start, 1)
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
    n_end = len(r["after_end_ms"])
    end = f"; {n_end} after the source ended (left out)" if n_end else ""
    by_stage = r.get("stage_ms_per_stream_second", {})
    stages = f"the loop {sum(by_stage.values()):.0f} ms per stream-second: " + ", ".join(
        f"{k} {v:.0f}" for k, v in by_stage.items() if v
    )
    return (
        f"{label} ({r['starts']} starts): end to end ms over {r['received']} seconds {stats}"
        f"{end}; dropped after warm-up "
        f"{r['dropped_after_warmup']:g}; seq contiguous {r['seq_contiguous']}; compiled/captured "
        f"after warm-up {r['compiles_after_warmup']}/{r['captures_after_warmup']}; compute "
        f"{r['compute_s_per_stream_second']:.3f} s per stream-second ({stages}){_forwards(r)}; GPU peak "
        f"{r['gpu_gib']['peak']:.1f} GiB; {'real time' if r['real_time'] else 'NOT real time'}"
    )


def _forwards(r: dict) -> str:
    """V-JEPA2 clips and forwards, and how many forwards a later turn collected (shows that
    `--video-overlap` overlapped: on a CPU none is)."""
    c = r.get("server", {})
    if not c.get("video_forwards"):
        return ""
    later = c.get("video_collected_later", 0)
    return f"; video {c['video_clips']} clips in {c['video_forwards']} forwards, {later} collected a turn later"


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
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
    ax.set(xscale="log", xlabel="latency after each second's data ends (ms)")
    ax.set_ylabel("fraction of seconds")
    starts = f"{report['options'].get('starts', 'staggered')} starts"
    ax.set_title(f"{report['device']}; {starts}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)
