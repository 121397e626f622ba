"""Errors a user can act on.

Each message is one sentence naming what was wrong and what is accepted. The CLI and the web app show them
as they are, without a traceback; anything that is not a ``StudioError`` is a bug.
"""


class StudioError(ValueError):
    """Base class of every error caused by input, not by a bug."""


class UnsupportedAudio(StudioError):
    """An audio file or array that cannot be used (empty, corrupt, NaN, wrong format, too long...)."""


class ModelNotFound(StudioError):
    """A model name or folder that does not hold a usable model."""


class ConfigMismatch(StudioError):
    """Two parts that must share settings (e.g. a mel and a vocoder) do not."""


class DatasetError(StudioError):
    """A dataset folder or manifest that cannot be read or built."""
