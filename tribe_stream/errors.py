"""User-facing errors: each names the problem and the fix; the CLI prints them without a traceback."""


class TribeStreamError(Exception):
    """Base for errors a user can act on."""


class CheckpointError(TribeStreamError):
    """A checkpoint or model folder that cannot be loaded as asked."""


class InputError(TribeStreamError):
    """Features, media or arguments that do not fit what the model expects."""


class SourceError(InputError):
    """A camera, microphone or file source that cannot be opened or has gone away."""


class ProtocolError(TribeStreamError):
    """A message that does not follow docs/PROTOCOL.md."""


def install_hint(extra: str) -> str:
    """The pip command that installs `extra` for this copy of tribe-stream: from its clone
    (`pip install -e '/path/to/clone[extra]'`) when it runs from one, else from the index."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    project = root / "pyproject.toml"
    try:
        clone = 'name = "tribe-stream"' in project.read_text(encoding="utf-8")
    except OSError:
        clone = False
    if clone:
        return f"pip install -e '{root}[{extra}]'"
    return f"pip install 'tribe-stream[{extra}]'"


def require_transformers() -> None:
    """The extractors' package, said missing in one line before any model loads."""
    from importlib.util import find_spec

    if find_spec("transformers") is None:
        raise TribeStreamError(
            f"the feature extractors need the `transformers` package: {install_hint('demo')} "
            f"(or {install_hint('extractors')})"
        )
