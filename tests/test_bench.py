"""`tribe-stream bench` end to end on the CPU with the demo models: one stream, two streams and
the sequential baseline in one run, a JSON report and a PNG."""

from __future__ import annotations

import json

from conftest import run_cli

from tribe_stream.transcripts import write_transcript
from tribe_stream.types import Word


def test_bench_runs_end_to_end_on_the_cpu(tmp_path):
    words = "the quick brown fox jumps over the lazy dog once more".split()
    tsv = write_transcript(
        tmp_path / "words.tsv", [Word(w, 0.3 * i, 0.25) for i, w in enumerate(words)]
    )
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    r = run_cli(
        "bench", "--checkpoint", "demo", "--streams", "2", "--seconds", "4", "--warmup", "0.5",
        "--baseline-seconds", "2", "--transcript", str(tsv), "--device", "cpu",
        "--out", str(out), "--plot", str(png), "--text-batch", "on", "--subcortical", "random",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert report["text"].startswith(f"words from {tsv}")
    one, (two,) = report["one_stream"], report["runs"]
    assert one["streams"] == 1 and two["streams"] == 2
    # independent sources by default: the second stream starts half a bin after the first
    assert two["starts"] == "staggered" and two["start_offsets_s"] == [0.0, 0.25]
    assert report["starts"].startswith("staggered") and "2 streams (staggered starts)" in r.stdout
    assert ", 0 collected a turn later" in r.stdout  # the V-JEPA2 forwards, none overlapped
    # how many seconds the percentiles are over (a short run's p99 is its worst second or two)
    assert f"end to end ms over {two['received']} seconds p50" in r.stdout
    assert two["compiles_after_warmup"] == 0  # nothing compiles on the CPU
    # a second is live or after its source ended (a CPU this slow may reach the clip's end), never both
    assert two["received"] + len(two["after_end_ms"]) <= two["predictions"]
    assert one["predictions"] == 4 and two["predictions"] + two["dropped_after_warmup"] >= 8
    assert one["words"] > 0 and two["words"] > one["words"]  # Llama ran live on each stream
    # where the loop's time went: every stage that ran, the words through the text stage
    # (--text-batch on), a random subcortical head after the cortex's brain model
    by_stage = two["stage_ms_per_stream_second"]
    assert set(by_stage) == {"intake", "text", "video", "audio", "engine", "head"}
    assert all(by_stage[k] > 0 for k in ("video", "audio", "engine", "head", "text"))
    assert 0 < two["server"]["text_words"] <= two["words"]  # (words a stream ends with: alone)
    assert two["server"]["head_calls"] > 0 and "the loop" in r.stdout
    stages = one["latency_ms"]
    for stage in ("feature extraction", "brain model", "end to end (data → here)"):
        assert set(stages[stage]) == {"p50", "p95", "p99", "p100"}
        assert 0 <= stages[stage]["p50"] <= stages[stage]["p100"]
    assert stages["end to end (data → here)"]["p50"] >= stages["brain model"]["p50"]
    assert len(report["baseline"]["per_second_ms"]) == 2
    assert report["ratios"]["latency_p50_baseline_over_ours"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ratio latency_p50_baseline_over_ours" in r.stdout


def test_a_compiled_second_head_is_compiled_before_the_clock_starts(tmp_path):
    """The head's engine is warmed up with the cortex's: on a lent H100 a compiled random
    subcortical head compiled on the stream's first seconds (287 ms of head time per
    stream-second, p99 261 ms for one stream)."""
    out = tmp_path / "bench.json"
    r = run_cli(
        "bench", "--checkpoint", "demo", "--streams", "1", "--seconds", "3", "--warmup", "0.5",
        "--baseline-seconds", "1", "--device", "cpu", "--engine", "compiled", "--no-text",
        "--subcortical", "random", "--out", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    one = json.loads(out.read_text())["one_stream"]
    assert one["server"]["head_calls"] > 0
    assert one["compiles_after_warmup"] == 0, one["stage_ms_per_stream_second"]


def test_bench_refuses_a_run_shorter_than_its_warm_up(tmp_path):
    r = run_cli("bench", "--checkpoint", "demo", "--seconds", "2", "--warmup", "5",
                "--out", str(tmp_path / "b.json"))  # fmt: skip
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "warm-up" in r.stderr


def test_every_stream_option_the_bench_is_given_reaches_its_streams():
    """A hand-made copy once dropped `--video-overlap`: its GPU runs measured the default."""
    from dataclasses import fields

    from tribe_stream.bench import BenchOptions, stream_options
    from tribe_stream.options import StreamOptions

    o = BenchOptions(
        checkpoint="demo", device="cpu", video_overlap=True, video_batch=1, video_clips=1,
        text_batch="on", lag=2.0, subcortical="random", seconds=9.0,
    )  # fmt: skip
    s = stream_options(o.validate())
    assert s.video_overlap and s.video_batch == 1 and s.video_clips == 1 and s.lag == 2.0
    for f in fields(StreamOptions):
        assert getattr(s, f.name) == getattr(o, f.name), f.name


def test_staggered_streams_spread_over_the_period_of_their_clips():
    """Independent sources' phases fall anywhere in the period of their video clips: half a
    second at the official two clips a second, a second with --video-clips 1 (over half a
    second, every stream's one clip would come in the same half of each second)."""
    from tribe_stream.bench import BenchOptions, start_offsets

    assert start_offsets(BenchOptions(), 4) == [0.0, 0.125, 0.25, 0.375]
    assert start_offsets(BenchOptions(video_clips=1), 4) == [0.0, 0.25, 0.5, 0.75]
    assert start_offsets(BenchOptions(video_clips=1, starts="aligned"), 3) == [0.0, 0.0, 0.0]


def test_random_starts_fall_in_the_period_and_repeat_for_a_seed():
    """--random-starts: visitors who come when they like, neither spread evenly nor at once;
    the same offsets for the same seed and number of streams, others for another seed."""
    from tribe_stream.bench import BenchOptions, start_offsets

    o = BenchOptions(video_clips=1, starts="random", starts_seed=3)
    got = start_offsets(o, 8)
    assert got[0] == 0.0 and got == sorted(got) and all(0.0 <= s < 1.0 for s in got)
    assert got == start_offsets(o, 8) and len(set(got)) == 8
    assert got != start_offsets(BenchOptions(video_clips=1), 8)
    assert got != start_offsets(BenchOptions(video_clips=1, starts="random", starts_seed=4), 8)
    assert max(start_offsets(BenchOptions(starts="random"), 8)) < 0.5  # two clips a second
