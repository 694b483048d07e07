"""One wrapper for the tools' entry points: a bad input or Ctrl-C is one line, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path


def run_tool(main: Callable[[], int], script: str) -> int:
    """`main()`; a `TribeStreamError` -> one line and exit 2, Ctrl-C -> one line and exit 130."""
    from tribe_stream.errors import TribeStreamError

    name = Path(script).name
    try:
        return main()
    except TribeStreamError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
