"""The `tribe-stream` command: discovers subcommands in `tribe_stream.commands`."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from tribe_stream import __version__
from tribe_stream.errors import TribeStreamError


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line (the problem and where to look), not the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tribe-stream",
        description="TRIBE v2 brain encoding, live: media in, fsaverage5 predictions out.",
    )
    parser.add_argument("--version", action="version", version=f"tribe-stream {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands_by_name: dict[str, argparse.ArgumentParser] = {}
    import tribe_stream.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"tribe_stream.commands.{info.name}")
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
        commands_by_name[module.NAME] = p
    parser.set_defaults(_commands=commands_by_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command's own parser, which names its own --help
        command = args._commands.get(getattr(args, "command", None), parser)
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    import warnings

    from tribe_stream.untrained import UntrainedWeightsWarning

    # the commands print the untrained label themselves (a line, not a Python warning)
    warnings.simplefilter("ignore", UntrainedWeightsWarning)
    try:
        return int(args._run(args) or 0)
    except TribeStreamError as exc:
        print(f"tribe-stream {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tribe-stream {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file or folder the command could not use: one line, no traceback
        if args.verbose:
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"tribe-stream {args.command}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
