"""One options schema (issue 30): every flag means the same in every command that has it.

The real parser (`tribe_stream.cli.build_parser`) is read back: each option of each subcommand
as (action, type, default, choices, nargs), and every flag must be identical wherever it appears.
The options shared by the commands that run the models must be there in each of them.
"""

from __future__ import annotations

import argparse

import pytest

from tribe_stream.cli import build_parser

MODEL = ("--checkpoint", "--engine", "--device", "--dtype", "--video-fp8", "--video-fp8-attention")
LIVE = (*MODEL, "--lag")
"""The options of the commands that run the models live (`demo`: always the demo weights)."""
RUNS_MODELS = {
    "run": LIVE,
    "serve": LIVE,
    "bench": LIVE,
    "web": LIVE,
    "demo": tuple(f for f in LIVE if f != "--checkpoint"),
    "fidelity": MODEL,  # its lags: --lags
    "predict": MODEL,
    "predict-features": MODEL[:4],  # features in: no video model
    "extract": ("--checkpoint", "--device", "--video-fp8", "--video-fp8-attention"),
}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def describe(action: argparse.Action) -> tuple:
    kind = getattr(action.type, "__name__", None) if action.type is not None else None
    choices = tuple(action.choices) if action.choices is not None else None
    default = tuple(action.default) if isinstance(action.default, list) else action.default
    return (type(action).__name__, kind, default, choices, action.nargs, action.const)


def options() -> dict[str, dict[str, tuple]]:
    """flag -> {command: its description}, for every optional argument of every command."""
    found: dict[str, dict[str, tuple]] = {}
    for name, parser in subcommands().items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for flag in action.option_strings:
                found.setdefault(flag, {})[name] = describe(action)
    return found


def test_every_flag_is_the_same_option_wherever_it_appears():
    differ = {flag: where for flag, where in options().items() if len(set(where.values())) > 1}
    assert not differ, "\n".join(
        f"{flag}: " + "; ".join(f"{cmd} {d}" for cmd, d in where.items())
        for flag, where in differ.items()
    )


def test_the_shared_defaults_are_the_schemas():
    found = options()
    for flag in ("--checkpoint",):
        assert {d[2] for d in found[flag].values()} == {"demo"}, found[flag]
    for flag in ("--engine", "--device", "--dtype", "--seconds", "--out", "--publish", "--size"):
        assert {d[2] for d in found[flag].values()} == {None}, (flag, found[flag])
    assert set(found["--dtype"]["convert"][3]) == {"float32", "float16", "bfloat16"}
    assert "--model-dtype" not in found and "--words" not in found
    assert set(found["--viewer"]) == {"run", "demo"} and set(found["--view"]) == {"view", "web"}
    assert set(found["--payload-dtype"]) == {"run", "serve", "demo", "replay"}


@pytest.mark.parametrize("command", sorted(RUNS_MODELS))
def test_commands_that_run_the_models_take_the_shared_options(command):
    flags = {f for a in subcommands()[command]._actions for f in a.option_strings}
    missing = [f for f in RUNS_MODELS[command] if f not in flags]
    assert not missing, f"{command} lacks {missing}"


def test_max_streams_is_one_option_bare_in_bench_a_number_in_serve():
    """`bench --max-streams [N]` searches (up to N); `serve`/`web --max-streams N` limit."""
    from tribe_stream.bench import BenchOptions
    from tribe_stream.errors import InputError
    from tribe_stream.options import ServeOptions, from_args

    parser = build_parser()
    bench = parser.parse_args(["bench", "--max-streams"])
    assert from_args(BenchOptions, bench).max_streams == 0
    assert parser.parse_args(["bench", "--max-streams", "9"]).max_streams == 9
    serve = parser.parse_args(["serve", "--file", "x.mp4", "--max-streams", "3"])
    assert from_args(ServeOptions, serve).validate().max_streams == 3
    bare = parser.parse_args(["serve", "--file", "x.mp4", "--max-streams"])
    with pytest.raises(InputError, match="needs its N"):
        from_args(ServeOptions, bare).validate()
