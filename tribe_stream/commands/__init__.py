"""CLI subcommands: one module each, defining NAME, HELP, add_arguments(parser) and run(args) -> int.

`tribe_stream.cli` discovers every module here, so adding a command touches no other file.
"""
