"""`tribe-stream bench`: the whole live pipeline measured on a replayed clip (see `tribe_stream.bench`)."""

from __future__ import annotations

NAME = "bench"
HELP = "measure the live pipeline end to end (latency per stage, streams per GPU) against the sequential baseline"


def add_arguments(p) -> None:
    from tribe_stream.bench import BenchOptions
    from tribe_stream.options import add_options

    add_options(p, BenchOptions, skip=("realtime", "audio_context"))  # always real time, 30 s


def run(args) -> int:
    from tribe_stream.bench import BenchOptions, run_bench
    from tribe_stream.options import from_args

    options = from_args(BenchOptions, args).validate()  # before any model loads
    run_bench(options, say=lambda line: print(line, flush=True))
    return 0
