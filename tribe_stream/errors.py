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
